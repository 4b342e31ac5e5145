#!/usr/bin/env bash
# What llmtop does to the engine while a reply streams: per-thread CPU time and context switches
# per second over 3 s in the middle of a 1500-token reply, headless `llmtop bench` first, then the
# dashboard in tmux (its loop, samplers, the engine's threads, and the tmux server).
# "invol/s" on an engine thread is how often something took its CPU.
# Usage: scripts/dashboard-wakeups.sh [path/to/llmtop]   (DASH_ARGS for the dashboard only)
set -euo pipefail
BIN=$(realpath "${1:-${CARGO_TARGET_DIR:-target}/release/llmtop}")
MODEL=${LLMTOP_MODEL:-$HOME/.local/share/llmtop/models/SmolLM2-135M-Instruct.Q4_1.gguf}
TMP=$(mktemp -d)
SOCK=llmtop-wakeups-$$
trap 'tmux -L "$SOCK" kill-server 2>/dev/null || true; rm -rf "$TMP"' EXIT
# name-tid cpu_ticks voluntary involuntary migrations, per thread
snap() {
  for t in /proc/$1/task/* ${2:+/proc/$2}; do
    echo "$(tr -d ' :' < $t/comm)-$(basename $t) $(awk '{print $14+$15}' $t/stat)" \
      "$(awk '/^voluntary/{v=$2} /^nonvoluntary/{n=$2} END{print v, n}' $t/status)" \
      "$(awk '/nr_migrations/{print $3}' $t/sched 2>/dev/null || echo 0)"
  done | sort
}
show() { join $1 $2 | awk '{printf "  %-24s cpu %5.2f s  vol/s %5.0f  invol/s %5.0f  migrations/s %4.0f\n", $1, ($6-$2)/100, ($7-$3)/3, ($8-$4)/3, ($9-$5)/3}'; }
echo "== headless"
LLMTOP_DATA_DIR=$TMP/bd $BIN bench --model $MODEL --threads 2 --max-tokens 1500 --temperature 0 --no-idle --no-warmup --reps 1 --json $TMP/b.json >/dev/null 2>&1 &
BP=$!
sleep 3; snap $BP > $TMP/s1; sleep 3; snap $BP > $TMP/s2; show $TMP/s1 $TMP/s2; wait $BP
echo "== dashboard"
tmux -L $SOCK new-session -d -s dash -x 120 -y 40 "exec env LLMTOP_DATA_DIR=$TMP/d '$BIN' --model $MODEL --threads 2 --max-tokens 1500 --temperature 0 ${DASH_ARGS:-}"
for _ in $(seq 1 200); do grep -q "model loaded" $TMP/d/llmtop.log 2>/dev/null && break; sleep 0.1; done; sleep 1
PID=$(tmux -L $SOCK list-panes -t dash -F '#{pane_pid}'); TPID=$(tmux -L $SOCK display -p '#{pid}')
tmux -L $SOCK send-keys -t dash -l "Write a 1000-word story about a lighthouse keeper who finds a message in a bottle."; tmux -L $SOCK send-keys -t dash Enter
sleep 2; snap $PID $TPID > $TMP/s1; sleep 3; snap $PID $TPID > $TMP/s2; show $TMP/s1 $TMP/s2
for _ in $(seq 1 300); do grep -q "reply done" $TMP/d/llmtop.log 2>/dev/null && break; sleep 0.1; done
grep "reply done" $TMP/d/llmtop.log | sed 's/.*reply done/  reply done/'; python3 -c "
import json,glob; print('  headless', [round(r['gen_tok_s'],1) for r in json.load(open(glob.glob('$TMP/b.json')[0]))['runs']] if glob.glob('$TMP/b.json') else '')" 2>/dev/null
