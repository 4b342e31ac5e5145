//! `bench --snapshot`: a bench result as a run card, so `llmtop compare` can put bench runs
//! from several machines side by side.

use crate::accounting::energy::EnergyReport;
use crate::report::bench::BenchResult;
use crate::report::runcard::{CardModel, ReplyMetrics, RunCard, SeriesPoint, SessionMetrics};

/// The card for a finished bench. `cold_ttft_ms` is the warm-up's TTFT (the first reply after
/// load) when there was one; `session` is the energy over all measured runs.
pub fn card(
    r: &BenchResult,
    cold_ttft_ms: Option<f64>,
    session: Option<&EnergyReport>,
    series: Vec<SeriesPoint>,
) -> std::io::Result<RunCard> {
    let mut card = RunCard::new(
        jiff::Timestamp::now(),
        r.host.clone(),
        r.build.clone(),
        CardModel::from_model_info(&r.model)?,
        r.settings.clone(),
    );
    card.prompt = Some(r.prompt.clone());
    card.last_reply = r.runs.last().map(|run| ReplyMetrics {
        roofline: run.roofline.clone(),
        contention: run.contention.clone(),
        ..ReplyMetrics::measured(&run.stats, run.energy.as_ref())
    });
    card.memory = r.memory.clone();
    let s = &r.summary;
    card.session = SessionMetrics {
        load_ms: Some(s.load_ms),
        ttft_cold_ms: cold_ttft_ms.or_else(|| r.runs.first().map(|x| x.stats.ttft_ms)),
        ttft_warm_ms: Some(s.ttft_ms.median),
        prefill_tok_s: Some(s.prefill_tok_s.median),
        gen_tok_s: Some(s.gen_tok_s.median),
        ..SessionMetrics::from_replies(r.runs.iter().map(|x| &x.stats), session)
    };
    card.series = series;
    Ok(card)
}
