//! The record of power limits as found, `power-caps.json` in the data dir: written atomically
//! before a sweep changes the first limit, removed once every limit is back. A marker whose
//! writer is gone (SIGKILL, a crash, a power cut of the process) is restored and removed by the
//! next llmtop start ([`recover`]).
//!
//! Schema `llmtop.power-caps/1`:
//!
//! ```text
//! { "schema": "llmtop.power-caps/1",
//!   "pid": 4242, "start_ticks": 123456,      the writer: pid and start time (/proc/PID/stat)
//!   "boot_id": "…",                          /proc/sys/kernel/random/boot_id when written
//!   "written_unix": 1760000000,
//!   "command": "bench --sweep power-cap=…",
//!   "originals": [ { "kind": "nvml", "index": 0, "name": "…", "limit_mw": 700000 },
//!                  { "kind": "rapl", "zone": "intel-rapl:0", "name": "package-0",
//!                    "dir": "/sys/class/powercap/intel-rapl:0", "enabled": true,
//!                    "constraints": [ { "index": 0, "name": "long_term",
//!                                       "power_limit_uw": 65000000 } ] } ] }
//! ```

use super::{CapError, Original, restore_original};
use crate::util::fs::{read_capped, write_atomic};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const FILE: &str = "power-caps.json";
pub const SCHEMA: &str = "llmtop.power-caps/1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Marker {
    pub schema: String,
    pub pid: u32,
    /// The writer's start time, clock ticks since boot: with the pid, which process it was
    /// (a pid alone can be reused).
    pub start_ticks: Option<u64>,
    pub boot_id: Option<String>,
    pub written_unix: u64,
    pub command: String,
    pub originals: Vec<Original>,
}

impl Marker {
    /// A marker naming this process as its writer.
    pub fn of_this_process(command: &str, originals: Vec<Original>) -> Self {
        let pid = std::process::id();
        Self {
            schema: SCHEMA.into(),
            pid,
            start_ticks: start_ticks(pid),
            boot_id: boot_id(),
            written_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            command: command.into(),
            originals,
        }
    }
}

/// `<data dir>/power-caps.json`.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE)
}

/// Write the marker atomically (a kill at any moment leaves the whole old file or the whole
/// new one), creating the data dir if needed.
pub fn write(path: &Path, m: &Marker) -> Result<(), CapError> {
    let err = |why: String| CapError::Marker {
        path: path.display().to_string(),
        why,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
    }
    let bytes = serde_json::to_vec_pretty(m).map_err(|e| err(e.to_string()))?;
    write_atomic(path, &bytes).map_err(|e| err(e.to_string()))
}

/// The marker at `path`: `Ok(None)` when there is none, `Err` (one line) when it cannot be
/// read as one.
pub fn read(path: &Path) -> Result<Option<Marker>, String> {
    if !path.exists() {
        return Ok(None);
    }
    let text = read_capped(path, 1 << 20).map_err(|e| e.to_string())?;
    let m: Marker = serde_json::from_str(&text)
        .map_err(|e| format!("{}: not a power-cap record: {e}", path.display()))?;
    if m.schema != SCHEMA {
        return Err(format!(
            "{}: schema {:?}, not {SCHEMA}",
            path.display(),
            crate::util::sanitize::terminal(&m.schema)
        ));
    }
    Ok(Some(m))
}

/// `/proc/sys/kernel/random/boot_id`: a reboot puts every power limit back by itself.
pub fn boot_id() -> Option<String> {
    read_capped(Path::new("/proc/sys/kernel/random/boot_id"), 4096)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// A process's start time, clock ticks since boot.
pub fn start_ticks(pid: u32) -> Option<u64> {
    let pid = i32::try_from(pid).ok()?;
    procfs::process::Process::new(pid)
        .ok()?
        .stat()
        .ok()
        .map(|s| s.starttime)
}

/// Who holds a marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// Its writer still runs: its limits are its own business.
    Running,
    /// Its writer is gone (killed, crashed): the limits it set are still in force.
    Gone,
    /// Written before the last reboot, which put the limits back.
    EarlierBoot,
}

/// Whose marker this is, given the boot it is now and how to find a process's start time.
pub fn owner(m: &Marker, boot_now: Option<&str>, ticks_of: impl Fn(u32) -> Option<u64>) -> Owner {
    if let (Some(then), Some(now)) = (m.boot_id.as_deref(), boot_now)
        && then != now
    {
        return Owner::EarlierBoot;
    }
    match (ticks_of(m.pid), m.start_ticks) {
        (Some(now), Some(then)) if now == then => Owner::Running,
        // Recorded without a start time: a live pid is taken to be the writer.
        (Some(_), None) => Owner::Running,
        _ => Owner::Gone,
    }
}

/// At any llmtop start: put back the limits a killed llmtop left capped, and say so in one
/// line (`None`: nothing to do). A marker whose writer still runs is left to it.
pub fn recover(data_dir: &Path) -> Option<String> {
    recover_with(
        data_dir,
        boot_id().as_deref(),
        start_ticks,
        restore_original,
    )
}

