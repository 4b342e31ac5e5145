//! The decode roofline: how close generation runs to what the memory allows.
//!
//! A generated token reads the model's weights and the KV cache once
//! ([`DecodeTraffic`](crate::engine::traffic::DecodeTraffic)), so `bytes per token × tok/s` is
//! the bandwidth generation uses, and the memory's measured read bandwidth
//! ([`Bandwidth`](crate::sensors::bandwidth::Bandwidth)) is its ceiling. The share says whether
//! more threads or watts can help (near 100 %: no, the memory is the limit) or something else
//! holds generation back (far below).
//!
//! [`Roofline`] and [`Ceiling`] are written into bench results and run cards as they are: their
//! fields are part of those file formats (add, never rename).
//!
//! Every surface (header, reply line, bench, sweep, run card, compare) takes its figure from
//! [`for_reply`] or [`figure`] and its words from [`text`] / [`short_text`]: one owner.

use crate::engine::traffic::DecodeTraffic;
use crate::engine::{BackendStatus, ModelInfo, ReplyStats};
use crate::sensors::bandwidth::{Bandwidth, BandwidthMethod, Ceilings};
use serde::{Deserialize, Serialize};

/// The ceiling a model's generation is judged against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ceiling {
    /// Read bandwidth, GB/s.
    pub gb_s: f64,
    /// What it is: "system RAM (measured)", "GPU 0 (NVIDIA ...) datasheet peak", or the mix
    /// for a model split between them.
    pub what: String,
    /// Every part measured here (a datasheet peak is not).
    pub measured: bool,
}

/// Where the model's layers sit, for the ceiling.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Placement {
    /// This share of the weights (0..=1) on the GPU boards, the rest in RAM.
    GpuShare(f64),
    /// Nobody says (a server that does not report where it holds the model).
    Unknown,
}

impl Placement {
    /// From `--gpu-layers` in effect against the model's layers.
    pub fn from_layers(gpu_layers: u32, n_layer: u64) -> Self {
        if gpu_layers == 0 || n_layer == 0 {
            return Placement::GpuShare(0.0);
        }
        Placement::GpuShare((f64::from(gpu_layers) / n_layer as f64).min(1.0))
    }
}

/// Where a loaded model sits: in-process, its GPU layers in effect against its layers; on a
/// server, the share of it the server says it holds on the GPU (Ollama's `/api/ps`), else
/// unknown.
pub fn placement(info: &ModelInfo, backend: Option<&BackendStatus>) -> Placement {
    if info.backend.is_none() {
        let layers = info.traffic.as_ref().map_or(0, |t| t.n_layer);
        return Placement::from_layers(info.in_effect.gpu_layers, layers);
    }
    backend
        .and_then(|s| s.loaded.iter().find(|l| l.name == s.current))
        .and_then(|l| l.gpu_percent())
        .map_or(Placement::Unknown, |p| {
            Placement::GpuShare(f64::from(p) / 100.0)
        })
}

/// The ceiling for a model placed so: RAM's for a model in RAM, the boards' for one on them,
/// and for a split model the rate at which both parts are read one after the other
/// (`1 / (cpu share / RAM + gpu share / VRAM)`). `None` when a needed figure is missing.
pub fn ceiling_for(c: &Ceilings, placement: Placement) -> Option<Ceiling> {
    let share = match placement {
        Placement::GpuShare(s) if s.is_finite() => s.clamp(0.0, 1.0),
        Placement::GpuShare(_) => return None,
        // Nobody says where the model is: only a machine without boards leaves no doubt.
        Placement::Unknown if c.gpus.is_empty() => 0.0,
        Placement::Unknown => return None,
    };
    let label = |b: &Bandwidth| match b.method {
        BandwidthMethod::Probe => format!("{} (measured)", b.device),
        BandwidthMethod::NvmlSpec => format!("{} datasheet peak", b.device),
    };
    let cpu = c.cpu.as_ref().filter(|b| b.read_gb_s > 0.0);
    // Layers split between boards are read one board after the other.
    let gpus: Vec<&Bandwidth> = c.gpus.iter().filter(|b| b.read_gb_s > 0.0).collect();
    let gpu_gb_s = (!gpus.is_empty())
        .then(|| gpus.len() as f64 / gpus.iter().map(|b| 1.0 / b.read_gb_s).sum::<f64>());
    let gpu_what = || {
        gpus.iter()
            .map(|b| label(b))
            .collect::<Vec<_>>()
            .join(" + ")
    };
    if share == 0.0 {
        let cpu = cpu?;
        return Some(Ceiling {
            gb_s: cpu.read_gb_s,
            what: label(cpu),
            measured: cpu.method == BandwidthMethod::Probe,
        });
    }
    let gpu = gpu_gb_s?;
    if share >= 1.0 {
        return Some(Ceiling {
            gb_s: gpu,
            what: gpu_what(),
            measured: false,
        });
    }
    let cpu = cpu?;
    Some(Ceiling {
        gb_s: 1.0 / ((1.0 - share) / cpu.read_gb_s + share / gpu),
        what: format!(
            "{:.0} % in {} and {:.0} % on {}",
            (1.0 - share) * 100.0,
            label(cpu),
            share * 100.0,
            gpu_what()
        ),
        measured: false,
    })
}

