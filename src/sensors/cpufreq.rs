//! CPU clocks and the kernel's thermal throttle counters, under `devices/system/cpu/cpuN/`:
//! `cpufreq/scaling_cur_freq` (kHz) against `cpufreq/cpuinfo_max_freq` (or `scaling_max_freq`
//! where the hardware maximum is hidden), and `thermal_throttle/{core,package}_throttle_count`
//! (Intel; events since boot, only ever growing).
//!
//! One clock row for the whole CPU: the mean current clock over the CPUs read against the mean
//! of their maxima, so a hybrid CPU (P- and E-cores with different maxima) at full speed reads
//! 100 % of its limit. Counters are summed over distinct cores and packages: hyperthread
//! siblings show their core's count and every CPU of a package repeats the package's, so a
//! plain sum would multiply them. Paths are found once at discovery; a tick reads one small
//! file per CPU plus one per core and package.

use super::sysfs::{Sysfs, list_dir};
use super::{Covers, Method, Quantity, Reading, Sensor, Source, SourceState, SourceStatus};
use std::collections::BTreeSet;
use std::path::PathBuf;

/// The CPU's clocks and throttle counters.
#[derive(Debug)]
pub struct CpuFreqSensor {
    fs: Sysfs,
    /// `scaling_cur_freq` of each CPU with cpufreq, and its maximum, kHz.
    clocks: Vec<(PathBuf, f64)>,
    /// `core_throttle_count`, one per distinct core.
    core_counters: Vec<PathBuf>,
    /// `package_throttle_count`, one per package.
    package_counters: Vec<PathBuf>,
}

fn cpu_number(name: &str) -> Option<u32> {
    name.strip_prefix("cpu")?.parse().ok()
}

/// Find the CPUs' clocks and counters. No cpufreq and no counters (a VM, a container without
/// /sys/devices) is one "not found" line: throttling is then judged from temperatures alone.
pub fn discover(fs: &Sysfs) -> (Option<CpuFreqSensor>, Vec<SourceStatus>) {
    let base = fs.path("devices/system/cpu");
    let mut s = CpuFreqSensor {
        fs: fs.clone(),
        clocks: Vec::new(),
        core_counters: Vec::new(),
        package_counters: Vec::new(),
    };
    let mut cores = BTreeSet::new();
    let mut packages = BTreeSet::new();
    let mut cpus = 0usize;
    for (name, dir) in list_dir(&base) {
        if cpu_number(&name).is_none() {
            continue; // cpufreq/, cpuidle/, online, ...
        }
        cpus += 1;
        let khz = |file: &str| {
            fs.read_num::<f64>(&dir.join("cpufreq").join(file))
                .ok()
                .filter(|v| v.is_finite() && *v > 0.0)
        };
        let cur = dir.join("cpufreq/scaling_cur_freq");
        if khz("scaling_cur_freq").is_some()
            && let Some(max) = khz("cpuinfo_max_freq").or_else(|| khz("scaling_max_freq"))
        {
            s.clocks.push((cur, max));
        }
        // Without topology every CPU counts as its own core and package: never merged wrongly.
        let topo = |file: &str| fs.read_num::<i64>(&dir.join("topology").join(file)).ok();
        let package = topo("physical_package_id").map_or(format!("?{name}"), |p| p.to_string());
        let core = topo("core_id").map_or(format!("?{name}"), |c| c.to_string());
        let counter = |file: &str| {
            let p = dir.join("thermal_throttle").join(file);
            fs.read_num::<u64>(&p).is_ok().then_some(p)
        };
        if let Some(p) = counter("core_throttle_count")
            && cores.insert((package.clone(), core))
        {
            s.core_counters.push(p);
        }
        if let Some(p) = counter("package_throttle_count")
            && packages.insert(package)
        {
            s.package_counters.push(p);
        }
    }
    let device = base.display().to_string();
    if s.clocks.is_empty() && s.core_counters.is_empty() && s.package_counters.is_empty() {
        let detail = if cpus == 0 {
            "no CPUs listed here".to_string()
        } else {
            format!(
                "no cpufreq clocks or thermal_throttle counters for {cpus} CPU(s) (VM, or no cpufreq driver): throttling is judged from temperatures alone"
            )
        };
        return (
            None,
            vec![SourceStatus {
                source: Source::System,
                device,
                state: SourceState::Missing,
                detail,
                fix: None,
            }],
        );
    }
    let mut parts = Vec::new();
    if !s.clocks.is_empty() {
        parts.push(format!("clock of {} CPU(s) (cpufreq)", s.clocks.len()));
    }
    if s.core_counters.is_empty() && s.package_counters.is_empty() {
        parts.push("no thermal_throttle counters (Intel only)".into());
    } else {
        parts.push(format!(
            "throttle counters of {} core(s) and {} package(s)",
            s.core_counters.len(),
            s.package_counters.len()
        ));
    }
    let status = SourceStatus {
        source: Source::System,
        device,
        state: SourceState::Found,
        detail: parts.join("; "),
        fix: None,
    };
    (Some(s), vec![status])
}

impl CpuFreqSensor {
    /// Sum of the counters, or `None` when any of them could not be read this time (a partial
    /// sum would fall and then jump, which would look like throttling).
    fn sum(&self, paths: &[PathBuf]) -> Option<f64> {
        paths
            .iter()
            .map(|p| self.fs.read_num::<u64>(p).ok().map(|n| n as f64))
            .sum()
    }
}

