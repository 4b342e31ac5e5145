//! Ctrl-S in the dashboard: the session as a run card (host, build, model, settings, prompt,
//! the last reply and the whole session with energy and thermal, costs, the sample series, the
//! transcript), written with its Markdown summary and an SVG of the screen.

use crate::accounting::ledger::Ledger;
use crate::accounting::pricing::Tariff;
use crate::accounting::session::SessionRecorder;
use crate::config::SnapshotSection;
use crate::dashboard::state::{App, Role};
use crate::report::runcard::{
    CardModel, CardSettings, CardSpans, CardThrottle, ReplyMetrics, RunCard, SessionMetrics,
    TranscriptTurn,
};
use crate::report::runcard_rest::{CardAtRest, CardRemainder};
use crate::report::snapshot::{SnapshotError, SnapshotPaths};
use crate::sensors::host::{BuildInfo, HostInfo};

#[derive(Debug, thiserror::Error)]
pub enum SessionCardError {
    #[error("the model has not loaded yet; take the snapshot once it has")]
    NotLoaded,
    #[error(transparent)]
    Write(#[from] SnapshotError),
}

/// What a card needs besides the app, the recorder and the ledger.
pub struct CardContext<'a> {
    pub host: HostInfo,
    pub tariff: &'a Tariff,
    pub compare: &'a [Tariff],
    pub snapshot: &'a SnapshotSection,
    pub now: jiff::Timestamp,
}

/// The session's run card. Reads the first MiB of the model file for its fingerprint; a model
/// file that cannot be read (gone, or the demo model) gets an empty fingerprint. The settings
/// are those the engine reported in effect when it loaded.
pub fn card(
    app: &App,
    rec: &SessionRecorder,
    ledger: &Ledger,
    ctx: CardContext<'_>,
) -> Result<RunCard, SessionCardError> {
    let info = app.model.as_ref().ok_or(SessionCardError::NotLoaded)?;
    let model = CardModel::from_model_info(info).unwrap_or_else(|_| CardModel::unhashed(info));
    let mut card = RunCard::new(
        ctx.now,
        ctx.host,
        BuildInfo::current(),
        model,
        CardSettings::from_model_info(info),
    );
    card.prompt = app
        .messages
        .iter()
        .rev()
        .find(|m| m.role == Role::User)
        .map(|m| m.text.clone());
    let replies = rec.replies();
    let origin = rec.series_origin().unwrap_or(0.0);
    card.last_reply = replies.last().map(|r| ReplyMetrics {
        throttle: throttle_of(rec.throttle_between(r.t0, r.t1), origin),
        roofline: app.reply_roofline(&r.stats),
        contention: rec
            .contention_between(r.t0, r.t1)
            .into_iter()
            .map(|c| c.shifted(r.t0))
            .collect(),
        ..ReplyMetrics::measured(&r.stats, rec.last_reply_report(ledger).as_ref())
    });
    card.memory = Some(app.memory.clone());
    card.session = SessionMetrics {
        throttle: throttle_of(rec.throttle_episodes(), origin),
        ..session_metrics(rec, ledger)
    };
    card.series = rec.series().to_vec();
    let spans = CardSpans {
        reply: replies.last().map(|r| (r.t0, r.t1)),
        session: ledger.span(),
    };
    card.price(ctx.tariff, ctx.compare, ledger, spans);
    let turns = app
        .messages
        .iter()
        .filter_map(|m| {
            let role = match m.role {
                Role::User => "user",
                Role::Assistant => "assistant",
                Role::Notice => return None,
            };
            Some(TranscriptTurn {
                role: role.into(),
                text: m.text.clone(),
            })
        })
        .collect();
    card.set_transcript(turns, ctx.snapshot.transcript);
    Ok(card)
}

fn throttle_of(
    episodes: Vec<crate::accounting::throttle::Episode>,
    origin: f64,
) -> Vec<CardThrottle> {
    episodes
        .iter()
        .map(|e| CardThrottle::from_episode(e, origin))
        .collect()
}

/// Load time, cold TTFT (the first reply after load), warm TTFT (median of the later ones),
/// mean rates, token sums and the session's energy.
pub fn session_metrics(rec: &SessionRecorder, ledger: &Ledger) -> SessionMetrics {
    let replies = rec.replies();
    let mean = |f: fn(&crate::engine::ReplyStats) -> f64| {
        let v: Vec<f64> = replies
            .iter()
            .map(|r| f(&r.stats))
            .filter(|x| x.is_finite())
            .collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    let warm: Vec<f64> = replies.iter().skip(1).map(|r| r.stats.ttft_ms).collect();
    let remainder = ledger
        .span()
        .and_then(|(t0, t1)| ledger.wall_split(t0, t1))
        .map(|split| {
            CardRemainder::of(
                &split,
                rec.remainder(ledger).as_ref(),
                rec.series_origin().unwrap_or(0.0),
            )
        });
    let at_rest = rec
        .at_rest(ledger)
        .map(|a| CardAtRest::of(&a, ledger.tariff().map(|t| t.currency.code())));
    SessionMetrics {
        remainder,
        at_rest,
        load_ms: rec.load_ms(),
        ttft_cold_ms: replies.first().map(|r| r.stats.ttft_ms),
        ttft_warm_ms: (!warm.is_empty()).then(|| crate::report::bench::Spread::of(&warm).median),
        prefill_tok_s: mean(|s| s.prefill_tok_s),
        gen_tok_s: mean(|s| s.gen_tok_s),
        ..SessionMetrics::from_replies(
            replies.iter().map(|r| &r.stats),
            rec.session_report(ledger).as_ref(),
        )
    }
}

/// Build the card and write JSON, Markdown and the SVG of `screen` into `dir`.
pub fn write(
    dir: &std::path::Path,
    app: &App,
    rec: &SessionRecorder,
    ledger: &Ledger,
    ctx: CardContext<'_>,
    screen: &ratatui::buffer::Buffer,
) -> Result<SnapshotPaths, SessionCardError> {
    let card = card(app, rec, ledger, ctx)?;
    Ok(crate::report::snapshot::write(dir, &card, Some(screen))?)
}
