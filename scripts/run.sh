#!/usr/bin/env bash
# The README's first command: install what is missing, build llmtop (release, tuned for this
# CPU, with the GPU backend this machine can use) and run it. Arguments go to llmtop:
# `scripts/run.sh bench --reps 5`.
#
# The first lines say which build (cpu, cuda, vulkan, metal) and why: see scripts/gpu-build.sh.
# LLMTOP_BUILD=cpu|cuda|vulkan|metal overrides it; LLMTOP_DETECT_ONLY=1 prints the choice and
# stops (nothing installed or built); LLMTOP_BUILD_ONLY=1 builds and prints the binary's path
# instead of running it. A cuda build takes LLMTOP_CUDA_ARCHS (see llmtop_cuda_env in
# scripts/gpu-build.sh); scripts/cuda-build.sh runs it with a toolkit from PyPI wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/gpu-build.sh
if [ -n "${LLMTOP_DETECT_ONLY:-}" ]; then
    exit 0
fi
scripts/bootstrap.sh
export PATH="$HOME/.cargo/bin:$PATH"
. scripts/ccache-env.sh
if [ -n "$LLMTOP_FEATURE" ]; then
    # A subshell: what llmtop_cuda_env exports (RUSTFLAGS, shared libraries) stays out of the
    # CPU build that follows a failed attempt.
    if ! (
        if [ "$LLMTOP_FEATURE" = cuda ]; then llmtop_cuda_env || exit $?; fi
        cargo build --release --features "$LLMTOP_FEATURE"
    ); then
        if [ -n "${LLMTOP_BUILD:-}" ]; then
            echo "llmtop build: the $LLMTOP_FEATURE build failed (LLMTOP_BUILD=$LLMTOP_BUILD); see the errors above" >&2
            exit 1
        fi
        echo "llmtop build: the $LLMTOP_FEATURE build failed (errors above); building for the CPU instead (LLMTOP_BUILD=cpu skips the attempt)" >&2
        cargo build --release
    fi
else
    cargo build --release
fi
if [ -n "${LLMTOP_BUILD_ONLY:-}" ]; then
    echo "${CARGO_TARGET_DIR:-target}/release/llmtop"
    exit 0
fi
exec "${CARGO_TARGET_DIR:-target}/release/llmtop" "$@"
