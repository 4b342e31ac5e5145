#!/usr/bin/env bash
# Dashboard performance, measured through real pseudo-terminals (tmux):
#  1. idle CPU time over $IDLE_S seconds, llmtop (model loaded, idle) vs btop at the same 4 Hz
#     refresh, both running at the same time at 120x40;
#  2. bytes written to the terminal per second, idle and while streaming a reply (tmux pipe-pane);
#  3. launch to first frame (a pty; the model loads behind the gauge), median of 5.
# Usage: scripts/bench-dashboard.sh [path/to/llmtop]   (IDLE_S=60 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-${CARGO_TARGET_DIR:-target}/debug/llmtop}
MODEL=${LLMTOP_MODEL:-$HOME/.local/share/llmtop/models/SmolLM2-135M-Instruct.Q4_1.gguf}
IDLE_S=${IDLE_S:-60}
SOCK="llmtop-bench-$$"
TMP=$(mktemp -d)
trap 'tmux -L "$SOCK" kill-server 2>/dev/null || true; rm -rf "$TMP"' EXIT
HZ=$(getconf CLK_TCK)

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
pane_pid() { tmux -L "$SOCK" display -p -t "$1" '#{pane_pid}'; }
wait_for() { # target text timeout_s
  for _ in $(seq 1 $(( $3 * 5 ))); do
    tmux -L "$SOCK" capture-pane -p -t "$1" | grep -qF -- "$2" && return 0; sleep 0.2
  done
  echo "timed out waiting for $2" >&2; return 1
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "llmtop: $BIN ($(stat -c %s "$BIN") bytes, $(file -b "$BIN" | cut -d, -f1-2))"

# btop at 250 ms (4 Hz), its own config dir.
mkdir -p "$TMP/btopcfg/btop"
printf 'update_ms = 250\nshown_boxes = "cpu mem net proc"\n' > "$TMP/btopcfg/btop/btop.conf"

tmux -L "$SOCK" new-session -d -s llm -x 120 -y 40 \
  "exec env LLMTOP_DATA_DIR='$TMP/data' '$BIN' --model '$MODEL'"
tmux -L "$SOCK" new-session -d -s btop -x 120 -y 40 \
  "exec env XDG_CONFIG_HOME='$TMP/btopcfg' btop"
wait_for llm "● idle" 120
sleep 3
LPID=$(pane_pid llm); BPID=$(pane_pid btop)
tmux -L "$SOCK" pipe-pane -t llm -o "cat >> '$TMP/idle.bytes'"
L0=$(cpu_ticks "$LPID"); B0=$(cpu_ticks "$BPID")
sleep "$IDLE_S"
L1=$(cpu_ticks "$LPID"); B1=$(cpu_ticks "$BPID")
tmux -L "$SOCK" pipe-pane -t llm
IDLE_BYTES=$(stat -c %s "$TMP/idle.bytes")
awk -v l=$((L1-L0)) -v b=$((B1-B0)) -v hz="$HZ" -v s="$IDLE_S" 'BEGIN {
  printf "idle CPU over %d s: llmtop %.2f s (%.2f%%), btop %.2f s (%.2f%%), ratio %.3f\n",
    s, l/hz, 100*l/hz/s, b/hz, 100*b/hz/s, (b>0 ? l/b : 0) }'
awk -v n="$IDLE_BYTES" -v s="$IDLE_S" 'BEGIN { printf "idle output: %d bytes in %d s = %.0f B/s\n", n, s, n/s }'

# Streaming: bytes while a reply streams (until it finishes or 20 s).
tmux -L "$SOCK" pipe-pane -t llm -o "cat >> '$TMP/stream.bytes'"
tmux -L "$SOCK" send-keys -t llm -l "Write a long story about a lighthouse keeper."
tmux -L "$SOCK" send-keys -t llm Enter
T0=$(date +%s.%N)
wait_for llm "● generating" 60
for _ in $(seq 1 100); do
  tmux -L "$SOCK" capture-pane -p -t llm | grep -qF "● idle" && break; sleep 0.2
done
T1=$(date +%s.%N)
tmux -L "$SOCK" pipe-pane -t llm
STREAM_BYTES=$(stat -c %s "$TMP/stream.bytes")
awk -v n="$STREAM_BYTES" -v a="$T0" -v b="$T1" 'BEGIN { printf "streaming output: %d bytes in %.1f s = %.0f B/s\n", n, b-a, n/(b-a) }'
tmux -L "$SOCK" kill-server

# Launch to first frame.
python3 - "$BIN" "$MODEL" "$TMP/data" <<'PY'
import os, pty, select, statistics, struct, sys, time, fcntl, termios, signal
binp, model, data = sys.argv[1:4]
times = []
for _ in range(5):
    t0 = time.monotonic()
    pid, fd = pty.fork()
    if pid == 0:
        os.environ["LLMTOP_DATA_DIR"] = data
        os.execv(binp, [binp, "--model", model])
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    buf = b""
    while b"Gauges" not in buf and time.monotonic() - t0 < 10:
        r, _, _ = select.select([fd], [], [], 0.5)
        if r:
            try:
                buf += os.read(fd, 65536)
            except OSError:
                break
    times.append((time.monotonic() - t0) * 1000)
    os.kill(pid, signal.SIGKILL); os.waitpid(pid, 0); os.close(fd)
print("launch to first frame: median %.0f ms (runs: %s)" % (statistics.median(times), ", ".join("%.0f" % t for t in times)))
PY
