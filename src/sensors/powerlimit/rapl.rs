//! CPU packages' power limit through Linux powercap (RAPL): each `package-N` zone's
//! `constraint_N_name` says which constraint is `long_term` (PL1, the sustained limit) and
//! `short_term` (PL2, the burst limit); `constraint_N_power_limit_uw` holds it in µW.
//!
//! A cap of W sets the long-term limit to W, and the short-term one to W where it was higher
//! (else bursts above the cap would last its whole time window, several seconds, and blur
//! what the cap does). Writes keep long-term ≤ short-term at every step.

use super::{CapError, Constraint, Original, rapl_fix};
use crate::sensors::sysfs::{Sysfs, SysfsError, list_dir};
use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The lowest cap taken, W: below it a package cannot run at all.
pub const MIN_W: f64 = 1.0;

/// Writes one attribute file. The real one is [`RealWrite`]; tests refuse chosen paths with
/// their own (root, as CI runs, may write any file).
pub trait WriteFile: Send + Sync {
    fn write(&self, path: &Path, text: &str) -> io::Result<()>;
}

/// Writes an existing regular file in place, as `echo N > file` does; never creates one, and
/// refuses a FIFO or a device planted where an attribute should be.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealWrite;

impl WriteFile for RealWrite {
    fn write(&self, path: &Path, text: &str) -> io::Result<()> {
        let meta = std::fs::metadata(path)?;
        if !meta.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not an attribute file",
            ));
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)?;
        f.write_all(text.as_bytes())
    }
}

pub fn real_writer() -> Arc<dyn WriteFile> {
    Arc::new(RealWrite)
}

/// One package zone.
pub struct Zone {
    fs: Sysfs,
    writer: Arc<dyn WriteFile>,
    dir: PathBuf,
    pub original: Original,
}

fn unreadable(device: String, e: &SysfsError) -> CapError {
    CapError::Failed {
        device,
        what: "cannot read its power limits",
        why: e.to_string(),
    }
}

/// Every `package-N` zone under `fs`, with its limits as found.
pub fn packages(fs: &Sysfs, writer: Arc<dyn WriteFile>) -> Result<Vec<Zone>, CapError> {
    let class = fs.path("class/powercap");
    let mut zones = Vec::new();
    for (dir_name, path) in list_dir(&class) {
        // Top-level zones only (intel-rapl:N); intel-rapl-mmio:N is the same package again.
        if !dir_name.starts_with("intel-rapl:") || dir_name.split(':').count() != 2 {
            continue;
        }
        let Ok(name) = fs.read_str(&path.join("name")) else {
            continue;
        };
        if !name.starts_with("package") {
            continue;
        }
        let dir = std::path::absolute(&path).unwrap_or(path);
        let device = format!(
            "CPU {} ({})",
            crate::util::sanitize::terminal(&name),
            crate::util::sanitize::terminal(&dir_name)
        );
        let mut constraints = Vec::new();
        for index in 0..8u32 {
            let Ok(cname) = fs.read_str(&dir.join(format!("constraint_{index}_name"))) else {
                break;
            };
            if cname != "long_term" && cname != "short_term" {
                continue;
            }
            let uw = fs
                .read_num::<u64>(&dir.join(format!("constraint_{index}_power_limit_uw")))
                .map_err(|e| unreadable(device.clone(), &e))?;
            constraints.push(Constraint {
                index,
                name: cname,
                power_limit_uw: uw,
            });
        }
        if !constraints.iter().any(|c| c.name == "long_term") {
            return Err(CapError::Unsupported {
                device,
                why: format!("no long_term constraint in {}", dir.display()),
            });
        }
        // long_term first: the order writes that lower the limits take.
        constraints.sort_by_key(|c| c.name != "long_term");
        let enabled = fs.read_num::<u8>(&dir.join("enabled")).ok().map(|v| v != 0);
        zones.push(Zone {
            fs: fs.clone(),
            writer: writer.clone(),
            original: Original::Rapl {
                zone: dir_name,
                name,
                dir: dir.clone(),
                enabled,
                constraints,
            },
            dir,
        });
    }
    if zones.is_empty() {
        return Err(CapError::NoDevice {
            what: "CPU package",
            why: format!(
                "no RAPL package zone (intel-rapl:N named package-N) under {}",
                class.display()
            ),
        });
    }
    Ok(zones)
}

