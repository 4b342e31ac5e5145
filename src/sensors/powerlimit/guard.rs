//! The guard of a power-cap sweep: it records the limits as found (the marker) before the
//! first change, sets caps, and puts every limit back exactly once, whichever way out comes
//! first: [`CapGuard::restore`] at the end or on an error, [`Restorer::restore`] from a
//! signal watcher, the panic hook on a panic, `Drop` on unwinding. After a restore no cap is
//! set any more (a signal's restore cannot be undone by the sweep's next step).

use super::marker::{self, Marker, Owner};
use super::{Applied, CapError, Device, watts_text};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError, Weak};

/// Where the guard says what it did (one line each): bench's stderr, a test's buffer.
pub type Say = Box<dyn Fn(&str) + Send + Sync>;

struct State {
    devices: Vec<Device>,
    marker: PathBuf,
    /// Caps may be set; false once the limits were put back.
    open: bool,
}

struct Shared {
    state: Mutex<State>,
    say: Say,
}

/// The caps of one sweep and the way back.
pub struct CapGuard {
    shared: Arc<Shared>,
}

/// A handle that can put the limits back from another thread (a signal watcher).
#[derive(Clone)]
pub struct Restorer(Weak<Shared>);

/// Guards alive now, for the panic hook.
static ACTIVE: Mutex<Vec<Weak<Shared>>> = Mutex::new(Vec::new());

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl CapGuard {
    /// Take charge of `devices`: put back what a killed llmtop left, refuse when another
    /// llmtop's sweep runs, write the marker, and check that each limit may be written (by
    /// writing it as found, which changes nothing). Nothing is changed on an error, and no
    /// marker is left.
    pub fn begin(
        devices: Vec<Device>,
        marker_path: PathBuf,
        command: &str,
        say: Say,
    ) -> Result<Self, CapError> {
        match marker::read(&marker_path) {
            Ok(Some(m)) => {
                let boot = marker::boot_id();
                if marker::owner(&m, boot.as_deref(), marker::start_ticks) == Owner::Running {
                    return Err(CapError::Busy {
                        pid: m.pid,
                        path: marker_path.display().to_string(),
                    });
                }
                if let Some(dir) = marker_path.parent()
                    && let Some(line) = marker::recover(dir)
                {
                    say(&line);
                }
            }
            Ok(None) => {}
            Err(_) => {
                if let Some(line) = marker_path.parent().and_then(marker::recover) {
                    say(&line);
                }
            }
        }
        let originals = devices.iter().map(|d| d.original().clone()).collect();
        marker::write(&marker_path, &Marker::of_this_process(command, originals))?;
        let mut devices = devices;
        for d in &mut devices {
            if let Err(e) = d.restore() {
                let _ = std::fs::remove_file(&marker_path);
                return Err(e);
            }
        }
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                devices,
                marker: marker_path,
                open: true,
            }),
            say,
        });
        install_panic_hook();
        ACTIVE
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::downgrade(&shared));
        Ok(Self { shared })
    }

    /// The devices capped, by label.
    pub fn labels(&self) -> Vec<String> {
        lock(&self.shared.state)
            .devices
            .iter()
            .map(Device::label)
            .collect()
    }

    /// The commands that set `watts` by hand on each device.
    pub fn commands_for(&self, watts: f64) -> Vec<String> {
        lock(&self.shared.state)
            .devices
            .iter()
            .map(|d| d.command_for(watts))
            .collect()
    }

    /// The limits as found, by device: "GPU 0 (NVIDIA H100) 700 W".
    pub fn originals(&self) -> Vec<String> {
        lock(&self.shared.state)
            .devices
            .iter()
            .map(|d| format!("{} {}", d.label(), d.original().limit_text()))
            .collect()
    }

    /// Cap every device at `watts`; the limit each reports in effect after.
    pub fn set(&self, watts: f64) -> Result<Vec<Applied>, CapError> {
        let mut st = lock(&self.shared.state);
        if !st.open {
            return Err(CapError::Closed {
                watts: watts_text(watts),
            });
        }
        let mut applied = Vec::new();
        for d in &mut st.devices {
            d.set(watts)?;
            applied.push(Applied {
                device: d.label(),
                requested_w: watts,
                in_effect_w: d.in_effect_w().ok(),
            });
        }
        Ok(applied)
    }

    /// Put every limit back (once; later calls do nothing), saying so in one line.
    pub fn restore(&self, why: &str) -> Result<(), CapError> {
        restore_locked(&mut lock(&self.shared.state), why, &self.shared.say)
    }

    pub fn restorer(&self) -> Restorer {
        Restorer(Arc::downgrade(&self.shared))
    }
}

