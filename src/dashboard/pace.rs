//! How often the dashboard draws, and how often the engine sends it text.
//!
//! At most 60 frames a second, except while a reply streams and llama.cpp has a thread on every
//! CPU: then each frame (the loop waking, drawing, and the terminal or sshd parsing what it
//! drew) takes a CPU from one engine thread and stalls the others at their next barrier, so the
//! dashboard draws `[ui] generating_fps` times a second instead (BENCHMARKS.md: "Generation
//! speed with the dashboard up"). The engine sends text at the same pace, so the loop is not
//! woken between frames either.

use crate::term::screen::MIN_FRAME;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pace {
    /// Between frames at rest, or while generating with a CPU to spare.
    pub frame: Duration,
    /// Between frames while a reply streams.
    pub generating: Duration,
}

impl Pace {
    /// `engine_threads`: what the engine will run (`engine::effective::threads`); `cpus`: the
    /// CPUs this process may use.
    pub fn new(generating_fps: f64, engine_threads: u32, cpus: usize) -> Self {
        let every_cpu = usize::try_from(engine_threads).is_ok_and(|t| t >= cpus);
        let generating = if every_cpu && generating_fps.is_finite() && generating_fps > 0.0 {
            Duration::from_secs_f64(1.0 / generating_fps).max(MIN_FRAME)
        } else {
            MIN_FRAME
        };
        Self {
            frame: MIN_FRAME,
            generating,
        }
    }

    /// How early a frame at `frame` pace may be drawn when the loop is awake anyway: a quarter
    /// of the interval at the generating pace, none at full speed.
    pub fn slack(&self, frame: Duration) -> Duration {
        if frame > MIN_FRAME {
            frame / 4
        } else {
            Duration::ZERO
        }
    }

    /// The least time between two frames now.
    pub fn frame_for(&self, generating: bool) -> Duration {
        if generating {
            self.generating
        } else {
            self.frame
        }
    }
}

impl Default for Pace {
    fn default() -> Self {
        Self {
            frame: MIN_FRAME,
            generating: MIN_FRAME,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slows_down_only_when_the_engine_takes_every_cpu() {
        let ms = Duration::from_millis;
        assert_eq!(Pace::new(10.0, 2, 2).generating, ms(100));
        assert_eq!(Pace::new(10.0, 8, 4).generating, ms(100));
        // A CPU to spare: full speed.
        assert_eq!(Pace::new(10.0, 1, 2).generating, MIN_FRAME);
        // Never faster than MIN_FRAME, whatever is asked.
        assert_eq!(Pace::new(1000.0, 2, 2).generating, MIN_FRAME);
        let p = Pace::new(4.0, 2, 2);
        assert_eq!(p.frame_for(true), ms(250));
        assert_eq!(p.frame_for(false), MIN_FRAME);
        assert_eq!(p.slack(ms(250)), Duration::from_micros(62_500));
        assert_eq!(p.slack(MIN_FRAME), Duration::ZERO);
    }
}
