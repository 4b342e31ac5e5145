#!/usr/bin/env bash
# The one-call GPU proof: on a lent GPU machine (nvcc, CMake, PyTorch; no Rust, no network),
# from the kit scripts/gpu-proof/pack.sh made here (gpu-kit/: an llmtop binary that loads
# llama.cpp as shared libraries, the llama.cpp sources it was built from, a vocabulary), build
# llama.cpp's CUDA libraries and llama-bench from those sources, generate a random-weight
# Llama-shaped GGUF, and measure (scripts/gpu-proof/proof.py; output schema in
# scripts/gpu-proof/README.md):
#   - generation tok/s through llmtop against llama-bench on the same model and libraries,
#   - NVML's energy counter against llmtop's ledger over one window,
#   - two PyTorch processes' GPU shares from `llmtop share` against NVML's per-process samples,
#   - how far llmtop's power gauge trails a load step.
#
#   scripts/gpu-proof.sh --out $OUT/gpu-proof.json      # on the GPU machine (about 6 minutes)
#   scripts/gpu-proof.sh --cpu-dry-run                   # anywhere: CPU libraries, tiny model,
#                                                        # the generation section only
# Options: --kit DIR (gpu-kit), --work DIR (/tmp/llmtop-gpu-proof), --out FILE
# (WORK/gpu-proof.json), --shape 1b|smollm2-135m|tiny (1b; tiny for the dry run), --archs
# CUDA architectures (90), --gen N tokens (128), --reps N (3).
set -uo pipefail
cd "$(dirname "$0")/.."
KIT=gpu-kit WORK=/tmp/llmtop-gpu-proof OUT="" SHAPE="" ARCHS=90 GEN=128 REPS=3 DRY=0
while [ $# -gt 0 ]; do
    case "$1" in
        --kit) KIT="$2"; shift 2 ;;
        --work) WORK="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        --shape) SHAPE="$2"; shift 2 ;;
        --archs) ARCHS="$2"; shift 2 ;;
        --gen) GEN="$2"; shift 2 ;;
        --reps) REPS="$2"; shift 2 ;;
        --cpu-dry-run) DRY=1; shift ;;
        *) echo "gpu-proof: unknown option $1 (see the head of scripts/gpu-proof.sh)" >&2; exit 2 ;;
    esac
done
[ -n "$SHAPE" ] || { if [ $DRY = 1 ]; then SHAPE=tiny; else SHAPE=1b; fi; }
OUT="${OUT:-$WORK/gpu-proof.json}"
say() { echo "gpu-proof: $*" >&2; }
for f in llmtop llama.cpp.tar.xz vocab.gguf MANIFEST; do
    [ -e "$KIT/$f" ] || { say "$KIT/$f missing: run scripts/gpu-proof/pack.sh on the build machine first"; exit 1; }
done
for tool in cmake python3 tar xz; do
    command -v "$tool" >/dev/null || { say "$tool not found on PATH"; exit 1; }
done
if [ $DRY = 0 ]; then
    command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ] || { say "no nvcc: a GPU run needs the CUDA toolkit (or --cpu-dry-run)"; exit 1; }
    command -v nvcc >/dev/null || export PATH="/usr/local/cuda/bin:$PATH"
    nvidia-smi -L >&2 || { say "nvidia-smi sees no GPU (or --cpu-dry-run)"; exit 1; }
fi
mkdir -p "$WORK" "$(dirname "$OUT")"
T0=$(date +%s)

# 1. llama.cpp from the very sources the kit's llmtop was built with. A build of the same
# archive with the same flags in this work folder is reused (a second run on a warm machine).
SRC="$WORK/llama.cpp" BUILD="$WORK/build"
GPU_FLAGS=(-DGGML_CUDA=OFF)
if [ $DRY = 0 ]; then GPU_FLAGS=(-DGGML_CUDA=ON -DGGML_CUDA_NCCL=OFF -DCMAKE_CUDA_ARCHITECTURES="$ARCHS"); fi
STAMP="$(sha256sum "$KIT/llama.cpp.tar.xz" | cut -d' ' -f1) ${GPU_FLAGS[*]}"
B0=$(date +%s)
if [ -x "$BUILD/bin/llama-bench" ] && [ "$(cat "$BUILD/.kit-stamp" 2>/dev/null)" = "$STAMP" ]; then
    say "reusing the llama.cpp build in $BUILD (same sources and flags)"
    BUILD_OK=true REUSED=true
