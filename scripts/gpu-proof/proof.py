#!/usr/bin/env python3
"""The measurements of scripts/gpu-proof.sh, after it has built llama.cpp and the model: one
JSON (schema llmtop.gpu-proof/1, documented in scripts/gpu-proof/README.md).

Each section runs on its own; one that fails or is skipped records why and the others go on.
Needs python3; on a GPU also PyTorch and nvidia-ml-py (pynvml), as the lent machines have.
"""
import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

SCHEMA = "llmtop.gpu-proof/1"
# The story prompt llmtop's bench uses is short; this one gives a stable prefill figure.
PROMPT = "Summarise the following notes in one sentence. " + (
    "The lighthouse keeper climbed the stairs at dusk, trimmed the wick and watched the ships pass. " * 28
)
NVML_FI_DEV_POWER_INSTANT = 186


def log(msg):
    print(f"gpu-proof: {msg}", file=sys.stderr, flush=True)


def run(cmd, env, timeout, **kw):
    log("$ " + " ".join(cmd))
    return subprocess.run(cmd, env=env, timeout=timeout, capture_output=True, text=True, **kw)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- generation speed


def generation(a, env):
    ngl = ["-ngl", "0" if a.cpu_dry_run else "99"]
    threads = str(os.cpu_count() or 1)
    lj = os.path.join(a.work, "llmtop-bench.json")
    cmd = [a.llmtop, "bench", "--model", a.model, "--max-tokens", str(a.gen), "--reps", str(a.reps),
           "--prompt", PROMPT, "--json", lj, "--no-idle", "--threads", threads,
           # One lent run: report a contended figure (the JSON says so) rather than none.
           "--allow-contention"]
    if not a.cpu_dry_run:
        cmd += ["--gpu-layers", "99"]
    r = run(cmd, env, 240)
    if r.returncode != 0:
        raise RuntimeError(f"llmtop bench exited {r.returncode}: {r.stderr.strip()[-600:]}")
    d = json.load(open(lj))
    runs = d["runs"]
    p = runs[0]["prompt_tokens"]
    out = {
        "prompt_tokens": p,
        "max_tokens": a.gen,
        "reps": a.reps,
        "gpu_layers": 0 if a.cpu_dry_run else 99,
        "threads": int(threads),
        "llmtop_contended": bool(d.get("contended")),
        "llmtop_gen_tok_s": statistics.median(x["gen_tok_s"] for x in runs),
        "llmtop_gen_wall_tok_s": statistics.median(x["gen_wall_tok_s"] for x in runs),
        "llmtop_prefill_tok_s": statistics.median(x["prefill_tok_s"] for x in runs),
        "llmtop_generated_tokens_min": min(x["generated_tokens"] for x in runs),
        "llmtop_backend": d.get("build", {}),
    }
    tg = run([a.llama_bench, "-m", a.model, "-p", "0", "-n", str(a.gen), "-d", str(p), "-r", str(a.reps),
              "-t", threads, "-o", "json"] + ngl, env, 240)
    if tg.returncode != 0:
        raise RuntimeError(f"llama-bench exited {tg.returncode}: {tg.stderr.strip()[-600:]}")
    ref = json.loads(tg.stdout)[0]
    out["llama_bench_tg_tok_s"] = ref["avg_ts"]
    out["llama_bench_build"] = ref.get("build_commit")
    out["llama_bench_backends"] = ref.get("backends")
    out["ratio"] = out["llmtop_gen_tok_s"] / ref["avg_ts"]
    out["ratio_wall"] = out["llmtop_gen_wall_tok_s"] / ref["avg_ts"]
    return out


# ---------------------------------------------------------------- llmtop serve and NVML