/// Generation against the memory: one reply, one run, or the live window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Roofline {
    /// Bytes one token read: weights plus the KV cache at `depth`.
    pub bytes_per_token: f64,
    /// The mean KV depth of the tokens counted, tokens of context.
    pub depth: f64,
    /// The generation rate, tok/s.
    pub tok_s: f64,
    /// `bytes_per_token × tok_s`, GB/s.
    pub gb_s: f64,
    /// The memory's read bandwidth, GB/s, and what it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ceiling: Option<Ceiling>,
    /// `gb_s / ceiling` (1.0 = 100 %).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share: Option<f64>,
    /// The rate the ceiling allows at this depth, tok/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ceiling_tok_s: Option<f64>,
}

/// The figure for `tok_s` at KV depth `depth`; `None` without a rate.
pub fn figure(
    traffic: &DecodeTraffic,
    depth: f64,
    tok_s: f64,
    ceiling: Option<&Ceiling>,
) -> Option<Roofline> {
    if !(tok_s.is_finite() && tok_s > 0.0) {
        return None;
    }
    let depth = if depth.is_finite() {
        depth.max(0.0)
    } else {
        0.0
    };
    let bytes = traffic.bytes_at_depth(depth);
    if bytes <= 0.0 {
        return None;
    }
    let gb_s = bytes * tok_s / 1e9;
    let ceiling = ceiling.filter(|c| c.gb_s.is_finite() && c.gb_s > 0.0);
    Some(Roofline {
        bytes_per_token: bytes,
        depth,
        tok_s,
        gb_s,
        share: ceiling.map(|c| gb_s / c.gb_s),
        ceiling_tok_s: ceiling.map(|c| c.gb_s * 1e9 / bytes),
        ceiling: ceiling.cloned(),
    })
}

/// The mean KV depth over a reply's decodes: the context it started from plus half of what it
/// generated.
pub fn reply_depth(s: &ReplyStats) -> f64 {
    f64::from(s.conversation_tokens) + f64::from(s.generated_tokens) / 2.0
}

/// A finished reply's figure: its generation rate at its mean depth.
pub fn for_reply(
    traffic: &DecodeTraffic,
    s: &ReplyStats,
    ceiling: Option<&Ceiling>,
) -> Option<Roofline> {
    if s.generated_tokens < 2 {
        return None;
    }
    figure(traffic, reply_depth(s), s.gen_tok_s, ceiling)
}

/// "9.8 GB/s memory (76 % of 12.9 GB/s)": the reply line's, bench's and the card's words.
pub fn text(r: &Roofline) -> String {
    match (r.share, &r.ceiling) {
        (Some(share), Some(c)) => format!(
            "{} GB/s memory ({:.0} % of {} GB/s)",
            gb(r.gb_s),
            share * 100.0,
            gb(c.gb_s)
        ),
        _ => format!("{} GB/s memory", gb(r.gb_s)),
    }
}

/// "9.8 GB/s 76 %": the header's, where room is short.
pub fn short_text(r: &Roofline) -> String {
    match r.share {
        Some(share) => format!("{} GB/s {:.0} %", gb(r.gb_s), share * 100.0),
        None => format!("{} GB/s", gb(r.gb_s)),
    }
}

