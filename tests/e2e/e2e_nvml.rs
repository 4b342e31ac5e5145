//! The dashboard on two NVIDIA boards: the real binary and the real default model in a real
//! terminal (tmux), NVML through the real nvml-wrapper against the stand-in library
//! (tests/nvml/) at a steady 300 W (instant field) and 100 W (a Volta: power_usage). Every
//! surface shows each board, its method and its share: the gauges, the reply line, F1, the
//! run card and the exporter.
use crate::nvml_standin::{Arch, Board, Standin};
use crate::tmux::Tmux;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn model_path() -> PathBuf {
    if let Some(p) = std::env::var_os("LLMTOP_E2E_MODEL") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").expect("HOME");
    Path::new(&home).join(".local/share/llmtop/models/SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// `GET /metrics` over loopback: the value of the first series of `name` holding `needle`.
fn scrape(port: u16, name: &str, needle: &str) -> Option<f64> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.lines()
        .filter(|l| l.starts_with(&format!("{name} ")) || l.starts_with(&format!("{name}{{")))
        .filter(|l| l.contains(needle))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

/// The watts on the gauge line that starts with `label` (" GPU0 300.0 W nvml").
fn gauge(screen: &str, label: &str) -> Option<f64> {
    screen.lines().find_map(|l| {
        let i = l.find(&format!(" {label} "))?;
        l[i + label.len() + 2..]
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

#[test]
fn dashboard_shows_each_nvidia_board_on_every_surface() {
    let model = model_path();
    assert!(
        model.is_file(),
        "model {} not found: run scripts/fetch-model.sh",
        model.display()
    );
    let s = Standin::new(vec![
        Board::steady("NVIDIA H100 80GB HBM3", 300.0),
        Board {
            name: "Tesla V100-SXM2-32GB".into(),
            // On the same 100 ms grid as GPU0: both counters lag alike, so the shares of any
            // span are exactly 3:1.
            ..Board::steady("", 100.0).arch(Arch::Volta)
        },
    ]);
    let data = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sysfs/desktop-intel");
    let script = format!(
        "LLMTOP_DATA_DIR='{d}' HOME='{d}' XDG_CONFIG_HOME='{d}' LLMTOP_NVML_LIBRARY='{lib}' '{bin}' --sysfs-root '{root}' --model '{model}' --max-tokens 60 --temperature 0 --metrics-addr 127.0.0.1:{port}; echo LLMTOP-EXIT:$?; sleep 60",
        d = data.path().display(),
        lib = s.lib().display(),
        bin = env!("CARGO_BIN_EXE_llmtop"),
        root = root.display(),
        model = model.display(),
    );
    let tmux = Tmux::start("nvml", 120, 48, &script);
    // Each board on its own gauge row, at its true power (the static RAPL tree adds 0 W).
    let screen = tmux.wait_for("both boards on the gauges", Duration::from_secs(60), |s| {
        gauge(s, "GPU0").is_some() && gauge(s, "GPU1").is_some()
    });
    let (g0, g1) = (gauge(&screen, "GPU0"), gauge(&screen, "GPU1"));
    assert_eq!((g0, g1), (Some(300.0), Some(100.0)), "{screen}");
    tmux.wait_for("model loaded", Duration::from_secs(120), |s| {
        s.contains("● idle")
    });
    // The exporter: each board's gauge, the system's, summed once.
    let w0 = scrape(port, "llmtop_power_watts", "id=\"nvml:0:energy\"").expect("GPU0 gauge");
    let w1 = scrape(port, "llmtop_power_watts", "id=\"nvml:1:energy\"").expect("GPU1 gauge");
    let sys = scrape(port, "llmtop_system_power_watts", "").expect("system");
    assert_eq!((w0, w1), (300.0, 100.0));
    assert!((sys - 400.0).abs() < 1e-6, "system {sys} W");

    tmux.type_text("Tell me a long story about a lighthouse keeper and his cat.");
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("the reply's energy", Duration::from_secs(300), |s| {
        s.contains(" J/tok")
    });
    assert!(screen.contains("● idle"), "{screen}");
    // F1: every board, how it is read, its part of the reply.
    tmux.keys(&["F1"]);
    let screen = tmux.wait_for("the boards in F1", Duration::from_secs(20), |s| {
        s.contains("GPU boards")
    });
    // The overlay's text with its wrapped lines joined (it spans the screen's width).
    let flat: String = screen
        .replace('│', " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        flat.contains("GPU0 NVIDIA H100 80GB HBM3: energy counter (nvmlDeviceGetTotalEnergyConsumption), watts NVML_FI_DEV_POWER_INSTANT (instant), last reply"),
        "{screen}"
    );
    assert!(
        flat.contains("GPU1 Tesla V100-SXM2-32GB: energy counter (nvmlDeviceGetTotalEnergyConsumption), watts nvmlDeviceGetPowerUsage (1 s average), last reply"),
        "{screen}"
    );
    // 300 W and 100 W over the same reply: three quarters and a quarter.
    let shares: Vec<f64> = flat
        .split(" %)")
        .filter_map(|x| x.rsplit('(').next()?.parse().ok())
        .collect();
    assert_eq!(shares.len(), 2, "{flat}");
    assert_eq!(shares, [75.0, 25.0], "{flat}");
    tmux.keys(&["Escape"]);

    // The run card: each board with its method and calls, summed once into the total.
    tmux.keys(&["C-s"]);
    tmux.wait_for("the snapshot path", Duration::from_secs(20), |s| {
        s.contains("snapshot: /")
    });
    let dir = data.path().join("snapshots");
    let json = std::fs::read_dir(&dir)
        .expect("snapshots")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .expect("card");
    let card: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("read")).expect("JSON");
    let energy = &card["last_reply"]["energy"];
    let sources = energy["sources"].as_array().expect("sources");
    let board = |id: &str| {
        sources
            .iter()
            .find(|x| x["id"] == id)
            .unwrap_or_else(|| panic!("no {id} in {sources:#?}"))
    };
    let (b0, b1) = (board("nvml:0:energy"), board("nvml:1:energy"));
    assert_eq!(b0["method"], "counter");
    assert_eq!(b0["via"], "nvmlDeviceGetTotalEnergyConsumption");
    assert_eq!(b0["power_via"], "NVML_FI_DEV_POWER_INSTANT (instant)");
    assert_eq!(b1["power_via"], "nvmlDeviceGetPowerUsage (1 s average)");
    let (j0, j1) = (
        b0["joules"].as_f64().expect("j0"),
        b1["joules"].as_f64().expect("j1"),
    );
    let total = energy["total_j"].as_f64().expect("total");
    // The CPU's static counter adds nothing: the total is the boards', once.
    assert!(
        (total - (j0 + j1)).abs() <= 1e-6 * total,
        "{total} vs {j0} + {j1}"
    );
    assert!((j0 - 3.0 * j1).abs() <= 1e-6 * j0, "{j0} J vs {j1} J");

    tmux.keys(&["C-q"]);
    tmux.wait_for("llmtop to exit", Duration::from_secs(30), |s| {
        s.contains("LLMTOP-EXIT:0")
    });
}
