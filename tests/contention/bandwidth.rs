//! The memory-bandwidth probe against a reference benchmark from Debian's packages:
//! likwid-bench's STREAM kernels (`load_avx`: a sequential read; `stream_avx`: STREAM's triad
//! `A = B + s*C`), on every CPU, over the same number of bytes, interleaved with the probe so
//! a busy moment hits both. The best pass of each side counts, as STREAM reports its best:
//! likwid-bench one sweep a run (`-i 1`), four runs a round; the probe its four passes.

use llmtop::sensors::bandwidth::{self, ProbeOptions};
use std::process::Command;

/// MByte/s (10^6 bytes) as likwid-bench prints it, as GB/s.
fn likwid(kernel: &str, bytes: u64, threads: usize) -> f64 {
    let out = Command::new("likwid-bench")
        .args([
            "-t",
            kernel,
            "-w",
            &format!("N:{}kB:{threads}", bytes / 1000),
            "-i",
            "1",
        ])
        .output()
        .unwrap_or_else(|e| {
            panic!("likwid-bench: {e}; install the likwid package (scripts/bootstrap.sh does)")
        });
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "likwid-bench {kernel} failed: {text}");
    let mb_s: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("MByte/s:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no MByte/s in likwid-bench's output: {text}"));
    mb_s / 1000.0
}

#[test]
fn probe_agrees_with_likwid_bench_within_ten_percent() {
    let _one = crate::serial();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let opts = ProbeOptions {
        threads,
        ..ProbeOptions::default()
    };
    let llc = bandwidth::last_level_cache_bytes(std::path::Path::new("/sys"));
    let array = bandwidth::array_bytes(llc, None);
    // The probe reads its three arrays; likwid-bench's load kernel the same bytes in one.
    let total = 3 * array;
    let (mut ours_read, mut ours_triad, mut ref_read, mut ref_triad) = (0f64, 0f64, 0f64, 0f64);
    for _ in 0..3 {
        let b = bandwidth::probe(&opts).expect("probe");
        // Other programs on the CPUs (a build) make both figures noise: nothing to compare.
        if let Some(o) = b.others_runnable.filter(|o| *o >= 0.5) {
            println!("skipped: other programs kept {o:.1} threads runnable during the probe");
            return;
        }
        ours_read = ours_read.max(b.read_gb_s);
        ours_triad = ours_triad.max(b.triad_gb_s.expect("triad"));
        for _ in 0..4 {
            ref_read = ref_read.max(likwid("load_avx", total, threads));
            // stream_avx moves three vectors of the given size in all: the probe's arrays.
            ref_triad = ref_triad.max(likwid("stream_avx", total, threads));
        }
    }
    eprintln!(
        "probe read {ours_read:.2} GB/s vs likwid-bench load_avx {ref_read:.2} ({:+.1} %); \
         triad {ours_triad:.2} vs stream_avx {ref_triad:.2} ({:+.1} %)",
        (ours_read / ref_read - 1.0) * 100.0,
        (ours_triad / ref_triad - 1.0) * 100.0
    );
    assert!(
        (ours_read / ref_read - 1.0).abs() <= 0.10,
        "read {ours_read:.2} GB/s vs likwid-bench {ref_read:.2} GB/s"
    );
    assert!(
        (ours_triad / ref_triad - 1.0).abs() <= 0.10,
        "triad {ours_triad:.2} GB/s vs likwid-bench {ref_triad:.2} GB/s"
    );
}
