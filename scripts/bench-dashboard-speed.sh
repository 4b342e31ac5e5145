#!/usr/bin/env bash
# Generation speed with the dashboard up (sensors sampling, gauges redrawing, tokens streaming
# through a real pty) against headless `llmtop bench`, same binary, model, threads, prompt and
# greedy sampling. Interleaved rounds, so drift on a shared machine hits both sides alike.
# The dashboard's figure is the one its own run card records (Ctrl-S after each reply).
# Usage: scripts/bench-dashboard-speed.sh [path/to/llmtop]   (ROUNDS=3, GEN=256, THREADS=nproc)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-${CARGO_TARGET_DIR:-target}/release/llmtop}
MODEL=${LLMTOP_MODEL:-$HOME/.local/share/llmtop/models/SmolLM2-135M-Instruct.Q4_1.gguf}
ROUNDS=${ROUNDS:-3}
GEN=${GEN:-256}
THREADS=${THREADS:-$(nproc)}
PROMPT="Write a 1000-word story about a lighthouse keeper who finds a message in a bottle."
SOCK="llmtop-speed-$$"
TMP=$(mktemp -d)
trap 'tmux -L "$SOCK" kill-server 2>/dev/null || true; rm -rf "$TMP"' EXIT
COMMON=(--model "$MODEL" --threads "$THREADS" --max-tokens "$GEN" --temperature 0)

wait_for() { # text timeout_s
  for _ in $(seq 1 $(( $2 * 10 ))); do
    tmux -L "$SOCK" capture-pane -p -t dash | grep -qF -- "$1" && return 0; sleep 0.1
  done
  echo "timed out waiting for $1" >&2; return 1
}

for r in $(seq 1 "$ROUNDS"); do
  LLMTOP_DATA_DIR="$TMP/bench" "$BIN" bench "${COMMON[@]}" --no-idle --no-warmup --reps 1 \
    --prompt "$PROMPT" --json "$TMP/bench-$r.json" >/dev/null 2>&1

  rm -rf "$TMP/dash"
  tmux -L "$SOCK" new-session -d -s dash -x 120 -y 40 \
    "exec env LLMTOP_DATA_DIR='$TMP/dash' '$BIN' ${COMMON[*]}"
  wait_for "● idle" 120
  tmux -L "$SOCK" send-keys -t dash -l "$PROMPT"
  tmux -L "$SOCK" send-keys -t dash Enter
  wait_for "● generating" 60
  wait_for "● idle" 300
  tmux -L "$SOCK" send-keys -t dash C-s
  for _ in $(seq 1 50); do ls "$TMP"/dash/snapshots/*.json >/dev/null 2>&1 && break; sleep 0.1; done
  cp "$(ls "$TMP"/dash/snapshots/*.json | head -1)" "$TMP/dash-$r.json"
  tmux -L "$SOCK" send-keys -t dash C-q
  sleep 0.5
  tmux -L "$SOCK" kill-server 2>/dev/null || true
done

python3 - "$TMP" "$ROUNDS" "$THREADS" "$GEN" <<'PY'
import json, statistics, sys
tmp, rounds, threads, gen = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
ratios = []
for r in range(1, rounds + 1):
    b = json.load(open(f"{tmp}/bench-{r}.json"))["runs"][0]
    d = json.load(open(f"{tmp}/dash-{r}.json"))["last_reply"]
    ratios.append(d["gen_tok_s"] / b["gen_tok_s"])
    print(f"round {r}: headless {b['gen_tok_s']:.1f} tok/s ({b['generated_tokens']} tok), "
          f"dashboard {d['gen_tok_s']:.1f} tok/s ({d['generated_tokens']} tok), ratio {ratios[-1]:.3f}")
print(f"{threads} threads, {gen} max tokens: median ratio dashboard/headless {statistics.median(ratios):.3f}")
PY