else
REUSED=false
rm -rf "$SRC" "$BUILD" && mkdir -p "$SRC" && tar -xJf "$KIT/llama.cpp.tar.xz" -C "$SRC"
say "building llama.cpp (${GPU_FLAGS[*]}) in $BUILD; log $WORK/build.log"
if cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON -DGGML_NATIVE=ON \
    -DGGML_OPENMP=ON -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_TOOLS=ON "${GPU_FLAGS[@]}" \
    >"$WORK/build.log" 2>&1 &&
    cmake --build "$BUILD" --target llama-bench -j "$(nproc)" >>"$WORK/build.log" 2>&1; then
    BUILD_OK=true
    echo "$STAMP" >"$BUILD/.kit-stamp"
else
    BUILD_OK=false
    tail -n 20 "$WORK/build.log" >&2
fi
fi
BUILD_S=$(($(date +%s) - B0))
LIBS="$BUILD/bin"
say "build ok=$BUILD_OK in ${BUILD_S} s"

# 2. The binary against those libraries: every llama.cpp library it needs must resolve there.
RESOLVED=$(LD_LIBRARY_PATH="$LIBS" ldd "$KIT/llmtop" 2>&1 | python3 -c '
import json, re, sys
print(json.dumps({m.group(1): m.group(2) for m in
    (re.match(r"\s*(lib(?:llama|ggml)[^ ]*) => (\S+)", l) for l in sys.stdin) if m}))')

# 3. The model.
M0=$(date +%s)
MODEL="$WORK/model-$SHAPE.gguf"
python3 scripts/gpu-proof/gguf_tool.py model "$KIT/vocab.gguf" "$MODEL" --shape "$SHAPE" || { say "model generation failed"; exit 1; }
MODEL_S=$(($(date +%s) - M0))

CONTEXT=$(python3 - "$KIT/MANIFEST" "$BUILD_OK" "$BUILD_S" "$ARCHS" "$RESOLVED" "$MODEL" "$SHAPE" "$MODEL_S" "$DRY" "$REUSED" <<'PY'
import json, os, subprocess, sys
manifest, ok, secs, archs, resolved, model, shape, model_s, dry, reused = sys.argv[1:]
def out(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
info = json.loads(subprocess.run([sys.executable, "scripts/gpu-proof/gguf_tool.py", "info", model],
                                 capture_output=True, text=True).stdout)
print(json.dumps({
    "kit": dict(l.split("=", 1) for l in open(manifest).read().splitlines() if "=" in l),
    "machine": {
        "gpu": out(["nvidia-smi", "--query-gpu=name,driver_version,power.limit", "--format=csv,noheader"]),
        "nvcc": (out(["nvcc", "--version"]) or "").splitlines()[-1:] ,
        "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), None),
        "nproc": os.cpu_count(),
        "kernel": os.uname().release,
    },
    "build": {"ok": ok == "true", "seconds": int(secs), "reused": reused == "true",
              "cuda_archs": None if dry == "1" else archs,
              "libraries_resolved": json.loads(resolved or "{}")},
    "model": {"shape": shape, "bytes": os.path.getsize(model), "seconds": int(model_s),
              "n_embd": info.get("llama.embedding_length"), "n_layer": info.get("llama.block_count"),
              "n_vocab": info.get("llama.vocab_size"), "file_type": "Q8_0"},
}))
PY
)
if [ "$BUILD_OK" != true ]; then
    python3 -c 'import json,sys; d=json.loads(sys.argv[1]); d.update(schema="llmtop.gpu-proof/1", error="llama.cpp build failed (build.log)"); json.dump(d, open(sys.argv[2], "w"), indent=1)' "$CONTEXT" "$OUT"
    say "wrote $OUT (build failed)"
    exit 1
fi
DRYFLAG=()
if [ $DRY = 1 ]; then DRYFLAG=(--cpu-dry-run); fi
python3 scripts/gpu-proof/proof.py --llmtop "$KIT/llmtop" --llama-bench "$BUILD/bin/llama-bench" \
    --libs "$LIBS" --model "$MODEL" --work "$WORK" --out "$OUT" --gen "$GEN" --reps "$REPS" \
    --context "$CONTEXT" "${DRYFLAG[@]}"
rc=$?
say "done in $(($(date +%s) - T0)) s: $OUT"
exit $rc
