#!/usr/bin/env bash
# What the least a live display could do costs llama.cpp when it has a thread on every CPU: a
# process that only wakes HZ times a second and spins WORK_US microseconds each time (no
# terminal, no llmtop), beside headless `llmtop bench`, against the same bench alone. Pairs a
# few seconds apart (alone, then with the waker), as scripts/bench-dashboard-speed.sh does;
# each figure is with/alone for one pair, and the script prints their median per setting.
#
# Usage: scripts/bench-wake-cost.sh [path/to/llmtop]   (PAIRS=6, GEN=256, THREADS=nproc,
#   SETTINGS="10:0 10:500 14:500": HZ:WORK_US pairs to try)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "${1:-${CARGO_TARGET_DIR:-target}/release/llmtop}")
MODEL=${LLMTOP_MODEL:-$HOME/.local/share/llmtop/models/SmolLM2-135M-Instruct.Q4_1.gguf}
PAIRS=${PAIRS:-6}
GEN=${GEN:-256}
THREADS=${THREADS:-$(nproc)}
SETTINGS=${SETTINGS:-"10:0 10:500 14:500"}
PROMPT="Write a 1000-word story about a lighthouse keeper who finds a message in a bottle."
TMP=$(mktemp -d)
WAKER=
cleanup() { [ -n "$WAKER" ] && kill "$WAKER" 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT

rate() { # one headless story; prints its generation tok/s
  LLMTOP_DATA_DIR="$TMP/d" "$BIN" bench --model "$MODEL" --threads "$THREADS" --max-tokens "$GEN" \
    --temperature 0 --reps 1 --no-idle --prompt "$PROMPT" --json "$TMP/b.json" >/dev/null 2>&1
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["runs"][0]["gen_tok_s"])' "$TMP/b.json"
}

cat >"$TMP/waker.py" <<'PY'
import sys, time
hz, work = float(sys.argv[1]), float(sys.argv[2]) / 1e6
period, nxt = 1.0 / hz, time.monotonic()
while True:
    nxt += period
    time.sleep(max(0.0, nxt - time.monotonic()))
    end = time.perf_counter() + work
    while time.perf_counter() < end:
        pass
PY

rate >/dev/null # warm the page cache and the CPU's clocks
printf '%-14s %s\n' "HZ:WORK_US" "with/alone per pair (median last)"
for s in $SETTINGS; do
  hz=${s%%:*}; us=${s##*:}
  ratios=()
  for _ in $(seq 1 "$PAIRS"); do
    alone=$(rate)
    python3 "$TMP/waker.py" "$hz" "$us" & WAKER=$!
    sleep 0.3
    with=$(rate)
    kill "$WAKER"; wait "$WAKER" 2>/dev/null || true; WAKER=
    ratios+=("$(python3 -c "print(f'{$with/$alone:.3f}')")")
  done
  med=$(printf '%s\n' "${ratios[@]}" | sort -n | python3 -c 'import sys,statistics; print(f"{statistics.median(float(l) for l in sys.stdin):.3f}")')
  printf '%-14s %s  median %s\n' "$s" "${ratios[*]}" "$med"
done
