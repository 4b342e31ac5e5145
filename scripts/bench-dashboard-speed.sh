#!/usr/bin/env bash
# Generation speed with the dashboard up (sensors sampling, gauges redrawing, tokens streaming
# through a real terminal) against headless `llmtop bench`, same binary, model, threads, prompt
# and greedy sampling. Interleaved rounds, so drift on a shared machine hits both sides alike.
# Each round keeps one dashboard session up and runs REPLIES pairs: a headless story (`bench
# --reps 1`), then the same story in the dashboard (Ctrl-L, a new conversation, before each);
# the dashboard's figure for each reply is the one it logs, the same its run card records.
#
# VIA=tmux (default): the dashboard in a detached tmux pane; tmux parses what it draws.
# VIA=ssh: the dashboard over a real SSH session on loopback (`ssh -tt`), where sshd reads the
#   pty and encrypts what it draws. Needs an sshd on 127.0.0.1:$SSH_PORT (default 2222) that
#   takes the key $SSH_KEY for the current user and AcceptEnv LLMTOP_*; scripts/loopback-sshd.sh
#   starts one.
# Usage: scripts/bench-dashboard-speed.sh [path/to/llmtop]
#   (ROUNDS=3, REPLIES=5, GEN=256, THREADS=nproc)
# Environment variables starting with LLMTOP_ reach both sides (and the far end of ssh);
# DASH_ARGS are added to the dashboard's command line only (e.g. "--config fps60.toml").
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "${1:-${CARGO_TARGET_DIR:-target}/release/llmtop}")
MODEL=${LLMTOP_MODEL:-$HOME/.local/share/llmtop/models/SmolLM2-135M-Instruct.Q4_1.gguf}
ROUNDS=${ROUNDS:-3}
REPLIES=${REPLIES:-5}
GEN=${GEN:-256}
THREADS=${THREADS:-$(nproc)}
VIA=${VIA:-tmux}
SSH_PORT=${SSH_PORT:-2222}
SSH_KEY=${SSH_KEY:-/tmp/llmtop-sshd/client}
PROMPT="Write a 1000-word story about a lighthouse keeper who finds a message in a bottle."
SOCK="llmtop-speed-$$"
TMP=$(mktemp -d)
SSH_PID=
cleanup() {
  tmux -L "$SOCK" kill-server 2>/dev/null || true
  [ -n "$SSH_PID" ] && kill "$SSH_PID" 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT
COMMON=(--model "$MODEL" --threads "$THREADS" --max-tokens "$GEN" --temperature 0)

wait_log() { # text count timeout_s: the dashboard's log (info level) says when it is ready and done
  for _ in $(seq 1 $(( $3 * 20 ))); do
    n=$(grep -cF -- "$1" "$TMP/dash/llmtop.log" 2>/dev/null || true); [ "${n:-0}" -ge "$2" ] && return 0; sleep 0.05
  done
  echo "timed out waiting for '$1' in the dashboard's log" >&2; return 1
}

# Start the dashboard; `keys TEXT` types into it.
start_dash() {
  case "$VIA" in
    tmux)
      tmux -L "$SOCK" new-session -d -s dash -x 120 -y 40 \
        "exec env LLMTOP_DATA_DIR='$TMP/dash' '$BIN' ${COMMON[*]} ${DASH_ARGS:-}"
      keys() { tmux -L "$SOCK" send-keys -t dash -l "$1"; } ;;
    ssh)
      rm -f "$TMP/in"; mkfifo "$TMP/in"
      # The fifo stays open for writing (fd 7), so ssh sees no end of input between keys.
      LLMTOP_DATA_DIR="$TMP/dash" ssh -tt -i "$SSH_KEY" -p "$SSH_PORT" -o LogLevel=ERROR \
        -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o SendEnv='LLMTOP_*' \
        "$USER@127.0.0.1" "stty cols 120 rows 40; TERM=xterm-256color exec '$BIN' ${COMMON[*]} ${DASH_ARGS:-}" \
        <"$TMP/in" >"$TMP/ssh.out" 2>&1 &
      SSH_PID=$!
      exec 7>"$TMP/in"
      keys() { printf '%s' "$1" >&7; } ;;
    *) echo "VIA must be tmux or ssh, not '$VIA'" >&2; exit 2 ;;
  esac
}

stop_dash() {
  keys $'\x11'   # Ctrl-Q
  sleep 0.5
  case "$VIA" in
    tmux) tmux -L "$SOCK" kill-server 2>/dev/null || true ;;
    ssh) exec 7>&-; wait "$SSH_PID" 2>/dev/null || true; SSH_PID= ;;
  esac
}

export USER=${USER:-$(id -un)}
# Pairs: one headless run, then one dashboard reply, a few seconds apart, so both sides see the
# same machine (on a shared VM the speed drifts by 10 % from minute to minute, but holds within
# a pair). The dashboard stays up between its replies and is stopped (SIGSTOP) while the
# headless side runs, so neither disturbs the other.
for r in $(seq 1 "$ROUNDS"); do
  rm -rf "$TMP/dash"
  start_dash
  wait_log "model loaded" 1 120
  sleep 1   # the first frames and the first sensor samples settle
  case "$VIA" in
    tmux) DPID=$(tmux -L "$SOCK" list-panes -t dash -F '#{pane_pid}') ;;
    ssh) DPID=$(pgrep -n -f -- "^$BIN .*--max-tokens $GEN") ;;
  esac
  for n in $(seq 1 "$REPLIES"); do
    kill -STOP "$DPID"
    LLMTOP_DATA_DIR="$TMP/bench" "$BIN" bench "${COMMON[@]}" --no-idle --no-warmup \
      --reps 1 --prompt "$PROMPT" --json "$TMP/bench-$r-$n.json" >/dev/null 2>&1
    kill -CONT "$DPID"
    sleep 0.5
    keys $'\x0c'   # Ctrl-L: a new conversation, as each bench run starts
    keys "$PROMPT"; keys $'\r'
    wait_log "reply done" "$n" 300
  done
  grep -F "reply done" "$TMP/dash/llmtop.log" > "$TMP/dash-$r.log"
  stop_dash
done

python3 - "$TMP" "$ROUNDS" "$THREADS" "$GEN" "$VIA" <<'PY'
import json, re, statistics, sys
tmp, rounds, threads, gen, via = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
ratios = []
for r in range(1, rounds + 1):
    d = [float(m[1]) for m in re.finditer(r"reply done: \d+ tokens, ([\d.]+) tok/s", open(f"{tmp}/dash-{r}.log").read())]
    b = [json.load(open(f"{tmp}/bench-{r}-{n}.json"))["runs"][0]["gen_tok_s"] for n in range(1, len(d) + 1)]
    pairs = [y / x for x, y in zip(b, d)]
    ratios.extend(pairs)
    print(f"round {r}: headless {statistics.median(b):.1f} tok/s, dashboard {statistics.median(d):.1f} "
          f"tok/s (medians of {len(d)}), ratio of each pair {' '.join(f'{p:.3f}' for p in pairs)}, "
          f"ratio {statistics.median(pairs):.3f}")
print(f"{threads} threads, {gen} max tokens, via {via}: median ratio dashboard/headless over "
      f"{len(ratios)} pairs {statistics.median(ratios):.3f}")
PY
