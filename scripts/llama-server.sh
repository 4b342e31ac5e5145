#!/usr/bin/env bash
# Build llama.cpp's own llama-server (CPU, OpenMP, native flags) for the attach and proxy tests
# and benchmarks, and print its path. The llama-cpp-2 crate strips tools/, so the sources come
# from the llama.cpp vendored in the PyPI source distribution of llama-cpp-python (the registry
# this project may reach), as scripts/bench-reference.sh does for llama-bench. The build is cached
# under the cache dir: a second call only prints the path.
#
#   scripts/llama-server.sh            # build if missing, print the binary's path
#   LLAMA_SERVER=/path/to/llama-server scripts/llama-server.sh   # use an existing one
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -n "${LLAMA_SERVER:-}" ]; then
    [ -x "$LLAMA_SERVER" ] || { echo "llama-server: LLAMA_SERVER=$LLAMA_SERVER is not an executable file; unset it to build one" >&2; exit 1; }
    echo "$LLAMA_SERVER"; exit 0
fi
LCP_VERSION="0.3.36"
CACHE="${LLMTOP_BUILD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/llmtop}/llama-server-$LCP_VERSION"
BIN="$CACHE/build/bin/llama-server"
if [ -x "$BIN" ]; then echo "$BIN"; exit 0; fi

. scripts/ccache-env.sh
mkdir -p "$CACHE"
SRC="$CACHE/src/llama_cpp_python-$LCP_VERSION/vendor/llama.cpp"
if [ ! -f "$SRC/tools/server/server.cpp" ]; then
    echo "llama-server: fetching llama-cpp-python $LCP_VERSION sources (PyPI sdist)" >&2
    rm -rf "$CACHE/src" "$CACHE/sdist" && mkdir -p "$CACHE/src" "$CACHE/sdist"
    python3 -m pip download --quiet --no-deps --no-binary :all: "llama-cpp-python==$LCP_VERSION" -d "$CACHE/sdist" >&2
    tar -xzf "$CACHE/sdist/llama_cpp_python-$LCP_VERSION.tar.gz" -C "$CACHE/src" \
        "llama_cpp_python-$LCP_VERSION/vendor/llama.cpp"
    rm -rf "$CACHE/sdist"
fi
echo "llama-server: building (CPU, OpenMP, native; a few minutes on 2 cores, once)" >&2
# No web UI (it would be fetched from outside), no TLS, no curl: a local test server.
cmake -S "$SRC" -B "$CACHE/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DGGML_OPENMP=ON \
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON \
    -DLLAMA_BUILD_APP=OFF -DBUILD_SHARED_LIBS=OFF >"$CACHE/cmake.log" 2>&1 \
    || { echo "llama-server: cmake configure failed, see $CACHE/cmake.log" >&2; exit 1; }
cmake --build "$CACHE/build" --target llama-server -j "$(nproc)" >>"$CACHE/cmake.log" 2>&1 \
    || { echo "llama-server: build failed, see $CACHE/cmake.log" >&2; tail -20 "$CACHE/cmake.log" >&2; exit 1; }
echo "$BIN"
