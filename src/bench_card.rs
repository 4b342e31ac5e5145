//! `bench --snapshot`: a bench result as a run card, so `llmtop compare` can put bench runs
//! from several machines side by side.

use crate::bench::BenchResult;
use crate::energy::EnergyReport;
use crate::runcard::{
    CardModel, CardSettings, EnergyMetrics, ReplyMetrics, RunCard, SeriesPoint, SessionMetrics,
    Thermal,
};

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
        CardSettings::from_engine(&r.settings),
    );
    card.prompt = Some(r.prompt.clone());
    card.last_reply = r.runs.last().map(|run| {
        let mut m = ReplyMetrics::from_stats(&run.stats);
        if let Some(e) = &run.energy {
            m.energy = EnergyMetrics::from_report(e);
            m.thermal = Thermal::from_report(e);
        }
        m
    });
    let s = &r.summary;
    card.session = SessionMetrics {
        load_ms: Some(s.load_ms),
        replies: r.runs.len() as u32,
        ttft_cold_ms: cold_ttft_ms.or_else(|| r.runs.first().map(|x| x.stats.ttft_ms)),
        ttft_warm_ms: Some(s.ttft_ms.median),
        prefill_tok_s: Some(s.prefill_tok_s.median),
        gen_tok_s: Some(s.gen_tok_s.median),
        prompt_tokens: r
            .runs
            .iter()
            .map(|x| u64::from(x.stats.prompt_tokens))
            .sum(),
        generated_tokens: r
            .runs
            .iter()
            .map(|x| u64::from(x.stats.generated_tokens))
            .sum(),
        wall_s: r.runs.iter().map(|x| x.stats.wall_s).sum(),
        energy: session.and_then(EnergyMetrics::from_report),
        thermal: session.map(Thermal::from_report).unwrap_or_default(),
    };
    card.series = series;
    Ok(card)
}