impl Zone {
    /// A zone from a marker another process left (its paths are absolute).
    pub fn from_original(original: Original, writer: Arc<dyn WriteFile>) -> Result<Self, CapError> {
        let Original::Rapl { dir, .. } = &original else {
            return Err(CapError::Failed {
                device: original.label(),
                what: "not restored",
                why: "not a RAPL zone".into(),
            });
        };
        Ok(Self {
            fs: Sysfs::new("/"),
            writer,
            dir: dir.clone(),
            original,
        })
    }

    fn constraints(&self) -> &[Constraint] {
        match &self.original {
            Original::Rapl { constraints, .. } => constraints,
            Original::Nvml { .. } => &[],
        }
    }

    fn limit_path(&self, c: &Constraint) -> PathBuf {
        self.dir
            .join(format!("constraint_{}_power_limit_uw", c.index))
    }

    fn write(&self, path: &Path, value: u64) -> Result<(), CapError> {
        self.writer
            .write(path, &format!("{value}\n"))
            .map_err(|e| self.write_error(path, &e))
    }

    fn write_error(&self, path: &Path, e: &io::Error) -> CapError {
        let device = self.original.label();
        if e.kind() == io::ErrorKind::PermissionDenied {
            // SAFETY: geteuid has no preconditions.
            if unsafe { libc::geteuid() } == 0 {
                return CapError::Unsupported {
                    device,
                    why: format!(
                        "{}: refused even to root ({e}): the firmware or the kernel's lockdown locks the RAPL limits",
                        path.display()
                    ),
                };
            }
            return CapError::NoPermission {
                device,
                fix: rapl_fix(&self.dir),
            };
        }
        CapError::Failed {
            device,
            what: "cannot set its power limit",
            why: format!("{}: {e}", path.display()),
        }
    }

    fn read_uw(&self, c: &Constraint) -> Result<u64, CapError> {
        self.fs
            .read_num::<u64>(&self.limit_path(c))
            .map_err(|e| unreadable(self.original.label(), &e))
    }

    pub fn set(&mut self, watts: f64) -> Result<(), CapError> {
        let uw = (watts * 1e6).round() as u64;
        if let Original::Rapl {
            enabled: Some(false),
            ..
        } = self.original
        {
            self.write(&self.dir.join("enabled"), 1)?;
        }
        let long = self
            .constraints()
            .iter()
            .find(|c| c.name == "long_term")
            .cloned();
        let current = match &long {
            Some(c) => self.read_uw(c)?,
            None => 0,
        };
        // (path, value) in the order that keeps long_term <= short_term: long first when
        // lowering, last when raising.
        let mut writes: Vec<(PathBuf, u64)> = self
            .constraints()
            .iter()
            .map(|c| {
                let v = if c.name == "long_term" {
                    uw
                } else {
                    c.power_limit_uw.min(uw)
                };
                (self.limit_path(c), v)
            })
            .collect();
        if uw > current {
            writes.reverse();
        }
        for (path, v) in writes {
            self.write(&path, v)?;
        }
        Ok(())
    }

    pub fn in_effect_w(&self) -> Result<f64, CapError> {
        let c = self
            .constraints()
            .iter()
            .find(|c| c.name == "long_term")
            .cloned()
            .ok_or_else(|| CapError::Unsupported {
                device: self.original.label(),
                why: "no long_term constraint".into(),
            })?;
        self.read_uw(&c).map(|uw| uw as f64 / 1e6)
    }

    pub fn restore(&mut self) -> Result<(), CapError> {
        // short_term (raised back) before long_term.
        let constraints: Vec<Constraint> = self.constraints().iter().rev().cloned().collect();
        for c in &constraints {
            self.write(&self.limit_path(c), c.power_limit_uw)?;
        }
        if let Original::Rapl {
            enabled: Some(false),
            ..
        } = self.original
        {
            self.write(&self.dir.join("enabled"), 0)?;
        }
        Ok(())
    }

