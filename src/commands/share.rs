//! `llmtop share URL`: the process listening at URL on this machine, and its attributed share
//! of the machine's energy over a few seconds, beside the machine's total (both from the
//! ledger). The metering runtime's subscribers are the server's share and the deadline; a
//! terminating signal ends it early with what it has.

use crate::accounting::share::ServerMeter;
use crate::accounting::subscriber::ServerFeed;
use crate::cli::ShareArgs;
use crate::config::Config;
use crate::metering::{Deadline, Ended, Metering, run_headless};
use crate::sensors::Meter;
use crate::util::sanitize;
use serde_json::json;
use std::io::Write;

pub fn run(args: &ShareArgs, cfg: &Config) -> anyhow::Result<()> {
    if !(args.seconds >= 1.0 && args.seconds <= 3600.0) {
        anyhow::bail!(
            "--seconds {}: must be between 1 and 3600 (the split needs a second of readings)",
            args.seconds
        );
    }
    let section = args
        .sensors
        .apply(&cfg.raw.sensors)
        .map_err(anyhow::Error::msg)?;
    // No idle window here: only a channel's own idle figure applies.
    let mut server = ServerFeed {
        meter: ServerMeter::for_url(&args.url)?,
        idle: None,
    };
    let meter = Meter::start(&section);
    let mut metering = Metering::for_meter(&meter, cfg.tariff.clone());
    let mut deadline = Deadline::at(meter.handle.now() + args.seconds);
    let (sampler, samples) = meter.into_parts();
    let ended = run_headless(
        &mut metering,
        samples,
        &mut [&mut server, &mut deadline],
        || {},
    );
    sampler.stop();
    let ended = ended?;
    let server = server.meter;
    let share = server.tracker().share();
    let ledger = metering.ledger();
    // The machine over the same stretch the share covers.
    let machine = match (deadline.first, share.until) {
        (Some(a), Some(b)) => ledger.energy_between(a, b).map(|(j, _)| j),
        _ => None,
    };
    // Cut short by a signal: the stretch it did cover.
    let seconds = match (ended, deadline.first, share.until) {
        (Ended::Signal(_), Some(a), Some(b)) => b - a,
        (Ended::Signal(_), ..) => 0.0,
        _ => args.seconds,
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        let v = json!({
            "url": args.url,
            "pid": share.pid,
            "name": server.name,
            "skipped_other_users": server.denied,
            "joules": share.joules,
            "watts_now": share.watts_now,
            "cpu_share": share.cpu_share,
            "gpu_share": share.gpu_share,
            "vram_bytes": share.vram_bytes,
            "machine_joules": machine,
            "covers": share.covers,
            "method": share.method,
        });
        writeln!(out, "{v}")?;
        return Ok(());
    }
    writeln!(
        out,
        "server at {}: process {} ({})",
        sanitize::terminal(&args.url),
        share.pid,
        sanitize::terminal(&server.name)
    )?;
    let pct =
        |v: Option<f64>| v.map_or_else(|| "n/a".to_string(), |s| format!("{:.0} %", s * 100.0));
    writeln!(
        out,
        "its share over {:.0} s: {:.1} J attributed{} (machine: {}); CPU time share {}, GPU SM share {}",
        seconds,
        share.joules,
        share
            .watts_now
            .map_or_else(String::new, |w| format!(", {w:.1} W now")),
        machine.map_or_else(|| "n/a".to_string(), |j| format!("{j:.1} J")),
        pct(share.cpu_share),
        pct(share.gpu_share),
    )?;
    writeln!(out, "covers: {}", sanitize::terminal(&share.covers))?;
    writeln!(out, "method: {}", share.method)?;
    Ok(())
}