/// [`recover`] with the boot, the process table and the restoring injected (tests).
pub fn recover_with(
    data_dir: &Path,
    boot_now: Option<&str>,
    ticks_of: impl Fn(u32) -> Option<u64>,
    restore: impl Fn(&Original) -> Result<(), CapError>,
) -> Option<String> {
    let path = path(data_dir);
    let m = match read(&path) {
        Ok(Some(m)) => m,
        Ok(None) => return None,
        Err(why) => {
            // Set aside, so that the line is said once, not at every start.
            let aside = path.with_extension("json.unreadable");
            let moved = std::fs::rename(&path, &aside).is_ok();
            return Some(format!(
                "{}; the power limits it held are unknown: check them (nvidia-smi -q -d POWER; the constraint files under /sys/class/powercap){}",
                crate::util::sanitize::terminal(&why),
                if moved {
                    format!("; moved it to {}", aside.display())
                } else {
                    String::new()
                }
            ));
        }
    };
    match owner(&m, boot_now, ticks_of) {
        Owner::Running => None,
        Owner::EarlierBoot => {
            let _ = std::fs::remove_file(&path);
            Some(format!(
                "removed {}: power caps set by llmtop (pid {}) before the last reboot, which put the limits back",
                path.display(),
                m.pid
            ))
        }
        Owner::Gone => {
            let mut done = Vec::new();
            let mut failed = Vec::new();
            for o in &m.originals {
                match restore(o) {
                    Ok(()) => done.push(format!("{} {}", o.label(), o.limit_text())),
                    Err(e) => failed.push(e.to_string()),
                }
            }
            if failed.is_empty() {
                let _ = std::fs::remove_file(&path);
                Some(format!(
                    "restored the power limits llmtop (pid {}, {}) left capped when it ended without putting them back: {}",
                    m.pid,
                    crate::util::sanitize::terminal(&m.command),
                    done.join("; ")
                ))
            } else {
                Some(format!(
                    "power limits llmtop (pid {}) left capped are NOT all restored: {}; {} kept until they are (the next llmtop start tries again)",
                    m.pid,
                    failed.join("; "),
                    path.display()
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marker(pid: u32, ticks: Option<u64>, boot: Option<&str>) -> Marker {
        Marker {
            schema: SCHEMA.into(),
            pid,
            start_ticks: ticks,
            boot_id: boot.map(String::from),
            written_unix: 0,
            command: "bench --sweep power-cap=300,250".into(),
            originals: vec![Original::Nvml {
                index: 0,
                name: "NVIDIA H100".into(),
                limit_mw: 700_000,
            }],
        }
    }

    #[test]
    fn owner_is_the_pid_with_its_start_time_in_this_boot() {
        let m = marker(42, Some(1000), Some("boot-a"));
        assert_eq!(owner(&m, Some("boot-a"), |_| Some(1000)), Owner::Running);
        // The pid was reused by another process.
        assert_eq!(owner(&m, Some("boot-a"), |_| Some(2000)), Owner::Gone);
        assert_eq!(owner(&m, Some("boot-a"), |_| None), Owner::Gone);
        assert_eq!(
            owner(&m, Some("boot-b"), |_| Some(1000)),
            Owner::EarlierBoot
        );
        assert_eq!(
            owner(&marker(42, None, None), None, |_| Some(5)),
            Owner::Running
        );
    }

    #[test]
    fn recovery_restores_then_removes_and_keeps_the_marker_on_failure() {
        let dir = tempfile::tempdir().expect("dir");
        let p = path(dir.path());
        write(&p, &marker(42, Some(1), Some("b"))).expect("write");
        // Not restorable: kept, and the line says why.
        let line = recover_with(
            dir.path(),
            Some("b"),
            |_| None,
            |o| {
                Err(CapError::NoPermission {
                    device: o.label(),
                    fix: "run as root".into(),
                })
            },
        )
        .expect("a line");
        assert!(line.contains("NOT all restored"), "{line}");
        assert!(line.contains("run as root"), "{line}");
        assert!(p.exists());
        // Restored: removed, and the line names the board and its limit.
        let seen = std::sync::Mutex::new(Vec::new());
        let line = recover_with(
            dir.path(),
            Some("b"),
            |_| None,
            |o| {
                seen.lock().expect("lock").push(o.clone());
                Ok(())
            },
        )
        .expect("a line");
        assert!(line.contains("GPU 0 (NVIDIA H100) 700 W"), "{line}");
        assert!(!p.exists());
        assert_eq!(seen.lock().expect("lock").len(), 1);
        // Nothing left: nothing said.
        assert_eq!(
            recover_with(dir.path(), Some("b"), |_| None, |_| Ok(())),
            None
        );
    }

    #[test]
    fn a_running_writer_keeps_its_marker_and_a_reboot_clears_it() {
        let dir = tempfile::tempdir().expect("dir");
        let p = path(dir.path());
        write(&p, &marker(42, Some(7), Some("b"))).expect("write");
        let never = |_: &Original| -> Result<(), CapError> { panic!("must not restore") };
        assert_eq!(
            recover_with(dir.path(), Some("b"), |_| Some(7), never),
            None
        );
        assert!(p.exists());
        let line = recover_with(dir.path(), Some("c"), |_| Some(7), never).expect("line");
        assert!(line.contains("before the last reboot"), "{line}");
        assert!(!p.exists());
    }

    #[test]
    fn an_unreadable_marker_is_said_once_and_set_aside() {
        let dir = tempfile::tempdir().expect("dir");
        let p = path(dir.path());
        std::fs::write(&p, "{ not json").expect("write");
        let line = recover_with(dir.path(), None, |_| None, |_| Ok(())).expect("line");
        assert!(line.contains("not a power-cap record"), "{line}");
        assert!(!p.exists());
        assert!(dir.path().join("power-caps.json.unreadable").exists());
        assert_eq!(recover_with(dir.path(), None, |_| None, |_| Ok(())), None);
    }
}
