#!/usr/bin/env python3
"""Time from SIGTERM to the exit of `llmtop bench --sweep power-cap=40,30`, the package's
limits as found written back, on a synthetic powercap tree (one package zone, long_term 65 W,
short_term 90 W, constraint files writable) in a temp dir: 5 signals while idle at the first
cap (its cool-down), 5 while a run is measured. Each run checks the limits came back, the
marker went and the process died of SIGTERM.

usage: scripts/bench-power-cap-restore.py LLMTOP_BINARY [MODEL.gguf]
"""
import os, shutil, signal, statistics, subprocess, sys, tempfile, time

binary = sys.argv[1]
model = sys.argv[2] if len(sys.argv) > 2 else os.path.expanduser(
    "~/.local/share/llmtop/models/SmolLM2-135M-Instruct.Q4_1.gguf")
root = tempfile.mkdtemp(prefix="llmtop-capbench-")
zone = os.path.join(root, "sys/class/powercap/intel-rapl:0")
os.makedirs(zone)
os.makedirs(os.path.join(root, "data"))
for name, value in [("name", "package-0"), ("enabled", "1"), ("energy_uj", "1000000"),
                    ("max_energy_range_uj", "262143328850"),
                    ("constraint_0_name", "long_term"),
                    ("constraint_0_power_limit_uw", "65000000"),
                    ("constraint_0_max_power_uw", "65000000"),
                    ("constraint_0_time_window_us", "27983872"),
                    ("constraint_1_name", "short_term"),
                    ("constraint_1_power_limit_uw", "90000000"),
                    ("constraint_1_max_power_uw", "0"),
                    ("constraint_1_time_window_us", "2440")]:
    with open(os.path.join(zone, name), "w") as f:
        f.write(value + "\n")
with open(os.path.join(root, "config.toml"), "w") as f:
    f.write("[sensors]\nrate_hz = 10.0\n")


def uw(n):
    # llmtop rewrites the plain file in place: a read between truncate and write is empty.
    while True:
        with open(os.path.join(zone, f"constraint_{n}_power_limit_uw")) as f:
            t = f.read().strip()
        if t:
            return int(t)


def once(cooldown, delay):
    cmd = [binary, "--config", os.path.join(root, "config.toml"), "bench",
           "--sysfs-root", os.path.join(root, "sys"), "--model", model,
           "--sweep", "power-cap=40,30", "--cap-device", "cpu",
           "--cap-cooldown", str(cooldown), "--cap-settle", "0", "--cap-window", "30",
           "--threads", "1", "--max-tokens", "64", "--no-idle", "--no-warmup",
           "--allow-contention"]
    p = subprocess.Popen(cmd, env=dict(os.environ, LLMTOP_DATA_DIR=os.path.join(root, "data")),
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    while uw(0) != 40_000_000:
        time.sleep(0.005)
    time.sleep(delay)
    t0 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    err = p.stderr.read().decode()
    p.wait()
    ms = (time.monotonic() - t0) * 1000
    assert p.returncode == -signal.SIGTERM, err[-500:]
    assert (uw(0), uw(1)) == (65_000_000, 90_000_000), err[-500:]
    assert not os.path.exists(os.path.join(root, "data/power-caps.json"))
    assert "power limits restored on SIGTERM" in err, err[-500:]
    return ms


for label, cooldown, delay in [("idle at the cap (cool-down)", 60, 0.5),
                               ("while a run is measured", 0, 3.0)]:
    ms = [once(cooldown, delay) for _ in range(5)]
    print(f"{label}: SIGTERM to exit with the limits restored: median "
          f"{statistics.median(ms):.1f} ms, max {max(ms):.1f} ms "
          f"({', '.join(f'{m:.1f}' for m in ms)})")

shutil.rmtree(root)
