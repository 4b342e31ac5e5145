#!/usr/bin/env bash
# The README's first command: install what is missing, build llmtop (release, tuned for this
# CPU) and run it. Arguments go to llmtop: `scripts/run.sh bench --reps 5`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
export PATH="$HOME/.cargo/bin:$PATH"
. scripts/ccache-env.sh
cargo build --release
exec "${CARGO_TARGET_DIR:-target}/release/llmtop" "$@"
