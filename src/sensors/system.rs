//! CPU utilisation (from `/proc/stat`) and memory (via sysinfo): context for the power figures.

use super::procstat::CpuUtil;
use super::{Covers, Method, Quantity, Reading, Sensor, Source};

#[derive(Debug)]
pub struct SystemSensor {
    cpu: CpuUtil,
    /// Other programs' runnable threads (CPU contention).
    runnable: Option<super::runnable::RunnableReader>,
    /// `None` where sysinfo cannot read memory on this OS.
    sys: Option<sysinfo::System>,
}

impl SystemSensor {
    pub fn new(proc_stat: impl Into<std::path::PathBuf>) -> Self {
        let proc_stat: std::path::PathBuf = proc_stat.into();
        // Beside the real /proc/stat, the real /proc/self; a test's stat file has neither.
        let runnable = proc_stat
            .parent()
            .filter(|p| p.join("self/task").is_dir())
            .map(super::runnable::RunnableReader::new);
        Self {
            cpu: CpuUtil::new(proc_stat),
            runnable,
            sys: sysinfo::System::new().ok(),
        }
    }
}

fn reading(id: &str, label: &str, quantity: Quantity, value: Option<f64>) -> Reading {
    Reading {
        id: id.into(),
        device: "system".into(),
        label: label.into(),
        quantity,
        value,
        limit: None,
        source: Source::System,
        covers: Covers::Other,
        method: Method::Measured,
        rejected: None,
        via: None,
    }
}

impl Sensor for SystemSensor {
    fn name(&self) -> String {
        "system".into()
    }

    fn read(&mut self, _now: f64) -> Vec<Reading> {
        let (used, total) = match self.sys.as_mut() {
            Some(sys) => {
                sys.refresh_memory();
                (sys.used_memory(), sys.total_memory())
            }
            None => (0, 0),
        };
        let runnable = self.runnable.as_ref().and_then(|r| r.read());
        vec![
            Reading {
                limit: runnable.map(|r| f64::from(r.cpus)),
                ..reading(
                    crate::sensors::runnable::READING_ID,
                    "other runnable threads",
                    Quantity::RunnableThreads,
                    runnable.map(|r| r.others() as f64),
                )
            },
            reading(
                "system:cpu:util",
                "CPU",
                Quantity::Utilization,
                self.cpu.sample().map(|u| u * 100.0),
            ),
            reading(
                "system:mem:used",
                "RAM used",
                Quantity::MemoryUsed,
                (total > 0).then_some(used as f64),
            ),
            reading(
                "system:mem:total",
                "RAM total",
                Quantity::MemoryTotal,
                (total > 0).then_some(total as f64),
            ),
        ]
    }
}
