//! What scripts/gpu-build.sh's `llmtop_cuda_env` adds to a CUDA build of llama-cpp-sys-2
//! 0.1.160 (the architecture, static or shared CUDA libraries, the driver stub), run against
//! stand-in toolkits in temp dirs: the environment cargo would get, and the lines it says.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

/// A toolkit folder: bin/nvcc (a stand-in), lib64 with libcudart.so, the driver stub, and
/// `libcublas_static.a` when `static_cublas`.
fn toolkit(root: &Path, static_cublas: bool) {
    let bin = root.join("bin");
    let stubs = root.join("lib64/stubs");
    std::fs::create_dir_all(&bin).expect("bin");
    std::fs::create_dir_all(&stubs).expect("stubs");
    std::fs::write(bin.join("nvcc"), "#!/bin/sh\necho stand-in nvcc\n").expect("nvcc");
    std::fs::set_permissions(bin.join("nvcc"), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    std::fs::write(root.join("lib64/libcudart.so"), "").expect("cudart");
    std::fs::write(stubs.join("libcuda.so"), "").expect("stub");
    if static_cublas {
        std::fs::write(root.join("lib64/libcublas_static.a"), "").expect("cublas");
    }
}

/// Source the script (LLMTOP_BUILD=cuda) and call the function; print what cargo would see.
/// (exit code, stdout + stderr)
fn cuda_env(tk: &Path, archs: Option<&str>) -> (i32, String) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cmd = Command::new("/bin/bash");
    cmd.current_dir(repo)
        .arg("-c")
        .arg(
            ". scripts/gpu-build.sh >/dev/null && llmtop_cuda_env 2>&1 || exit $?; \
             echo \"RUSTFLAGS=$RUSTFLAGS\"; echo \"DEFINES=$LLMTOP_CMAKE_DEFINES\"; \
             echo \"SHARED=${LLAMA_BUILD_SHARED_LIBS:-}\"; echo \"CMAKE=$CMAKE\"; \
             echo \"CUDACXX=$CUDACXX\"",
        )
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", tk)
        .env("LLMTOP_BUILD", "cuda")
        .env("LLMTOP_NVIDIA_PROC", tk.join("no-driver"))
        .env("CUDA_HOME", tk);
    if let Some(a) = archs {
        cmd.env("LLMTOP_CUDA_ARCHS", a);
    }
    let out = cmd.output().expect("bash");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

fn line<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} in {text}"))
}

#[test]
fn no_gpu_and_no_architecture_is_one_line_naming_the_fix() {
    let dir = tempfile::tempdir().expect("tempdir");
    toolkit(dir.path(), false);
    let (code, text) = cuda_env(dir.path(), None);
    assert_eq!(code, 2, "{text}");
    assert_eq!(
        text.trim(),
        "llmtop build: no NVIDIA GPU here to compile for (ggml asks for CUDA_ARCHITECTURES=native); set LLMTOP_CUDA_ARCHS, e.g. 90 (H100/H200), 89 (RTX 40xx, L4), 86 (RTX 30xx, A10), 80 (A100)"
    );
}

#[test]
fn a_wheel_toolkit_builds_shared_libraries_for_the_named_architecture() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tk = dir.path().canonicalize().expect("canonical");
    toolkit(&tk, false);
    let (code, text) = cuda_env(&tk, Some("90"));
    assert_eq!(code, 0, "{text}");
    let lib = tk.join("lib64").display().to_string();
    assert_eq!(
        line(&text, "DEFINES=").trim(),
        format!("-DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_INSTALL_RPATH={lib}")
    );
    assert_eq!(line(&text, "SHARED="), "1");
    assert_eq!(
        line(&text, "RUSTFLAGS="),
        format!(
            "-C target-cpu=native -C link-arg=-Wl,-rpath,$ORIGIN -C link-arg=-Wl,-rpath-link,{lib} -C link-arg=-Wl,-rpath-link,{lib}/stubs"
        )
    );
    assert!(line(&text, "CMAKE=").ends_with("/scripts/cmake-defines.sh"));
    assert_eq!(
        line(&text, "CUDACXX="),
        tk.join("bin/nvcc").display().to_string()
    );
    assert!(
        text.contains("llmtop build: CUDA architectures 90 (LLMTOP_CUDA_ARCHS)"),
        "{text}"
    );
    assert!(text.contains("no static cuBLAS"), "{text}");
}

#[test]
fn a_full_toolkit_links_statically_as_the_crate_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tk = dir.path().canonicalize().expect("canonical");
    toolkit(&tk, true);
    let (code, text) = cuda_env(&tk, Some("89"));
    assert_eq!(code, 0, "{text}");
    assert_eq!(line(&text, "SHARED="), "");
    assert_eq!(
        line(&text, "DEFINES=").trim(),
        "-DCMAKE_CUDA_ARCHITECTURES=89"
    );
    assert!(
        text.contains(&format!(
            "llmtop build: CUDA toolkit {}, linked statically (cudart, cuBLAS)",
            tk.display()
        )),
        "{text}"
    );
}

/// The wrapper the crate's build script runs as `$CMAKE`: the defines on a configure run, none
/// on a build run (which takes no -D).
#[test]
fn cmake_defines_wrapper_adds_the_defines_to_configure_runs_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).expect("bin");
    std::fs::write(bin.join("cmake"), "#!/bin/sh\necho \"cmake $*\"\n").expect("cmake");
    std::fs::set_permissions(bin.join("cmake"), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    let wrapper = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/cmake-defines.sh");
    let run = |args: &[&str]| {
        let out = Command::new(&wrapper)
            .args(args)
            .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
            .env(
                "LLMTOP_CMAKE_DEFINES",
                " -DCMAKE_CUDA_ARCHITECTURES=90 -DX=y",
            )
            .output()
            .expect("wrapper");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(
        run(&["/src", "-G", "Unix Makefiles"]),
        "cmake /src -G Unix Makefiles -DCMAKE_CUDA_ARCHITECTURES=90 -DX=y"
    );
    assert_eq!(
        run(&["--build", ".", "--target", "install"]),
        "cmake --build . --target install"
    );
}
