//! What machine this is: for bench results and run cards.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostInfo {
    pub hostname: String,
    pub cpu_model: String,
    pub physical_cores: u32,
    pub logical_cores: u32,
    pub ram_bytes: u64,
    /// GPU names (NVML), empty when none or no driver.
    pub gpus: Vec<String>,
    pub os: String,
    pub kernel: String,
    pub arch: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildInfo {
    pub llmtop_version: String,
    /// Cargo features compiled in: "cuda", "vulkan", "metal"; empty for CPU-only.
    pub features: Vec<String>,
    /// CPU target features llama.cpp was compiled with (avx2, fma, f16c, avx512f, ...).
    pub cpu_features: Vec<String>,
}

/// This machine's host name (`None` when the system does not say): the one place it is read.
pub fn host_name() -> Option<String> {
    sysinfo::System::host_name().ok().filter(|h| !h.is_empty())
}

impl HostInfo {
    /// Read the host now. GPU names come from the caller (the NVML sensor owns the handle).
    pub fn detect(gpus: Vec<String>) -> Self {
        let (cpu_model, logical, ram_bytes) = match sysinfo::System::new() {
            Ok(mut sys) => {
                sys.refresh_cpu_list(sysinfo::CpuRefreshKind::nothing());
                sys.refresh_memory();
                let model = sys
                    .cpus()
                    .first()
                    .map(|c| c.brand().trim().to_string())
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "unknown CPU".into());
                (model, sys.cpus().len() as u32, sys.total_memory())
            }
            Err(_) => ("unknown CPU".into(), 0, 0),
        };
        let logical = logical.max(1);
        let physical = sysinfo::System::physical_core_count()
            .map(|n| n as u32)
            .unwrap_or(logical);
        Self {
            hostname: host_name().unwrap_or_else(|| "unknown".into()),
            cpu_model,
            physical_cores: physical,
            logical_cores: logical,
            ram_bytes,
            gpus,
            os: sysinfo::System::long_os_version().unwrap_or_else(|_| std::env::consts::OS.into()),
            kernel: sysinfo::System::kernel_version().unwrap_or_default(),
            arch: std::env::consts::ARCH.into(),
        }
    }
}

impl BuildInfo {
    pub fn current() -> Self {
        let mut features = Vec::new();
        if cfg!(feature = "cuda") {
            features.push("cuda".to_string());
        }
        if cfg!(feature = "vulkan") {
            features.push("vulkan".to_string());
        }
        if cfg!(feature = "metal") {
            features.push("metal".to_string());
        }
        let mut cpu_features = Vec::new();
        macro_rules! feat {
            ($($f:literal),*) => { $( if cfg!(target_feature = $f) { cpu_features.push($f.to_string()); } )* };
        }
        feat!(
            "sse4.2",
            "avx",
            "avx2",
            "fma",
            "f16c",
            "avx512f",
            "avx512bw",
            "avx512vnni",
            "neon"
        );
        Self {
            llmtop_version: env!("CARGO_PKG_VERSION").to_string(),
            features,
            cpu_features,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_this_machine() {
        let h = HostInfo::detect(vec![]);
        assert!(h.logical_cores >= 1);
        assert!(h.physical_cores >= 1 && h.physical_cores <= h.logical_cores);
        assert!(
            h.ram_bytes > 64 * 1024 * 1024,
            "RAM {} looks wrong",
            h.ram_bytes
        );
        assert_eq!(h.arch, std::env::consts::ARCH);
    }

    #[test]
    fn build_info_reflects_target_features() {
        let b = BuildInfo::current();
        assert_eq!(b.llmtop_version, env!("CARGO_PKG_VERSION"));
        // This crate is built with target-cpu=native (.cargo/config.toml); on x86-64 every
        // machine we build on has at least SSE4.2.
        #[cfg(target_arch = "x86_64")]
        assert_eq!(
            b.cpu_features.contains(&"avx2".to_string()),
            cfg!(target_feature = "avx2")
        );
    }
}
