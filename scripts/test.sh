#!/usr/bin/env bash
# The README's second command (and what CI runs): install what is missing, then the whole
# suite: formatting, lints, unit, sysfs-fixture, real-model and real-terminal tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
export PATH="$HOME/.cargo/bin:$PATH"
. scripts/ccache-env.sh
# llama.cpp's own llama-server, for the attach and proxy tests (built once, then cached).
LLMTOP_LLAMA_SERVER="$(scripts/llama-server.sh)"
export LLMTOP_LLAMA_SERVER
cargo fmt --check
cargo clippy --all-targets -- -D warnings
cargo test
