#!/usr/bin/env bash
# Proxy overhead on a stream from the real llama-server: added latency per chunk (p50, p99),
# proxied/direct throughput, and llmtop's CPU time while proxying (see BENCHMARKS.md).
# BENCH_REQUESTS (default 100) proxied requests, as many direct ones interleaved;
# BENCH_TOKENS (default 32) tokens each; BENCH_SERVER_THREADS (default 2) for llama-server.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/ccache-env.sh
export LLMTOP_LLAMA_SERVER="${LLMTOP_LLAMA_SERVER:-$(scripts/llama-server.sh)}"
target="${CARGO_TARGET_DIR:-target}"
cargo build --release --bin llmtop
export LLMTOP_BIN="$target/release/llmtop"
cargo bench --bench proxy_overhead
