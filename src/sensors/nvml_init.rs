//! Why NVML could not start, and the fix: nvml-wrapper's error codes mapped once to a state, a
//! few words and the one-line fix, for `llmtop sensors` and `llmtop doctor`. Plus whether an
//! NVIDIA GPU is on the PCI bus at all, which tells "no GPU here" (nothing to fix) from "a GPU
//! the driver cannot reach" (something to fix).

use super::SourceState;
use super::sysfs::{Sysfs, list_dir};
use nvml_wrapper::error::NvmlError;

/// What went wrong with NVML at start, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvmlProblem {
    pub kind: ProblemKind,
    pub state: SourceState,
    /// A few words, as the discovery status says them.
    pub detail: String,
    pub fix: Option<String>,
}

/// The classes of failure a user can act on differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// `libnvidia-ml.so.1` cannot be loaded: no driver installed (the normal CPU-only case),
    /// or a container without the NVIDIA runtime.
    NoLibrary,
    /// The library is there but the kernel module is not loaded.
    DriverNotLoaded,
    /// The device nodes are not open to this user.
    NoPermission,
    /// The kernel module and the library are different versions (updated, not rebooted).
    VersionMismatch,
    /// The library lacks entry points llmtop calls: a driver older than nvml-wrapper needs.
    LibraryTooOld,
    /// The OS or a cgroup blocks the device (a container without GPU access).
    Blocked,
    /// A GPU fell off the bus or needs a reset.
    GpuLost,
    /// Anything else.
    Other,
}

const FIX_NO_LIBRARY: &str = "install the NVIDIA driver (it ships libnvidia-ml.so.1); in a container, start it with --gpus all (NVIDIA Container Toolkit)";
const FIX_NOT_LOADED: &str =
    "load the kernel driver: sudo modprobe nvidia (or reboot after installing the driver)";
const FIX_PERMISSION: &str = "give this user the group of /dev/nvidiactl (ls -l /dev/nvidia*; sudo usermod -aG GROUP $USER, then log in again), or run as root";
const FIX_MISMATCH: &str = "reboot, or reload the driver so it matches the library: sudo rmmod nvidia_uvm nvidia_drm nvidia_modeset nvidia && sudo modprobe nvidia";
const FIX_TOO_OLD: &str = "update the NVIDIA driver (nvidia-smi shows its version)";
const FIX_BLOCKED: &str =
    "start the container with --gpus all (NVIDIA Container Toolkit), or run llmtop on the host";
/// The fix for a GPU that fell off the bus (at init, or mid-run: `sensors::nvml::VIA_LOST`).
pub const FIX_LOST: &str =
    "look for Xid errors in sudo dmesg; reset the GPU (sudo nvidia-smi -r) or reboot";
const FIX_OTHER: &str = "check that nvidia-smi works; reinstall the driver if it does not";

/// The errors `Nvml::init` returns that [`problem`] names; any other is [`ProblemKind::Other`].
fn kind_of(e: &NvmlError) -> ProblemKind {
    match e {
        NvmlError::LibloadingError(_) | NvmlError::LibraryNotFound => ProblemKind::NoLibrary,
        NvmlError::DriverNotLoaded => ProblemKind::DriverNotLoaded,
        NvmlError::NoPermission => ProblemKind::NoPermission,
        NvmlError::LibRmVersionMismatch => ProblemKind::VersionMismatch,
        NvmlError::FailedToLoadSymbol(_) | NvmlError::FunctionNotFound => {
            ProblemKind::LibraryTooOld
        }
        NvmlError::OperatingSystem => ProblemKind::Blocked,
        NvmlError::GpuLost | NvmlError::ResetRequired => ProblemKind::GpuLost,
        _ => ProblemKind::Other,
    }
}

/// The discovery status's words for an init error (what `sensors::nvml` prints).
pub fn describe(e: &NvmlError) -> String {
    match kind_of(e) {
        ProblemKind::NoLibrary => "no NVIDIA driver (libnvidia-ml.so.1 not found)".into(),
        ProblemKind::DriverNotLoaded => "no NVIDIA driver loaded".into(),
        ProblemKind::NoPermission => "NVML: permission denied".into(),
        _ => format!("NVML init failed: {e}"),
    }
}

fn make(kind: ProblemKind, detail: String) -> NvmlProblem {
    let (state, fix) = match kind {
        ProblemKind::NoLibrary => (SourceState::Missing, FIX_NO_LIBRARY),
        ProblemKind::DriverNotLoaded => (SourceState::Missing, FIX_NOT_LOADED),
        ProblemKind::NoPermission => (SourceState::PermissionDenied, FIX_PERMISSION),
        ProblemKind::VersionMismatch => (SourceState::Unreadable, FIX_MISMATCH),
        ProblemKind::LibraryTooOld => (SourceState::Unreadable, FIX_TOO_OLD),
        ProblemKind::Blocked => (SourceState::PermissionDenied, FIX_BLOCKED),
        ProblemKind::GpuLost => (SourceState::Unreadable, FIX_LOST),
        ProblemKind::Other => (SourceState::Unreadable, FIX_OTHER),
    };
    NvmlProblem {
        kind,
        state,
        detail,
        fix: Some(fix.into()),
    }
}

/// An init error as a state, its words and the fix.
pub fn problem(e: &NvmlError) -> NvmlProblem {
    make(kind_of(e), describe(e))
}

