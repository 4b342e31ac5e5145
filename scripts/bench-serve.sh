#!/usr/bin/env bash
# The exporter's cost (BENCHMARKS.md, Prometheus): scrape time of `llmtop serve` with 50
# energy sources, and serve's CPU over 60 s when nobody scrapes.
#   scripts/bench-serve.sh [LLMTOP_BINARY] [SCRAPES] [IDLE_SECONDS]
# The tree: 46 hwmon devices (power1_average, 4 temperatures, 2 fans each) and 4 RAPL zones
# (package-0, core, uncore, dram), made by scripts/gen-sysfs-tree.sh; TREE=DIR uses another
# (e.g. TREE=tests/fixtures/sysfs/amd-desktop, where the sampler has little to read).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/llmtop}
scrapes=${2:-2000}
idle=${3:-60}
work=$(mktemp -d)
pid=""
cleanup() { if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi; rm -rf "$work"; }
trap cleanup EXIT
if [ -n "${TREE:-}" ]; then
    sys=$TREE
    want=1
else
    sys=$work/sys
    want=50
    scripts/gen-sysfs-tree.sh "$sys" 46 4 2 >/dev/null
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf '[pricing]\nregion = "DE"\n' > "$work/config.toml"
LLMTOP_DATA_DIR="$work/data" "$bin" --config "$work/config.toml" serve --sysfs-root "$sys" \
    --metrics-addr "127.0.0.1:$port" 2>/dev/null &
pid=$!
python3 - "$port" "$scrapes" "$want" <<'PY'
import http.client, sys, time
port, n, want = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
def scrape():
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", "/metrics")
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, body
deadline = time.time() + 20
while True:
    try:
        st, body = scrape()
        if st == 200 and body.count(b"\nllmtop_energy_joules_total{") + body.startswith(b"llmtop_energy_joules_total{") >= want:
            break
    except OSError:
        pass
    if time.time() > deadline:
        sys.exit(f"serve did not report {want} energy sources within 20 s")
    time.sleep(0.2)
times = []
for _ in range(n):
    t = time.perf_counter()
    st, body = scrape()
    times.append(time.perf_counter() - t)
    assert st == 200
times.sort()
q = lambda p: times[min(len(times) - 1, int(p * len(times)))] * 1000
series = sum(1 for l in body.split(b"\n") if l and not l.startswith(b"#"))
print(f"scrape: {n} scrapes, {len(body)} bytes, {series} series, "
      f"{body.count(b'llmtop_energy_joules_total{')} energy sources; "
      f"p50 {q(0.5):.2f} ms, p90 {q(0.9):.2f} ms, p99 {q(0.99):.2f} ms, max {times[-1]*1000:.2f} ms")
PY
# Idle: no scrapes; utime + stime of the whole process (every thread) over the window.
tck=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
sleep 2
a=$(ticks); sleep "$idle"; b=$(ticks)
awk -v a="$a" -v b="$b" -v t="$tck" -v s="$idle" \
    'BEGIN { printf "idle: %.2f s CPU over %d s = %.2f %% of one core\n", (b - a) / t, s, (b - a) / t / s * 100 }'