    pub fn command_for(&self, watts: f64) -> String {
        let uw = (watts * 1e6).round() as u64;
        let cmds: Vec<String> = self
            .constraints()
            .iter()
            .map(|c| {
                let v = if c.name == "long_term" {
                    uw
                } else {
                    c.power_limit_uw.min(uw)
                };
                format!("echo {v} | sudo tee {}", self.limit_path(c).display())
            })
            .collect();
        cmds.join(" && ")
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A powercap tree with one package (long_term, short_term µW), its core subzone and an
    /// MMIO twin, in real file names and units.
    pub(crate) fn tree(root: &Path, long_uw: u64, short_uw: u64, enabled: u8) {
        let class = root.join("class/powercap");
        for (zone, name) in [
            ("intel-rapl:0", "package-0"),
            ("intel-rapl:0:0", "core"),
            ("intel-rapl-mmio:0", "package-0"),
        ] {
            let d = class.join(zone);
            std::fs::create_dir_all(&d).expect("mkdir");
            let w = |f: &str, v: String| std::fs::write(d.join(f), v + "\n").expect("write");
            w("name", name.into());
            w("enabled", enabled.to_string());
            w("energy_uj", "123456789".into());
            w("max_energy_range_uj", "262143328850".into());
            w("constraint_0_name", "long_term".into());
            w("constraint_0_power_limit_uw", long_uw.to_string());
            w("constraint_0_max_power_uw", "65000000".into());
            w("constraint_0_time_window_us", "27983872".into());
            w("constraint_1_name", "short_term".into());
            w("constraint_1_power_limit_uw", short_uw.to_string());
            w("constraint_1_max_power_uw", "0".into());
            w("constraint_1_time_window_us", "2440".into());
        }
    }

    pub(crate) fn read(root: &Path, file: &str) -> String {
        std::fs::read_to_string(root.join("class/powercap/intel-rapl:0").join(file))
            .expect("read")
            .trim()
            .to_string()
    }

    /// Writes through, and records each write; refuses the paths containing `refuse`.
    #[derive(Default)]
    pub(crate) struct Recorder {
        pub writes: Mutex<Vec<(String, String)>>,
        pub refuse: Option<String>,
    }

    impl WriteFile for Recorder {
        fn write(&self, path: &Path, text: &str) -> io::Result<()> {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if self
                .refuse
                .as_deref()
                .is_some_and(|r| path.to_string_lossy().contains(r))
            {
                return Err(io::Error::from(io::ErrorKind::PermissionDenied));
            }
            self.writes
                .lock()
                .expect("lock")
                .push((name, text.trim().to_string()));
            RealWrite.write(path, text)
        }
    }

    #[test]
    fn a_cap_lowers_long_term_first_and_short_term_to_it_and_restores_in_reverse() {
        let dir = tempfile::tempdir().expect("dir");
        tree(dir.path(), 65_000_000, 90_000_000, 1);
        let rec = Arc::new(Recorder::default());
        let mut zones = packages(&Sysfs::new(dir.path()), rec.clone()).expect("zones");
        // The package only: not its core subzone, not its MMIO twin.
        assert_eq!(zones.len(), 1);
        let z = &mut zones[0];
        assert_eq!(z.original.label(), "CPU package-0 (intel-rapl:0)");
        assert_eq!(z.original.limit_text(), "long_term 65 W, short_term 90 W");
        assert_eq!(z.original.limit_w(), Some(65.0));
        z.set(40.0).expect("set 40");
        assert_eq!(read(dir.path(), "constraint_0_power_limit_uw"), "40000000");
        assert_eq!(read(dir.path(), "constraint_1_power_limit_uw"), "40000000");
        assert_eq!(z.in_effect_w().expect("read back"), 40.0);
        // Raising: short_term first, and never above what it was.
        z.set(80.0).expect("set 80");
        assert_eq!(read(dir.path(), "constraint_0_power_limit_uw"), "80000000");
        assert_eq!(read(dir.path(), "constraint_1_power_limit_uw"), "80000000");
        z.set(100.0).expect("set 100");
        assert_eq!(read(dir.path(), "constraint_1_power_limit_uw"), "90000000");
        z.restore().expect("restore");
        assert_eq!(read(dir.path(), "constraint_0_power_limit_uw"), "65000000");
        assert_eq!(read(dir.path(), "constraint_1_power_limit_uw"), "90000000");
        let order: Vec<String> = rec
            .writes
            .lock()
            .expect("lock")
            .iter()
            .map(|(f, v)| format!("{}={v}", &f[..12]))
            .collect();
        assert_eq!(
            order,
            [
                "constraint_0=40000000",
                "constraint_1=40000000",
                "constraint_1=80000000",
                "constraint_0=80000000",
                "constraint_1=90000000",
                "constraint_0=100000000",
                "constraint_1=90000000",
                "constraint_0=65000000",
            ]
        );
    }

    #[test]
    fn a_disabled_zone_is_enabled_for_the_cap_and_disabled_again() {
        let dir = tempfile::tempdir().expect("dir");
        tree(dir.path(), 65_000_000, 90_000_000, 0);
        let mut z = packages(&Sysfs::new(dir.path()), real_writer())
            .expect("zones")
            .remove(0);
        z.set(30.0).expect("set");
        assert_eq!(read(dir.path(), "enabled"), "1");
        z.restore().expect("restore");
        assert_eq!(read(dir.path(), "enabled"), "0");
        assert_eq!(read(dir.path(), "constraint_0_power_limit_uw"), "65000000");
    }

    #[test]
    fn refused_writes_name_the_fix_and_odd_trees_say_what_is_missing() {
        let dir = tempfile::tempdir().expect("dir");
        tree(dir.path(), 65_000_000, 90_000_000, 1);
        let rec = Arc::new(Recorder {
            refuse: Some("constraint_0_power_limit_uw".into()),
            ..Default::default()
        });
        let mut z = packages(&Sysfs::new(dir.path()), rec)
            .expect("zones")
            .remove(0);
        let e = z.set(40.0).expect_err("refused").to_string();
        // CI runs as root: there the line says the firmware locks it, else how to allow it.
        if unsafe { libc::geteuid() } == 0 {
            assert!(e.contains("refused even to root"), "{e}");
        } else {
            assert!(e.contains("chmod a+w"), "{e}");
        }
        assert!(e.starts_with("CPU package-0 (intel-rapl:0): "), "{e}");
        assert_eq!(read(dir.path(), "constraint_0_power_limit_uw"), "65000000");

        let empty = tempfile::tempdir().expect("dir");
        let e = packages(&Sysfs::new(empty.path()), real_writer())
            .err()
            .expect("no zone")
            .to_string();
        assert!(
            e.starts_with("no CPU package to cap: no RAPL package zone"),
            "{e}"
        );
        std::fs::remove_file(
            dir.path()
                .join("class/powercap/intel-rapl:0/constraint_0_name"),
        )
        .expect("rm");
        let e = packages(&Sysfs::new(dir.path()), real_writer())
            .err()
            .expect("no long_term")
            .to_string();
        assert!(e.contains("no long_term constraint"), "{e}");
    }

    #[test]
    fn a_fifo_where_an_attribute_should_be_is_refused_not_waited_on() {
        let dir = tempfile::tempdir().expect("dir");
        let fifo = dir.path().join("constraint_0_power_limit_uw");
        let c = std::ffi::CString::new(fifo.to_string_lossy().as_bytes()).expect("cstr");
        // SAFETY: mkfifo on a path we own.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let e = RealWrite.write(&fifo, "1\n").expect_err("refused");
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        // And never creates a file that is not there.
        let missing = dir.path().join("constraint_9_power_limit_uw");
        assert!(RealWrite.write(&missing, "1\n").is_err());
        assert!(!missing.exists());
    }
}
