#!/bin/sh
# cmake, as llama-cpp-sys-2's build script runs it (the cmake crate runs $CMAKE when set), with
# the -D options that build script does not pass: LLMTOP_CMAKE_DEFINES, space-separated, added
# to configure runs only (a `cmake --build` takes no -D). scripts/gpu-build.sh sets both for a
# CUDA build: CMAKE_CUDA_ARCHITECTURES (ggml asks for `native`, which needs a GPU at build time)
# and, for a toolkit without a system-wide install, CMAKE_INSTALL_RPATH to its libraries.
case "${1:-}" in
    --build | --install | --version | --help | -E | -P) exec cmake "$@" ;;
esac
# shellcheck disable=SC2086 # the defines are words by design
exec cmake "$@" ${LLMTOP_CMAKE_DEFINES:-}
