//! The settings in effect: what the engine resolves once, on its own thread, and reports in
//! `Loaded`. The header, bench, the run card and the metrics all show that report, so no
//! surface guesses a default of its own.

use super::EngineSettings;
use serde::{Deserialize, Serialize};
use std::fmt;

/// What the engine runs with besides the context size and template source (in `ModelInfo`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InEffect {
    /// Threads generation runs on (the default resolved, never 0).
    pub threads: u32,
    /// Layers offloaded to the GPU: 0 on a CPU-only build whatever was asked.
    pub gpu_layers: u32,
    pub sampler: SamplerChain,
    pub max_tokens: u32,
    /// The system prompt sent with every conversation; empty for none.
    pub system_prompt: String,
    /// The chat template itself (Jinja text, or a llama.cpp template name such as "chatml").
    pub chat_template_text: String,
}

/// Threads when the physical core count cannot be read (some containers and VMs).
pub const FALLBACK_THREADS: u32 = 4;

/// The thread count to run with: `requested`, or when that is 0 ("default") the number of
/// physical cores (hyperthreads slow llama.cpp down), or [`FALLBACK_THREADS`] when
/// `physical_cores` does not know. The only place that reads the core count or falls back.
pub fn resolve_threads(requested: u32, physical_cores: impl FnOnce() -> Option<usize>) -> u32 {
    if requested > 0 {
        return requested;
    }
    physical_cores()
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| *n > 0)
        .unwrap_or(FALLBACK_THREADS)
}

/// Threads asked for may be at most this many times the logical CPUs: llama.cpp starts every
/// thread it is asked for (100 000 of them crash it), and beyond the CPUs they only contend.
pub const THREADS_PER_CPU: u32 = 4;

/// The most threads `--threads` may ask for, given the logical CPU count (1 when unknown).
pub fn thread_limit_for(logical_cpus: Option<usize>) -> u32 {
    logical_cpus
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| *n > 0)
        .unwrap_or(1)
        .saturating_mul(THREADS_PER_CPU)
}

/// [`thread_limit_for`] this machine, and its logical CPU count.
pub fn thread_limit() -> (u32, usize) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    (thread_limit_for(Some(cpus)), cpus)
}

/// [`resolve_threads`] with this machine's physical core count.
pub fn threads(requested: u32) -> u32 {
    resolve_threads(requested, || sysinfo::System::physical_core_count().ok())
}

/// One step of llama.cpp's sampler chain.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum SamplerStep {
    /// Always the most likely token: nothing else in the chain matters.
    Greedy,
    TopK {
        k: i32,
    },
    TopP {
        p: f32,
    },
    MinP {
        p: f32,
    },
    Temperature {
        t: f32,
    },
    /// Draw from the distribution with this seed.
    Dist {
        seed: u32,
    },
}

/// The sampler chain in effect, in order. The engine builds llama.cpp's sampler from this very
/// value, so what is reported is what runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SamplerChain {
    pub steps: Vec<SamplerStep>,
}

impl SamplerChain {
    /// The chain for `s`: greedy at temperature 0 (top-k, top-p, min-p and seed would be
    /// ignored, so they are not in it); otherwise the filters that do something, then
    /// temperature and a seeded draw.
    pub fn for_settings(s: &EngineSettings) -> Self {
        if s.temperature <= 0.0 {
            return Self {
                steps: vec![SamplerStep::Greedy],
            };
        }
        let mut steps = Vec::new();
        if s.top_k > 0 {
            steps.push(SamplerStep::TopK { k: s.top_k });
        }
        if s.top_p > 0.0 && s.top_p < 1.0 {
            steps.push(SamplerStep::TopP { p: s.top_p });
        }
        if s.min_p > 0.0 {
            steps.push(SamplerStep::MinP { p: s.min_p });
        }
        steps.push(SamplerStep::Temperature { t: s.temperature });
        steps.push(SamplerStep::Dist { seed: s.seed });
        Self { steps }
    }

    pub fn is_greedy(&self) -> bool {
        self.steps.contains(&SamplerStep::Greedy)
    }

    /// 0 for greedy sampling.
    pub fn temperature(&self) -> f32 {
        self.find(|s| match s {
            SamplerStep::Temperature { t } => Some(*t),
            _ => None,
        })
        .unwrap_or(0.0)
    }

    pub fn top_k(&self) -> Option<i32> {
        self.find(|s| match s {
            SamplerStep::TopK { k } => Some(*k),
            _ => None,
        })
    }

    pub fn top_p(&self) -> Option<f32> {
        self.find(|s| match s {
            SamplerStep::TopP { p } => Some(*p),
            _ => None,
        })
    }