fn row(id: &str, device: &str, label: String, quantity: Quantity, method: Method) -> Reading {
    Reading {
        id: id.into(),
        device: device.into(),
        label,
        quantity,
        value: None,
        limit: None,
        source: Source::System,
        covers: Covers::CpuPackage,
        method,
        rejected: None,
        via: None,
    }
}

impl Sensor for CpuFreqSensor {
    fn name(&self) -> String {
        "cpufreq".into()
    }

    fn read(&mut self, _now: f64) -> Vec<Reading> {
        let mut out = Vec::with_capacity(3);
        if !self.clocks.is_empty() {
            let (mut cur, mut max, mut n) = (0.0, 0.0, 0usize);
            for (path, max_khz) in &self.clocks {
                if let Ok(khz) = self.fs.read_num::<f64>(path)
                    && khz.is_finite()
                    && khz >= 0.0
                {
                    cur += khz;
                    max += max_khz;
                    n += 1;
                }
            }
            // Mean against mean over the CPUs read this time (all of them when none was).
            let (value, limit) = if n > 0 {
                (Some(cur / n as f64 / 1e3), max / n as f64 / 1e3)
            } else {
                let all: f64 = self.clocks.iter().map(|c| c.1).sum();
                (None, all / self.clocks.len() as f64 / 1e3)
            };
            let label = format!("CPU clock (mean of {})", self.clocks.len());
            out.push(Reading {
                value,
                limit: Some(limit),
                ..row(
                    "cpu:clock",
                    "cpufreq",
                    label,
                    Quantity::Clock,
                    Method::Measured,
                )
            });
        }
        for (id, label, paths) in [
            ("cpu:core_throttles", "core throttles", &self.core_counters),
            (
                "cpu:package_throttles",
                "package throttles",
                &self.package_counters,
            ),
        ] {
            if paths.is_empty() {
                continue;
            }
            out.push(Reading {
                value: self.sum(paths),
                ..row(
                    id,
                    "thermal_throttle",
                    label.into(),
                    Quantity::ThrottleCount,
                    Method::Counter,
                )
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &std::path::Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, format!("{text}\n")).expect("write");
    }

    /// Two hyperthreads of one core and a hybrid E-core: means and de-duplicated sums.
    #[test]
    fn mean_clock_against_mean_max_and_counters_once_per_core_and_package() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = dir.path();
        for (cpu, cur, max, core, count) in [
            (0, 4_000_000, 5_000_000, 0, 7),
            (1, 4_000_000, 5_000_000, 0, 7),
            (2, 2_000_000, 3_000_000, 8, 2),
        ] {
            let c = format!("devices/system/cpu/cpu{cpu}");
            write(
                r,
                &format!("{c}/cpufreq/scaling_cur_freq"),
                &cur.to_string(),
            );
            write(
                r,
                &format!("{c}/cpufreq/cpuinfo_max_freq"),
                &max.to_string(),
            );
            write(r, &format!("{c}/topology/physical_package_id"), "0");
            write(r, &format!("{c}/topology/core_id"), &core.to_string());
            write(
                r,
                &format!("{c}/thermal_throttle/core_throttle_count"),
                &count.to_string(),
            );
            write(
                r,
                &format!("{c}/thermal_throttle/package_throttle_count"),
                "40",
            );
        }
        write(r, "devices/system/cpu/online", "0-2");
        let (s, st) = discover(&Sysfs::new(r));
        let mut s = s.expect("found");
        assert_eq!(st[0].state, SourceState::Found);
        assert!(st[0].detail.contains("1 package"), "{st:?}");
        let rows = s.read(0.0);
        let get = |id: &str| rows.iter().find(|x| x.id == id).expect(id);
        let clock = get("cpu:clock");
        assert_eq!(clock.value, Some(10_000.0 / 3.0));
        assert_eq!(clock.limit, Some(13_000.0 / 3.0));
        assert_eq!(get("cpu:core_throttles").value, Some(9.0));
        assert_eq!(get("cpu:package_throttles").value, Some(40.0));
        // A counter that cannot be read makes the sum n/a, not smaller.
        std::fs::remove_file(
            r.join("devices/system/cpu/cpu2/thermal_throttle/core_throttle_count"),
        )
        .expect("rm");
        let rows = s.read(0.25);
        let core = rows
            .iter()
            .find(|x| x.id == "cpu:core_throttles")
            .expect("row");
        assert_eq!(core.value, None);
    }

    #[test]
    fn scaling_max_when_the_hardware_max_is_hidden_and_missing_tree_is_one_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = dir.path();
        write(
            r,
            "devices/system/cpu/cpu0/cpufreq/scaling_cur_freq",
            "1200000",
        );
        write(
            r,
            "devices/system/cpu/cpu0/cpufreq/scaling_max_freq",
            "2400000",
        );
        let (s, st) = discover(&Sysfs::new(r));
        let rows = s.expect("found").read(0.0);
        assert_eq!((rows[0].value, rows[0].limit), (Some(1200.0), Some(2400.0)));
        assert!(
            st[0].detail.contains("no thermal_throttle counters"),
            "{st:?}"
        );
        assert_eq!(rows.len(), 1);

        let empty = tempfile::tempdir().expect("tempdir");
        write(
            empty.path(),
            "devices/system/cpu/cpu0/topology/core_id",
            "0",
        );
        let (s, st) = discover(&Sysfs::new(empty.path()));
        assert!(s.is_none());
        assert_eq!(st.len(), 1);
        assert_eq!(st[0].state, SourceState::Missing);
        assert!(st[0].detail.contains("temperatures alone"), "{st:?}");
    }
}