impl Restorer {
    /// As [`CapGuard::restore`]; nothing once the guard is gone.
    pub fn restore(&self, why: &str) {
        if let Some(shared) = self.0.upgrade() {
            let _ = restore_locked(&mut lock(&shared.state), why, &shared.say);
        }
    }
}

impl Drop for CapGuard {
    fn drop(&mut self) {
        let _ = self.restore("on the way out");
        ACTIVE
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|w| w.strong_count() > 0 && !Weak::ptr_eq(w, &Arc::downgrade(&self.shared)));
    }
}

fn restore_locked(st: &mut State, why: &str, say: &Say) -> Result<(), CapError> {
    if !st.open {
        return Ok(());
    }
    st.open = false;
    let mut done = Vec::new();
    let mut failed: Vec<CapError> = Vec::new();
    for d in &mut st.devices {
        match d.restore() {
            Ok(()) => done.push(format!("{} {}", d.label(), d.original().limit_text())),
            Err(e) => failed.push(e),
        }
    }
    if let Some(first) = failed.first().cloned() {
        say(&format!(
            "power limits NOT all restored {why}: {}; {} kept, so the next llmtop start tries again",
            failed
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
            st.marker.display()
        ));
        return Err(first);
    }
    let _ = std::fs::remove_file(&st.marker);
    say(&format!("power limits restored {why}: {}", done.join("; ")));
    Ok(())
}