    pub fn min_p(&self) -> Option<f32> {
        self.find(|s| match s {
            SamplerStep::MinP { p } => Some(*p),
            _ => None,
        })
    }

    pub fn seed(&self) -> Option<u32> {
        self.find(|s| match s {
            SamplerStep::Dist { seed } => Some(*seed),
            _ => None,
        })
    }

    fn find<T>(&self, f: impl Fn(&SamplerStep) -> Option<T>) -> Option<T> {
        self.steps.iter().find_map(f)
    }
}

/// "greedy", or the steps in order: "top_k=40,top_p=0.95,min_p=0.05,temperature=0.7,seed=42".
impl fmt::Display for SamplerChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, step) in self.steps.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match step {
                SamplerStep::Greedy => f.write_str("greedy")?,
                SamplerStep::TopK { k } => write!(f, "top_k={k}")?,
                SamplerStep::TopP { p } => write!(f, "top_p={p}")?,
                SamplerStep::MinP { p } => write!(f, "min_p={p}")?,
                SamplerStep::Temperature { t } => write!(f, "temperature={t}")?,
                SamplerStep::Dist { seed } => write!(f, "seed={seed}")?,
            }
        }
        Ok(())
    }
}

/// Layers llama.cpp offloads: none without a GPU backend in this build, else the request
/// capped at the model's blocks plus the output layer (llama.cpp's own cap).
pub fn offloaded_layers(requested: u32, model_layers: u32, gpu_offload: bool) -> u32 {
    if gpu_offload {
        requested.min(model_layers.saturating_add(1))
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn thread_fallback_is_applied_once_and_only_for_the_default() {
        let reads = Cell::new(0);
        let cores = |n: Option<usize>| {
            let reads = &reads;
            move || {
                reads.set(reads.get() + 1);
                n
            }
        };
        // An explicit count is used as given; the core count is not even read.
        assert_eq!(resolve_threads(3, cores(Some(8))), 3);
        assert_eq!(reads.get(), 0);
        // The default: physical cores when known, read exactly once.
        assert_eq!(resolve_threads(0, cores(Some(6))), 6);
        assert_eq!(reads.get(), 1);
        // Detection failed (None) or was nonsense (0): the one fallback, not 0 or 1.
        assert_eq!(resolve_threads(0, cores(None)), FALLBACK_THREADS);
        assert_eq!(resolve_threads(0, cores(Some(0))), FALLBACK_THREADS);
        assert_eq!(reads.get(), 3);
        // A resolved count resolves to itself: applying the rule again changes nothing.
        let once = resolve_threads(0, cores(None));
        assert_eq!(resolve_threads(once, cores(Some(64))), once);
        assert_eq!(reads.get(), 4);
    }

    #[test]
    fn thread_limit_is_a_small_multiple_of_the_cpus() {
        assert_eq!(thread_limit_for(Some(2)), 8);
        assert_eq!(thread_limit_for(Some(64)), 256);
        // Unknown or nonsense: still some threads allowed.
        assert_eq!(thread_limit_for(None), THREADS_PER_CPU);
        assert_eq!(thread_limit_for(Some(0)), THREADS_PER_CPU);
    }

    #[test]
    fn greedy_leaves_out_what_it_ignores() {
        let mut s = EngineSettings::with_model("m.gguf".into());
        s.temperature = 0.0;
        let c = SamplerChain::for_settings(&s);
        assert_eq!(c.to_string(), "greedy");
        assert!(c.is_greedy());
        assert_eq!(
            (c.top_k(), c.top_p(), c.min_p(), c.seed()),
            (None, None, None, None)
        );
        assert_eq!(c.temperature(), 0.0);

        s.temperature = 0.7;
        let c = SamplerChain::for_settings(&s);
        assert_eq!(
            c.to_string(),
            "top_k=40,top_p=0.95,min_p=0.05,temperature=0.7,seed=42"
        );
        assert_eq!((c.top_k(), c.seed()), (Some(40), Some(42)));

        // Filters that do nothing are not in the chain either.
        s.top_k = 0;
        s.top_p = 1.0;
        s.min_p = 0.0;
        let c = SamplerChain::for_settings(&s);
        assert_eq!(c.to_string(), "temperature=0.7,seed=42");
        assert_eq!((c.top_k(), c.top_p(), c.min_p()), (None, None, None));
    }

    #[test]
    fn offload_is_capped_and_zero_without_a_gpu_backend() {
        assert_eq!(offloaded_layers(99, 30, true), 31);
        assert_eq!(offloaded_layers(10, 30, true), 10);
        assert_eq!(offloaded_layers(99, 30, false), 0);
        assert_eq!(offloaded_layers(0, 30, true), 0);
    }
}