/// GB/s with three significant digits at most: "0.52", "9.84", "12.9", "3350".
pub fn gb(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sensors::bandwidth::Memory;

    fn bw(memory: Memory, gb_s: f64, method: BandwidthMethod) -> Bandwidth {
        Bandwidth {
            memory,
            device: match memory {
                Memory::Cpu => "system RAM".into(),
                Memory::Gpu => "GPU 0 (X)".into(),
            },
            read_gb_s: gb_s,
            triad_gb_s: None,
            method,
            detail: String::new(),
            others_runnable: None,
        }
    }

    fn ceilings(gpu: bool) -> Ceilings {
        Ceilings {
            cpu: Some(bw(Memory::Cpu, 20.0, BandwidthMethod::Probe)),
            cpu_missing: None,
            gpus: if gpu {
                vec![bw(Memory::Gpu, 1000.0, BandwidthMethod::NvmlSpec)]
            } else {
                vec![]
            },
        }
    }

    #[test]
    fn the_ceiling_follows_where_the_layers_sit() {
        let c = ceilings(true);
        let cpu = ceiling_for(&c, Placement::from_layers(0, 30)).expect("cpu");
        assert_eq!(cpu.gb_s, 20.0);
        assert!(cpu.measured);
        let gpu = ceiling_for(&c, Placement::from_layers(99, 30)).expect("gpu");
        assert_eq!(gpu.gb_s, 1000.0);
        assert!(!gpu.measured);
        assert!(gpu.what.contains("datasheet"), "{}", gpu.what);
        // Half and half: 1 / (0.5/20 + 0.5/1000) GB/s.
        let split = ceiling_for(&c, Placement::from_layers(15, 30)).expect("split");
        assert!((split.gb_s - 1.0 / (0.5 / 20.0 + 0.5 / 1000.0)).abs() < 1e-9);
        assert!(split.what.contains("50 %"), "{}", split.what);
        // A server that does not say where its model is: known only without boards.
        assert!(ceiling_for(&c, Placement::Unknown).is_none());
        assert_eq!(
            ceiling_for(&ceilings(false), Placement::Unknown).map(|c| c.gb_s),
            Some(20.0)
        );
        // No RAM figure: nothing for a CPU model.
        let none = Ceilings {
            cpu: None,
            ..ceilings(false)
        };
        assert!(ceiling_for(&none, Placement::GpuShare(0.0)).is_none());
    }

    #[test]
    fn a_reply_reads_weights_and_its_mean_kv_depth() {
        let t = crate::engine::scripted::scripted_traffic();
        let mut s = crate::engine::ReplyStats {
            prompt_tokens: 20,
            conversation_tokens: 100,
            generated_tokens: 200,
            ttft_ms: 10.0,
            prefill_ms: 10.0,
            prefill_tok_s: 2000.0,
            gen_ms: 2000.0,
            gen_tok_s: 100.0,
            gen_wall_tok_s: 99.0,
            wall_s: 2.0,
            stop: crate::engine::StopReason::EndOfGeneration,
            prefill_end_s: 0.01,
            load_ms: None,
            origins: Default::default(),
        };
        let c = ceiling_for(&ceilings(false), Placement::GpuShare(0.0));
        let r = for_reply(&t, &s, c.as_ref()).expect("figure");
        // Depth 100 + 200/2 = 200 tokens: 90 MB + 200 x 23 040 B = 94.608 MB a token.
        assert_eq!(r.depth, 200.0);
        assert_eq!(r.bytes_per_token, 94_608_000.0);
        assert!((r.gb_s - 9.4608).abs() < 1e-9);
        assert!((r.share.expect("share") - 9.4608 / 20.0).abs() < 1e-12);
        assert!((r.ceiling_tok_s.expect("ceiling") - 20e9 / 94_608_000.0).abs() < 1e-9);
        assert_eq!(text(&r), "9.46 GB/s memory (47 % of 20.0 GB/s)");
        assert_eq!(short_text(&r), "9.46 GB/s 47 %");
        // No ceiling: the rate alone.
        let bare = for_reply(&t, &s, None).expect("figure");
        assert_eq!(text(&bare), "9.46 GB/s memory");
        // No rate, no figure.
        s.gen_tok_s = 0.0;
        assert!(for_reply(&t, &s, c.as_ref()).is_none());
    }
}