/// The same, from the words a discovery status carries ([`describe`]'s, or a test-only
/// library path's "no NVIDIA driver (...)"): the status holds text, not the error.
pub fn problem_from_detail(detail: &str) -> NvmlProblem {
    let known = [
        NvmlError::DriverNotLoaded,
        NvmlError::NoPermission,
        NvmlError::LibRmVersionMismatch,
        NvmlError::FunctionNotFound,
        NvmlError::OperatingSystem,
        NvmlError::GpuLost,
        NvmlError::ResetRequired,
    ];
    let kind = if detail.starts_with("no NVIDIA driver (") {
        ProblemKind::NoLibrary
    } else if let Some(e) = known.iter().find(|e| describe(e) == detail) {
        kind_of(e)
    } else if detail.starts_with("NVML init failed: function symbol failed to load") {
        ProblemKind::LibraryTooOld
    } else {
        ProblemKind::Other
    };
    make(kind, detail.to_string())
}

/// PCI addresses of NVIDIA display controllers (vendor 0x10de, class 0x03xxxx) under
/// `bus/pci/devices` of the tree: a GPU NVML should see.
pub fn nvidia_on_pci(fs: &Sysfs) -> Vec<String> {
    list_dir(&fs.path("bus/pci/devices"))
        .into_iter()
        .filter(|(_, p)| {
            let vendor = fs.read_str(&p.join("vendor")).unwrap_or_default();
            let class = fs.read_str(&p.join("class")).unwrap_or_default();
            vendor.eq_ignore_ascii_case("0x10de") && class.starts_with("0x03")
        })
        .map(|(n, _)| n)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every error `Nvml::init` can give maps to a state and a fix, and the words a status
    /// carries map back to the same problem.
    #[test]
    fn every_init_error_has_its_fix_and_round_trips_through_the_words() {
        let cases = [
            (
                NvmlError::LibraryNotFound,
                ProblemKind::NoLibrary,
                SourceState::Missing,
                "NVIDIA Container Toolkit",
            ),
            (
                NvmlError::DriverNotLoaded,
                ProblemKind::DriverNotLoaded,
                SourceState::Missing,
                "modprobe nvidia",
            ),
            (
                NvmlError::NoPermission,
                ProblemKind::NoPermission,
                SourceState::PermissionDenied,
                "/dev/nvidiactl",
            ),
            (
                NvmlError::LibRmVersionMismatch,
                ProblemKind::VersionMismatch,
                SourceState::Unreadable,
                "rmmod nvidia_uvm",
            ),
            (
                NvmlError::FailedToLoadSymbol("nvmlDeviceGetFieldValues".into()),
                ProblemKind::LibraryTooOld,
                SourceState::Unreadable,
                "update the NVIDIA driver",
            ),
            (
                NvmlError::OperatingSystem,
                ProblemKind::Blocked,
                SourceState::PermissionDenied,
                "--gpus all",
            ),
            (
                NvmlError::GpuLost,
                ProblemKind::GpuLost,
                SourceState::Unreadable,
                "nvidia-smi -r",
            ),
            (
                NvmlError::Unknown,
                ProblemKind::Other,
                SourceState::Unreadable,
                "nvidia-smi works",
            ),
        ];
        for (e, kind, state, fix) in cases {
            let p = problem(&e);
            assert_eq!((p.kind, p.state), (kind, state), "{e}");
            assert!(p.fix.as_deref().is_some_and(|f| f.contains(fix)), "{p:?}");
            assert_eq!(problem_from_detail(&p.detail), p, "{e}");
        }
        // The words sensors::nvml prints today.
        assert_eq!(
            describe(&NvmlError::LibraryNotFound),
            "no NVIDIA driver (libnvidia-ml.so.1 not found)"
        );
        assert_eq!(
            problem_from_detail("NVML init failed: RM detects a driver/library version mismatch")
                .kind,
            ProblemKind::VersionMismatch
        );
        // A test-only library path that did not load.
        assert_eq!(
            problem_from_detail("no NVIDIA driver (LLMTOP_NVML_LIBRARY=/x could not be loaded)")
                .kind,
            ProblemKind::NoLibrary
        );
    }

    #[test]
    fn finds_nvidia_display_controllers_on_the_pci_bus() {
        let dir = tempfile::tempdir().expect("dir");
        let dev = |addr: &str, vendor: &str, class: &str| {
            let d = dir.path().join("bus/pci/devices").join(addr);
            std::fs::create_dir_all(&d).expect("mkdir");
            std::fs::write(d.join("vendor"), format!("{vendor}\n")).expect("vendor");
            std::fs::write(d.join("class"), format!("{class}\n")).expect("class");
        };
        dev("0000:00:02.0", "0x8086", "0x030000"); // Intel iGPU
        dev("0000:01:00.0", "0x10de", "0x030000"); // NVIDIA GPU
        dev("0000:01:00.1", "0x10de", "0x040300"); // its HDMI audio
        dev("0000:02:00.0", "0x10de", "0x030200"); // a 3D controller (H100)
        let fs = Sysfs::new(dir.path());
        assert_eq!(nvidia_on_pci(&fs), ["0000:01:00.0", "0000:02:00.0"]);
        assert!(nvidia_on_pci(&Sysfs::new(dir.path().join("none"))).is_empty());
    }
}