class Serve:
    """`llmtop serve` on a free port; `channel(prefix)` reads its exported figures."""

    def __init__(self, a, env):
        self.port = free_port()
        self.p = subprocess.Popen([a.llmtop, "serve", "--listen", f"127.0.0.1:{self.port}"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=open(os.path.join(a.work, "serve.log"), "w"))
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                if self.energy("nvml:0:") is not None:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("llmtop serve exported no nvml:0 energy within 20 s (see serve.log)")

    def metrics(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as r:
            return r.read().decode()

    def _family(self, family, prefix):
        # Prefer the board's counter channel (id nvml:0:energy) over any other of the board.
        best = None
        for line in self.metrics().splitlines():
            m = re.match(family + r'\{([^}]*)\} ([0-9.eE+-]+)$', line)
            if not m:
                continue
            ident = re.search(r'id="([^"]*)"', m.group(1))
            if ident and ident.group(1).startswith(prefix):
                v = float(m.group(2))
                if ident.group(1).endswith(":energy") or best is None:
                    best = v
        return best

    def energy(self, prefix):
        return self._family("llmtop_energy_joules_total", prefix)

    def power(self, prefix):
        return self._family("llmtop_power_watts", prefix)

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        try:
            self.p.wait(5)
        except subprocess.TimeoutExpired:
            self.p.kill()


LOAD = r"""
import os, sys, time, threading, http.server, torch
port, duty, go = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), http.server.SimpleHTTPRequestHandler)
threading.Thread(target=srv.serve_forever, daemon=True).start()
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
torch.cuda.synchronize()
print("ready", flush=True)
while not os.path.exists(go):
    time.sleep(0.001)
end = time.time() + float(sys.argv[4])
while time.time() < end:
    t0 = time.time()
    for _ in range(8):
        a @ b
    torch.cuda.synchronize()
    busy = time.time() - t0
    if duty < 1.0:
        time.sleep(busy * (1.0 - duty) / duty)
"""


def start_load(a, env, port, duty, seconds, go):
    p = subprocess.Popen([sys.executable, "-c", LOAD, str(port), str(duty), go, str(seconds)], env=env,
                         stdout=subprocess.PIPE, stderr=open(os.path.join(a.work, f"load-{port}.log"), "w"), text=True)
    if p.stdout.readline().strip() != "ready":
        raise RuntimeError(f"the PyTorch load on port {port} did not start (load-{port}.log)")
    return p


def nvml():
    import pynvml
    pynvml.nvmlInit()
    return pynvml, pynvml.nvmlDeviceGetHandleByIndex(0)


def energy(a, env):
    """NVML's energy counter against llmtop's ledger over one window: idle, an 8 s load, idle;
    both read while the board idles at either end, so a read a few ms apart costs little."""
    nv, h = nvml()
    srv = Serve(a, env)
    go = os.path.join(a.work, "go-energy")
    try:
        load = start_load(a, env, free_port(), 1.0, 8.0, go)
        time.sleep(2.0)
        l0, n0, t0 = srv.energy("nvml:0:"), nv.nvmlDeviceGetTotalEnergyConsumption(h) / 1e3, time.time()
        open(go, "w").close()
        load.wait(30)
        time.sleep(3.0)
        l1, n1, t1 = srv.energy("nvml:0:"), nv.nvmlDeviceGetTotalEnergyConsumption(h) / 1e3, time.time()
    finally:
        srv.stop()
    nvml_j, llmtop_j = n1 - n0, l1 - l0
    return {
        "window_s": t1 - t0,
        "nvml_counter_j": nvml_j,
        "llmtop_ledger_j": llmtop_j,
        "ratio": llmtop_j / nvml_j,
        "error_pct": (llmtop_j - nvml_j) / nvml_j * 100.0,
        "channel": "nvml:0",
    }


def process_share(a, env):
    """Two PyTorch processes (full and one-third duty) at once: llmtop share's GPU share of each
    against NVML's own per-process SM samples over the same seconds."""
    nv, h = nvml()
    go = os.path.join(a.work, "go-share")
    loads = []
    for duty in (1.0, 0.33):
        port = free_port()
        loads.append((port, duty, start_load(a, env, port, duty, 12.0, go)))
    open(go, "w").close()
    time.sleep(1.0)
    shares = {port: subprocess.Popen([a.llmtop, "share", f"http://127.0.0.1:{port}", "--seconds", "8", "--json"],
                                     env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for port, _, _ in loads}
    sm = {}
    util = []
    last = 0
    end = time.time() + 8.0
    while time.time() < end:
        try:
            for s in nv.nvmlDeviceGetProcessUtilization(h, last):
                sm.setdefault(s.pid, []).append(s.smUtil)
                last = max(last, s.timeStamp)
        except nv.NVMLError:
            pass
        util.append(nv.nvmlDeviceGetUtilizationRates(h).gpu)
        time.sleep(0.1)
    procs = {p.pid: p.usedGpuMemory for p in nv.nvmlDeviceGetComputeRunningProcesses(h)}
    out = []
    total_sm = sum(statistics.mean(v) for v in sm.values()) or None
    for port, duty, p in loads:
        o, e = shares[port].communicate(timeout=30)
        row = {"duty": duty, "pid": p.pid}
        try:
            s = json.loads(o.strip().splitlines()[-1])
            row.update(llmtop_gpu_share=s.get("gpu_share"), llmtop_joules=s.get("joules"),
                       llmtop_machine_joules=s.get("machine_joules"), llmtop_vram_bytes=s.get("vram_bytes"),
                       llmtop_pid=s.get("pid"))
        except (ValueError, IndexError):
            row["llmtop_error"] = (e or o).strip()[-400:]
        mine = sm.get(p.pid)
        row["nvml_sm_util_mean"] = statistics.mean(mine) if mine else None
        row["nvml_sm_share"] = statistics.mean(mine) / total_sm if mine and total_sm else None
        row["nvml_vram_bytes"] = procs.get(p.pid)
        out.append(row)
        p.wait(30)
    return {"processes": out, "nvml_device_util_mean": statistics.mean(util) if util else None,
            "nvml_sample_pids": sorted(sm)}


def gauge_lag(a, env):
    """A load step at a known instant: when llmtop's gauge, NVML's instant field and NVML's
    power usage (a 1 s average on Hopper) each cross halfway from idle to load."""
    nv, h = nvml()
    srv = Serve(a, env)
    go = os.path.join(a.work, "go-lag")
    series = {"llmtop": [], "nvml_instant": [], "nvml_usage": []}
    stop = threading.Event()

    def poll():
        while not stop.is_set():
            t = time.time()
            try:
                w = srv.power("nvml:0:")
                if w is not None:
                    series["llmtop"].append((t, w))
            except OSError:
                pass
            try:
                fv = nv.nvmlDeviceGetFieldValues(h, [NVML_FI_DEV_POWER_INSTANT])[0]
                if fv.nvmlReturn == 0:
                    series["nvml_instant"].append((t, fv.value.uiVal / 1e3))
            except (nv.NVMLError, AttributeError):
                pass
            series["nvml_usage"].append((t, nv.nvmlDeviceGetPowerUsage(h) / 1e3))
            time.sleep(0.02)

    try:
        load = start_load(a, env, free_port(), 1.0, 5.0, go)
        th = threading.Thread(target=poll, daemon=True)
        th.start()
        time.sleep(3.0)
        t_step = time.time()
        open(go, "w").close()
        load.wait(30)
        stop.set()
        th.join()
    finally:
        srv.stop()
    out = {"t_step_unix": t_step, "samples": {k: len(v) for k, v in series.items()}}
    for k, v in series.items():
        before = [w for t, w in v if t < t_step]
        during = [w for t, w in v if t_step + 2.5 <= t < t_step + 4.5]
        if not before or not during:
            out[k] = None
            continue
        idle, busy = statistics.median(before), statistics.median(during)
        half = (idle + busy) / 2.0
        cross = next((t for t, w in v if t >= t_step and w >= half), None)
        out[k] = {"idle_w": idle, "load_w": busy, "lag_s": None if cross is None else cross - t_step}
    if out.get("llmtop") and out.get("nvml_instant") and out["llmtop"]["lag_s"] is not None \
            and out["nvml_instant"]["lag_s"] is not None:
        out["llmtop_behind_instant_s"] = out["llmtop"]["lag_s"] - out["nvml_instant"]["lag_s"]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--llmtop", required=True)
    ap.add_argument("--llama-bench", required=True)
    ap.add_argument("--libs", required=True, help="folder of the llama.cpp libraries built here")
    ap.add_argument("--model", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--gen", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--cpu-dry-run", action="store_true")
    ap.add_argument("--context", default="{}", help="JSON merged into the result (build, model)")
    a = ap.parse_args()
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = a.libs + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    # llmtop's data (tally, logs) stays in the work folder.
    env["XDG_DATA_HOME"] = os.path.join(a.work, "data")
    env["XDG_CONFIG_HOME"] = os.path.join(a.work, "config")
    result = {"schema": SCHEMA, "started_unix": int(time.time()),
              "mode": "cpu-dry-run" if a.cpu_dry_run else "gpu"}
    result.update(json.loads(a.context))
    sections = [("generation", generation)]
    gpu_sections = [("energy", energy), ("process_share", process_share), ("gauge_lag", gauge_lag)]
    for name, f in sections + gpu_sections:
        if a.cpu_dry_run and (name, f) in gpu_sections:
            result[name] = {"skipped": "no GPU (--cpu-dry-run): needs NVML and PyTorch on CUDA"}
            continue
        t = time.time()
        try:
            result[name] = f(a, env)
        except Exception as e:  # each section on its own: record and go on
            result[name] = {"error": f"{type(e).__name__}: {e}"}
        result[name]["seconds"] = round(time.time() - t, 1)
        log(f"{name}: {json.dumps(result[name])[:400]}")
    tmp = a.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f, indent=1)
    os.replace(tmp, a.out)
    log(f"wrote {a.out}")


if __name__ == "__main__":
    main()
