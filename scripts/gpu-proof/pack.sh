#!/usr/bin/env bash
# Make gpu-kit/, what scripts/gpu-proof.sh needs on a GPU machine that has no Rust and no
# network (it travels with the working tree, which must stay under 64 MiB):
#   llmtop            built here with llama.cpp as shared libraries (LLAMA_BUILD_SHARED_LIBS=1,
#                     the crate's dynamic-link path) and portable CPU code (x86-64-v2); it finds
#                     libllama/libggml* on LD_LIBRARY_PATH, so the CUDA ones built there load
#   llama.cpp.tar.xz  the sources of that very llama.cpp (vendored in llama-cpp-sys-2), without
#                     the backends a CUDA/CPU build never compiles, plus llama-bench's driver
#                     (the crate strips tools/; taken from llama-cpp-python's sdist, as
#                     scripts/bench-reference.sh does)
#   vocab.gguf        the default model's tokenizer (a vocab-only GGUF) for the random model
#   MANIFEST          what was packed, from which commit and crate
#
#   scripts/gpu-proof/pack.sh          # then: scripts/gpu-proof.sh --cpu-dry-run, or on a GPU
set -euo pipefail
cd "$(dirname "$0")/../.."
KIT="${KIT:-gpu-kit}"
export PATH="$HOME/.cargo/bin:$PATH"
. scripts/ccache-env.sh
TARGET="${KIT_TARGET_DIR:-${CARGO_TARGET_DIR:-target}-kit}"
MODEL="${LLMTOP_DATA_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/llmtop}/models/SmolLM2-135M-Instruct.Q4_1.gguf"
LCP_VERSION="0.3.36"
CACHE="${LLMTOP_BUILD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/llmtop}"
mkdir -p "$KIT"

# PACK_SKIP_BINARY=1: the sources and vocabulary only (the binary takes longest to build).
if [ -z "${PACK_SKIP_BINARY:-}" ]; then
    echo "pack: llmtop with shared llama.cpp libraries into $TARGET"
    LLAMA_BUILD_SHARED_LIBS=1 RUSTFLAGS="-C target-cpu=x86-64-v2 -C link-arg=-Wl,-rpath,\$ORIGIN" \
        cargo build --release --quiet --target-dir "$TARGET"
    cp "$TARGET/release/llmtop" "$KIT/llmtop.tmp"
    strip "$KIT/llmtop.tmp"
    mv "$KIT/llmtop.tmp" "$KIT/llmtop"
    ldd "$KIT/llmtop" | grep -E 'lib(llama|ggml)' || { echo "pack: $KIT/llmtop does not load llama.cpp as shared libraries"; exit 1; }
fi

SYS_DIR=$(cargo metadata --format-version 1 | python3 -c '
import json, os, sys
m = json.load(sys.stdin)
print(next(os.path.dirname(p["manifest_path"]) for p in m["packages"] if p["name"] == "llama-cpp-sys-2"))')
SYS_VERSION=$(basename "$SYS_DIR")
BENCH_SRC="$CACHE/llama-bench-src-$LCP_VERSION"
if [ ! -f "$BENCH_SRC/llama-bench.cpp" ]; then
    echo "pack: llama-bench's driver from llama-cpp-python $LCP_VERSION (PyPI sdist)"
    tmp=$(mktemp -d)
    python3 -m pip download --quiet --no-deps --no-binary :all: "llama-cpp-python==$LCP_VERSION" -d "$tmp"
    tar -xzf "$tmp/llama_cpp_python-$LCP_VERSION.tar.gz" -C "$tmp" \
        "llama_cpp_python-$LCP_VERSION/vendor/llama.cpp/tools/llama-bench"
    mkdir -p "$BENCH_SRC"
    cp "$tmp/llama_cpp_python-$LCP_VERSION/vendor/llama.cpp/tools/llama-bench/"* "$BENCH_SRC/"
    rm -rf "$tmp"
fi
echo "pack: llama.cpp sources from $SYS_DIR"
tree=$(mktemp -d)
cp -r "$SYS_DIR/llama.cpp/." "$tree/"
chmod -R u+w "$tree"
# Backends neither build compiles, tools other than llama-bench, docs (vendor/ stays whole:
# its CMakeLists adds every library in it).
for b in sycl vulkan opencl metal hexagon et openvino webgpu cann virtgpu zdnn musa; do
    rm -rf "$tree/ggml/src/ggml-$b"
done
rm -rf "$tree/tools" "$tree/docs" "$tree/examples" "$tree/pocs" "$tree/ci"
mkdir -p "$tree/tools/llama-bench" "$tree/examples"
cp "$BENCH_SRC/"* "$tree/tools/llama-bench/"
printf 'llama_add_compile_flags()\nadd_subdirectory(llama-bench)\n' >"$tree/tools/CMakeLists.txt"
printf '' >"$tree/examples/CMakeLists.txt"
# Byte-for-byte the same archive for the same sources (gpu-proof.sh reuses a build by its hash).
tar -C "$tree" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf - . |
    xz -9 -T1 >"$KIT/llama.cpp.tar.xz.tmp"
mv "$KIT/llama.cpp.tar.xz.tmp" "$KIT/llama.cpp.tar.xz"
rm -rf "$tree"

python3 scripts/gpu-proof/gguf_tool.py vocab "$MODEL" "$KIT/vocab.gguf"
{
    echo "llmtop_commit=$(git rev-parse HEAD)$(git diff --quiet HEAD -- src Cargo.toml Cargo.lock || echo -dirty)"
    echo "llama_cpp_sys=$SYS_VERSION"
    echo "llama_bench_driver=llama-cpp-python $LCP_VERSION"
    echo "llmtop_rustflags=-C target-cpu=x86-64-v2 (llama.cpp: shared libraries)"
    echo "vocab_from=$(basename "$MODEL")"
    echo "packed_unix=$(date +%s)"
    echo "llmtop_sha256=$( [ -e "$KIT/llmtop" ] && sha256sum "$KIT/llmtop" | cut -d' ' -f1)"
} >"$KIT/MANIFEST"
du -sh "$KIT"/* | sed 's/^/pack: /'
echo "pack: $(du -sh "$KIT" | cut -f1) in $KIT (the device tree limit is 64 MiB)"