/// On a panic (after the usual message): put back the limits of every live guard whose lock
/// is free. One held by the panicking thread is put back by its `Drop` as the stack unwinds.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            prev(info);
            let live: Vec<Arc<Shared>> = match ACTIVE.try_lock() {
                Ok(v) => v.iter().filter_map(Weak::upgrade).collect(),
                Err(TryLockError::Poisoned(p)) => {
                    p.into_inner().iter().filter_map(Weak::upgrade).collect()
                }
                Err(TryLockError::WouldBlock) => Vec::new(),
            };
            for shared in live {
                let mut st = match shared.state.try_lock() {
                    Ok(st) => st,
                    Err(TryLockError::Poisoned(p)) => p.into_inner(),
                    Err(TryLockError::WouldBlock) => continue,
                };
                let _ = restore_locked(&mut st, "after a panic", &shared.say);
            }
        }));
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sensors::powerlimit::rapl::tests::{Recorder, read, tree};
    use crate::sensors::powerlimit::rapl::{packages, real_writer};
    use crate::sensors::sysfs::Sysfs;

    /// The panic hook puts back every live guard of the process: one guard at a time here.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

    fn serial() -> MutexGuard<'static, ()> {
        ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn devices(root: &std::path::Path) -> Vec<Device> {
        packages(&Sysfs::new(root), real_writer())
            .expect("zones")
            .into_iter()
            .map(Device::Rapl)
            .collect()
    }

    fn lines() -> (Arc<Mutex<Vec<String>>>, Say) {
        let said = Arc::new(Mutex::new(Vec::new()));
        let s = said.clone();
        (
            said,
            Box::new(move |l| s.lock().expect("lock").push(l.into())),
        )
    }

    #[test]
    fn the_marker_lives_exactly_while_limits_may_differ() {
        let _serial = serial();
        let sys = tempfile::tempdir().expect("dir");
        let data = tempfile::tempdir().expect("dir");
        tree(sys.path(), 65_000_000, 90_000_000, 1);
        let marker_path = marker::path(data.path());
        let (said, say) = lines();
        let g =
            CapGuard::begin(devices(sys.path()), marker_path.clone(), "test", say).expect("begin");
        let m = marker::read(&marker_path)
            .expect("readable")
            .expect("written");
        assert_eq!(m.pid, std::process::id());
        assert_eq!(m.originals.len(), 1);
        assert_eq!(m.originals[0].limit_w(), Some(65.0));
        let applied = g.set(45.0).expect("set");
        assert_eq!(applied[0].in_effect_w, Some(45.0));
        assert_eq!(read(sys.path(), "constraint_0_power_limit_uw"), "45000000");
        // A second sweep while this one runs is refused, and changes nothing.
        let e = CapGuard::begin(devices(sys.path()), marker_path.clone(), "t2", lines().1)
            .err()
            .expect("busy");
        assert!(matches!(e, CapError::Busy { .. }), "{e}");
        assert_eq!(read(sys.path(), "constraint_0_power_limit_uw"), "45000000");
        g.restore("at the end").expect("restore");
        assert_eq!(read(sys.path(), "constraint_0_power_limit_uw"), "65000000");
        assert_eq!(read(sys.path(), "constraint_1_power_limit_uw"), "90000000");
        assert!(!marker_path.exists());
        // Once restored, no cap is set any more (a signal's restore stays done).
        assert!(matches!(g.set(30.0), Err(CapError::Closed { .. })));
        assert_eq!(read(sys.path(), "constraint_0_power_limit_uw"), "65000000");
        drop(g);
        let said = said.lock().expect("lock").clone();
        assert_eq!(
            said,
            [
                "power limits restored at the end: CPU package-0 (intel-rapl:0) long_term 65 W, short_term 90 W"
            ]
        );
    }

    #[test]
    fn no_permission_leaves_no_marker_and_no_change() {
        let _serial = serial();
        let sys = tempfile::tempdir().expect("dir");
        let data = tempfile::tempdir().expect("dir");
        tree(sys.path(), 65_000_000, 90_000_000, 1);
        let rec = Arc::new(Recorder {
            refuse: Some("constraint_1".into()),
            ..Default::default()
        });
        let devs = packages(&Sysfs::new(sys.path()), rec)
            .expect("zones")
            .into_iter()
            .map(Device::Rapl)
            .collect();
        let marker_path = marker::path(data.path());
        assert!(CapGuard::begin(devs, marker_path.clone(), "t", lines().1).is_err());
        assert!(!marker_path.exists());
        assert_eq!(read(sys.path(), "constraint_0_power_limit_uw"), "65000000");
    }

    #[test]
    fn a_panic_puts_the_limits_back() {
        let _serial = serial();
        let sys = tempfile::tempdir().expect("dir");
        let data = tempfile::tempdir().expect("dir");
        tree(sys.path(), 65_000_000, 90_000_000, 1);
        let marker_path = marker::path(data.path());
        let (said, say) = lines();
        let g = CapGuard::begin(devices(sys.path()), marker_path.clone(), "t", say).expect("begin");
        g.set(20.0).expect("set");
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _g = g;
            panic!("test panic with the caps set");
        }));
        assert!(r.is_err());
        assert_eq!(read(sys.path(), "constraint_0_power_limit_uw"), "65000000");
        assert!(!marker_path.exists());
        let said = said.lock().expect("lock").clone();
        assert_eq!(said.len(), 1, "{said:?}");
        assert!(
            said[0].starts_with("power limits restored after a panic"),
            "{said:?}"
        );
    }
}
