#!/usr/bin/env bash
# Screenshots of the real dashboard for the README: drives the real binary in tmux and converts
# the captured screen (with colours) to SVG. Produces:
#   screenshots/dashboard-generating.svg  real model mid-reply, this machine's real sensors
#   screenshots/dashboard-demo.svg        --demo (scripted model and sensors: every gauge shown)
#   screenshots/help.svg                  the F1 help overlay
#   screenshots/compare.svg               `llmtop compare --svg` over the fixture run cards
#   screenshots/proxy.svg                 `llmtop --proxy` in front of the real llama-server,
#                                         three requests from curl in its request table
# Usage: scripts/screenshots.sh [path/to/llmtop] (default: target/debug/llmtop, built first)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-}
if [[ -z "$BIN" ]]; then
  cargo build --quiet
  BIN="${CARGO_TARGET_DIR:-target}/debug/llmtop"
fi
MODEL=${LLMTOP_MODEL:-$HOME/.local/share/llmtop/models/SmolLM2-135M-Instruct.Q4_1.gguf}
COLS=120 ROWS=36
SOCK="llmtop-shots-$$"
DATA=$(mktemp -d)
SERVER_PID=
trap 'tmux -L "$SOCK" kill-server 2>/dev/null || true; [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null; rm -rf "$DATA"' EXIT
mkdir -p screenshots

shot() { # name
  tmux -L "$SOCK" capture-pane -e -p -t s | python3 scripts/ansi2svg.py "$COLS" "$ROWS" > "screenshots/$1.svg"
  echo "wrote screenshots/$1.svg"
}
wait_for() { # text timeout_s
  for _ in $(seq 1 $(( $2 * 5 ))); do
    tmux -L "$SOCK" capture-pane -p -t s | grep -qF -- "$1" && return 0
    sleep 0.2
  done
  echo "timed out waiting for: $1" >&2; tmux -L "$SOCK" capture-pane -p -t s >&2; return 1
}
start() { # args...
  tmux -L "$SOCK" kill-server 2>/dev/null || true
  # The old server takes a moment to go; a new session on its socket meanwhile fails.
  while tmux -L "$SOCK" has-session 2>/dev/null; do sleep 0.1; done
  sleep 0.3
  tmux -L "$SOCK" new-session -d -s s -x "$COLS" -y "$ROWS" \
    "env COLORTERM=truecolor LLMTOP_DATA_DIR='$DATA' '$BIN' $*; sleep 30"
}

# 0. The comparison charts of three machines, from the fixture run cards (no terminal needed).
: > "$DATA/config.toml"
LLMTOP_DATA_DIR="$DATA" "$BIN" --config "$DATA/config.toml" compare \
  tests/fixtures/runcards/{mac-mini,nuc,rtx4090}.json \
  --hardware-price fixture-nuc=699 --svg screenshots/compare.svg > /dev/null
echo "wrote screenshots/compare.svg"

# 1. The real model, mid-generation, under a first reply whose energy and cost line has
# settled (with its error band): the line appears once the ledger has data past the reply's
# end, a moment after its last token, so wait for it rather than for time.
start --model "'$MODEL'" --seed 3 --max-tokens 600
wait_for "● idle" 120
tmux -L "$SOCK" send-keys -t s -l "In one sentence: what is a watt?"
tmux -L "$SOCK" send-keys -t s Enter
wait_for "J/tok" 120
tmux -L "$SOCK" send-keys -t s -l "Write a short story about a lighthouse keeper who counts every watt."
tmux -L "$SOCK" send-keys -t s Enter
wait_for "● generating" 60
sleep 2
shot dashboard-generating

# 2. Demo mode (scripted sensors fill every gauge), mid-generation, after a first reply.
start --demo
wait_for "● idle" 20
sleep 6
tmux -L "$SOCK" send-keys -t s -l "How much does one answer cost?"
tmux -L "$SOCK" send-keys -t s Enter
wait_for "tok/s · TTFT" 20
tmux -L "$SOCK" send-keys -t s -l "And a longer one?"
tmux -L "$SOCK" send-keys -t s Enter
sleep 0.3
shot dashboard-demo

# 3. The help overlay.
tmux -L "$SOCK" send-keys -t s F1
sleep 0.5
shot help

# 4. The metering proxy in the dashboard, in front of llama.cpp's real llama-server, after three
# requests from another client (curl).
SERVER=$(scripts/llama-server.sh)
SPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
PPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$SERVER" -m "$MODEL" --host 127.0.0.1 --port "$SPORT" -c 2048 -t 1 --metrics --no-webui \
  >"$DATA/llama-server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$SPORT/health" >/dev/null && break; sleep 0.2; done
start --proxy --listen "127.0.0.1:$PPORT" --upstream "http://127.0.0.1:$SPORT"
wait_for "127.0.0.1:$PPORT" 20
for q in "Name three colours." "What is a watt?" "Count to five."; do
  curl -sf "http://127.0.0.1:$PPORT/v1/chat/completions" -H 'Content-Type: application/json' \
    -d "{\"messages\":[{\"role\":\"user\",\"content\":\"$q\"}],\"max_tokens\":48,\"stream\":true,\"temperature\":0}" >/dev/null
done
sleep 4
shot proxy
