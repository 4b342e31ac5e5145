#!/usr/bin/env bash
# The README's second command (and what CI runs): install what is missing, then the whole
# suite: formatting, lints, unit, sysfs-fixture, real-model and real-terminal tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
export PATH="$HOME/.cargo/bin:$PATH"
. scripts/ccache-env.sh
cargo fmt --check
cargo clippy --all-targets -- -D warnings
cargo test
