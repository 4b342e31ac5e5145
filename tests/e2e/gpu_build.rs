//! scripts/run.sh picks its GPU build from what the machine has: run in dry-run mode
//! (`LLMTOP_DETECT_ONLY=1`) with stand-in tools on PATH (`nvidia-smi`, `nvcc`, `uname`,
//! `glslc`), a stand-in driver version file and include dirs, and nothing else of the host's.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A machine as the script sees it.
struct Machine {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

fn real(tool: &str) -> PathBuf {
    ["/usr/bin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("{tool} not found in /usr/bin or /bin"))
}

impl Machine {
    /// Linux with no GPU: the basic tools the script uses, nothing else on PATH.
    fn linux() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).expect("bin");
        for t in ["dirname", "grep", "sed", "head"] {
            std::os::unix::fs::symlink(real(t), bin.join(t)).expect("link");
        }
        std::fs::create_dir_all(dir.path().join("include")).expect("include");
        let mut m = Self {
            env: vec![
                ("PATH".into(), bin.display().to_string()),
                ("HOME".into(), dir.path().display().to_string()),
                ("LLMTOP_DETECT_ONLY".into(), "1".into()),
                (
                    "LLMTOP_NVIDIA_PROC".into(),
                    dir.path().join("no-driver").display().to_string(),
                ),
                (
                    "CUDA_HOME".into(),
                    dir.path().join("no-cuda").display().to_string(),
                ),
                (
                    "LLMTOP_VULKAN_INCLUDE".into(),
                    dir.path().join("include").display().to_string(),
                ),
            ],
            dir,
        };
        m.tool("uname", "echo Linux");
        m
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    /// A stand-in `name` on PATH running `body` (sh).
    fn tool(&mut self, name: &str, body: &str) -> &mut Self {
        let p = self.root().join("bin").join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).expect("write tool");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        self
    }

    fn set(&mut self, k: &str, v: &str) -> &mut Self {
        self.env.retain(|(key, _)| key != k);
        self.env.push((k.into(), v.into()));
        self
    }

    /// vulkan_core.h of version 1.3.`patch`, with or without VK_EXT_layer_settings.
    fn vulkan_headers(&mut self, patch: u32, layer_settings: bool) -> &mut Self {
        let d = self.root().join("include/vulkan");
        std::fs::create_dir_all(&d).expect("mkdir");
        let ext = if layer_settings {
            "#define VK_EXT_layer_settings 1\n#define VK_EXT_LAYER_SETTINGS_SPEC_VERSION 2\n"
        } else {
            ""
        };
        std::fs::write(
            d.join("vulkan_core.h"),
            format!(
                "#ifndef VULKAN_CORE_H_\n#define VK_HEADER_VERSION {patch}\n#define VK_HEADER_VERSION_COMPLETE VK_MAKE_API_VERSION(0, 1, 3, VK_HEADER_VERSION)\n{ext}#endif\n"
            ),
        )
        .expect("header");
        self
    }

    /// (exit code, stdout + stderr).
    fn run(&self) -> (i32, String) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/run.sh");
        let out = Command::new("/bin/bash")
            .arg(script)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("run scripts/run.sh");
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.code().unwrap_or(-1), text)
    }

    /// The decision line, after checking the dry run stopped at the two decision lines.
    fn decision(&self) -> String {
        let (code, text) = self.run();
        assert_eq!(code, 0, "{text}");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "dry run prints only the decision: {text}");
        assert!(
            lines[1].starts_with("llmtop build: set LLMTOP_BUILD="),
            "{text}"
        );
        lines[0].to_string()
    }
}

const SMI_4090: &str = "[ \"$1\" = --query-gpu=driver_version,name ] || exit 3\necho '550.54.15, NVIDIA GeForce RTX 4090'";

#[test]
fn no_gpu_builds_for_the_cpu_and_says_why() {
    let m = Machine::linux();
    assert_eq!(
        m.decision(),
        "llmtop build: cpu (no NVIDIA driver; no Vulkan headers)"
    );
    // nvidia-smi that fails (driver not loaded) is no driver either.
    let mut m = Machine::linux();
    m.tool(
        "nvidia-smi",
        "echo 'NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver' >&2; exit 9",
    )
    .tool("nvcc", "echo nvcc");
    assert_eq!(
        m.decision(),
        "llmtop build: cpu (no NVIDIA driver; no Vulkan headers)"
    );
}

