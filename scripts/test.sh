#!/usr/bin/env bash
# The README's second command (and what CI runs): install what is missing, then the whole
# suite: formatting, lints, unit, sysfs-fixture, real-model and real-terminal tests. Each phase
# prints how long it took (BENCHMARKS.md, "CI", says where the time goes).
set -euo pipefail
cd "$(dirname "$0")/.."
last=$(date +%s)
phase() {
    local now
    now=$(date +%s)
    echo "test.sh: $1: $((now - last)) s"
    last=$now
}

scripts/bootstrap.sh
phase "bootstrap (apt packages, Rust, the model)"
export PATH="$HOME/.cargo/bin:$PATH"
. scripts/ccache-env.sh

# llama.cpp's own llama-server, for the attach and proxy tests (built once, then cached). On a
# fresh machine it is minutes of C++: built in the background beside fmt and clippy, whose
# serial stretches (crate downloads, cmake's configure, bindgen, the crate's front end, links)
# leave a core idle. Its own process group, so an early exit takes the build down with it.
tmp=$(mktemp -d)
LLMTOP_SKIP_LOG="$tmp/skipped"
: >"$LLMTOP_SKIP_LOG"
export LLMTOP_SKIP_LOG
setsid -w scripts/llama-server.sh >"$tmp/server-path" 2>"$tmp/server-log" &
server=$!
cleanup() {
    kill -TERM -- "-$server" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

cargo fmt --check
cargo clippy --all-targets -- -D warnings
phase "fmt and clippy (check build: llama.cpp compiled once)"
if ! wait "$server"; then
    cat "$tmp/server-log" >&2
    echo "test.sh: scripts/llama-server.sh failed (its output is above)" >&2
    exit 1
fi
LLMTOP_LLAMA_SERVER=$(cat "$tmp/server-path")
export LLMTOP_LLAMA_SERVER
phase "llama-server (what was left of its build after clippy)"
cargo test --no-run
phase "test build (llama.cpp from ccache)"
# A test that cannot run on this machine records why in LLMTOP_SKIP_LOG
# (tests/common/skip.rs); the count comes last, so a skip is never a silent `ok`.
cargo test
phase "tests"
skips=$(wc -l <"$LLMTOP_SKIP_LOG")
echo "test.sh: $skips test(s) skipped on this machine (cargo's 'ignored' above need a GPU, a non-root user or a person's eyes)"
sed 's/^/test.sh:   /' "$LLMTOP_SKIP_LOG"