#[test]
fn an_nvidia_driver_and_nvcc_build_cuda() {
    let mut m = Machine::linux();
    m.tool("nvidia-smi", SMI_4090).tool("nvcc", "echo nvcc");
    let bin = m.root().join("bin/nvcc");
    assert_eq!(
        m.decision(),
        format!(
            "llmtop build: cuda (NVIDIA driver 550.54.15, NVIDIA GeForce RTX 4090; nvcc at {})",
            bin.display()
        )
    );
    // The driver's version file and nvcc under CUDA_HOME (not on PATH), as many installs are.
    let mut m = Machine::linux();
    let proc = m.root().join("nvidia-version");
    std::fs::write(
        &proc,
        "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 22:23:56 UTC 2024\nGCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n",
    )
    .expect("proc");
    let cuda = m.root().join("cuda-12.4");
    std::fs::create_dir_all(cuda.join("bin")).expect("cuda");
    let nvcc = cuda.join("bin/nvcc");
    std::fs::write(&nvcc, "#!/bin/sh\n").expect("nvcc");
    std::fs::set_permissions(&nvcc, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    m.set("LLMTOP_NVIDIA_PROC", &proc.display().to_string())
        .set("CUDA_HOME", &cuda.display().to_string());
    assert_eq!(
        m.decision(),
        format!(
            "llmtop build: cuda (NVIDIA driver 550.54.15 from {}; nvcc at {})",
            proc.display(),
            nvcc.display()
        )
    );
}

#[test]
fn a_driver_without_nvcc_and_debian_12_vulkan_headers_build_for_the_cpu() {
    let mut m = Machine::linux();
    m.tool("nvidia-smi", SMI_4090)
        .tool("glslc", "echo glslc")
        .vulkan_headers(239, false);
    let inc = m.root().join("include");
    assert_eq!(
        m.decision(),
        format!(
            "llmtop build: cpu (NVIDIA driver 550.54.15, NVIDIA GeForce RTX 4090 but no nvcc: install the CUDA toolkit (apt-get install nvidia-cuda-toolkit) for the GPU build; Vulkan headers 1.3.239 in {} lack VK_EXT_layer_settings, too old for this llama.cpp (install newer ones, e.g. the LunarG SDK, and set VULKAN_SDK))",
            inc.display()
        )
    );
}

#[test]
fn new_enough_vulkan_headers_and_glslc_build_vulkan() {
    let mut m = Machine::linux();
    m.vulkan_headers(275, true);
    let inc = m.root().join("include");
    // Without the shader compiler ggml-vulkan cannot build.
    assert_eq!(
        m.decision(),
        format!(
            "llmtop build: cpu (no NVIDIA driver; Vulkan headers 1.3.275 in {} but no glslc: install glslc (apt-get install glslc) for the Vulkan build)",
            inc.display()
        )
    );
    m.tool("glslc", "echo glslc");
    assert_eq!(
        m.decision(),
        format!(
            "llmtop build: vulkan (no NVIDIA driver; Vulkan headers 1.3.275 in {} have VK_EXT_layer_settings; glslc found)",
            inc.display()
        )
    );
    // VULKAN_SDK's headers come before the system's.
    let sdk = m.root().join("sdk");
    std::fs::create_dir_all(sdk.join("include/vulkan")).expect("sdk");
    std::fs::write(
        sdk.join("include/vulkan/vulkan_core.h"),
        "#define VK_HEADER_VERSION 296\n#define VK_HEADER_VERSION_COMPLETE VK_MAKE_API_VERSION(0, 1, 4, VK_HEADER_VERSION)\n#define VK_EXT_layer_settings 1\n",
    )
    .expect("sdk header");
    m.set("VULKAN_SDK", &sdk.display().to_string());
    assert!(
        m.decision().contains(&format!(
            "Vulkan headers 1.4.296 in {}/include have",
            sdk.display()
        )),
        "{}",
        m.decision()
    );
}

#[test]
fn macos_builds_metal_and_the_variable_overrides_everything() {
    let mut m = Machine::linux();
    m.tool(
        "uname",
        "[ \"$1\" = -s ] && echo Darwin || echo Darwin Kernel",
    );
    assert_eq!(
        m.decision(),
        "llmtop build: metal (macOS: Apple GPU through Metal)"
    );
    let mut m = Machine::linux();
    m.tool("nvidia-smi", SMI_4090)
        .tool("nvcc", "echo nvcc")
        .set("LLMTOP_BUILD", "cpu");
    assert_eq!(
        m.decision(),
        "llmtop build: cpu (LLMTOP_BUILD=cpu set; detection skipped)"
    );
    m.set("LLMTOP_BUILD", "vulkan");
    assert_eq!(
        m.decision(),
        "llmtop build: vulkan (LLMTOP_BUILD=vulkan set; detection skipped)"
    );
    m.set("LLMTOP_BUILD", "rocm");
    let (code, text) = m.run();
    assert_eq!(code, 2, "{text}");
    assert_eq!(
        text.trim_end(),
        "llmtop build: LLMTOP_BUILD=rocm is not a build; use cpu, cuda, vulkan or metal, or unset it to detect"
    );
}

/// The README's first command still runs this script, and its dry run is documented.
#[test]
fn the_readme_names_the_script_and_the_override() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README");
    let first = readme
        .lines()
        .find(|l| l.starts_with("bash scripts/"))
        .expect("a first command");
    assert!(first.starts_with("bash scripts/run.sh"), "{first}");
    assert!(
        readme.contains("LLMTOP_BUILD="),
        "README documents the override"
    );
    assert!(
        readme.contains("LLMTOP_DETECT_ONLY=1"),
        "README documents the dry run"
    );
}
