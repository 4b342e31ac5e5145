#!/usr/bin/env bash
# llmtop bench against llama.cpp's own llama-bench, in one run, as a ratio.
#
# The reference's llama.cpp library is the very source llmtop links (vendored in the
# llama-cpp-sys-2 crate: same revision), built with the flags llama-cpp-sys-2 uses for a
# target-cpu=native build: Release, GGML_NATIVE=ON, OpenMP. The crate strips tools/, so the
# llama-bench driver (tools/llama-bench/*.cpp) comes from the llama.cpp vendored in the PyPI
# source distribution of llama-cpp-python, dropped into a copy of the crate's tree. Same model,
# same threads, same prompt length, and generation at the same context depth (llama-bench -d).
#
#   scripts/bench-reference.sh              # default model, 2 threads, 128 generated tokens
#   THREADS=4 GEN=256 REPS=5 scripts/bench-reference.sh
#   PORTABLE=1 scripts/bench-reference.sh   # also a build without target-cpu=native (ggml defaults)
#   LLAMA_BENCH=/path/to/llama-bench scripts/bench-reference.sh   # use an existing llama-bench
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL="${MODEL:-${LLMTOP_DATA_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/llmtop}/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
THREADS="${THREADS:-$(nproc)}"
GEN="${GEN:-128}"
REPS="${REPS:-5}"
TARGET="${CARGO_TARGET_DIR:-target}"
OUT="${OUT:-$TARGET/bench-reference}"
mkdir -p "$OUT"

SYS_DIR=$(cargo metadata --format-version 1 | python3 -c '
import json, os, sys
m = json.load(sys.stdin)
print(next(os.path.dirname(p["manifest_path"]) for p in m["packages"] if p["name"] == "llama-cpp-sys-2"))')
if [ -z "${LLAMA_BENCH:-}" ]; then
TREE="$OUT/llama.cpp-src"
LCP_VERSION="0.3.36"
if [ ! -f "$TREE/tools/llama-bench/llama-bench.cpp" ]; then
    echo "reference: llama.cpp library from $SYS_DIR, llama-bench from llama-cpp-python $LCP_VERSION"
    rm -rf "$TREE" "$OUT/sdist" && mkdir -p "$OUT/sdist"
    cp -r "$SYS_DIR/llama.cpp" "$TREE" && chmod -R u+w "$TREE"
    python3 -m pip download --quiet --no-deps --no-binary :all: "llama-cpp-python==$LCP_VERSION" -d "$OUT/sdist"
    tar -xzf "$OUT/sdist/llama_cpp_python-$LCP_VERSION.tar.gz" -C "$OUT/sdist" \
        "llama_cpp_python-$LCP_VERSION/vendor/llama.cpp/tools/llama-bench"
    cp "$OUT/sdist/llama_cpp_python-$LCP_VERSION/vendor/llama.cpp/tools/llama-bench/"* "$TREE/tools/llama-bench/"
    printf 'llama_add_compile_flags()\nadd_subdirectory(llama-bench)\n' >"$TREE/tools/CMakeLists.txt"
fi
cmake -S "$TREE" -B "$OUT/llama.cpp" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DGGML_OPENMP=ON \
    -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
    -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_APP=OFF -DBUILD_SHARED_LIBS=OFF >"$OUT/cmake.log"
cmake --build "$OUT/llama.cpp" --target llama-bench -j "$(nproc)" >>"$OUT/cmake.log"
LLAMA_BENCH="$OUT/llama.cpp/bin/llama-bench"
fi

cargo build --release --quiet
BINS=("$TARGET/release/llmtop")
if [ "${PORTABLE:-0}" = 1 ]; then
    # RUSTFLAGS replaces .cargo/config.toml's target-cpu=native; llama-cpp-sys-2 then sets
    # GGML_NATIVE=OFF and ggml falls back to its defaults (AVX, AVX2, FMA, F16C, BMI2).
    RUSTFLAGS="-C target-cpu=x86-64" cargo build --release --quiet --target-dir "$TARGET/portable"
    BINS+=("$TARGET/portable/release/llmtop")
fi

# A prompt long enough for a stable prefill figure (about 500 tokens with the chat template).
PROMPT="$(python3 -c 'print("Summarise the following notes in one sentence. " + "The lighthouse keeper climbed the stairs at dusk, trimmed the wick and watched the ships pass. " * 28)')"

NAMES=(native portable)
for i in "${!BINS[@]}"; do
    "${BINS[$i]}" bench --model "$MODEL" --threads "$THREADS" --reps "$REPS" --max-tokens "$GEN" \
        --prompt "$PROMPT" --json "$OUT/llmtop-${NAMES[$i]}.json" --no-idle >/dev/null
done
LLMTOP_JSON="$OUT/llmtop-native.json"
P=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["runs"][0]["prompt_tokens"])' "$LLMTOP_JSON")

"$LLAMA_BENCH" -m "$MODEL" -t "$THREADS" -p "$P" -n 0 -r "$REPS" -o json >"$OUT/llama-bench-pp.json" 2>"$OUT/llama-bench.log"
"$LLAMA_BENCH" -m "$MODEL" -t "$THREADS" -p 0 -n "$GEN" -d "$P" -r "$REPS" -o json >"$OUT/llama-bench-tg.json" 2>>"$OUT/llama-bench.log"

python3 - "$OUT" "$P" "$GEN" "$THREADS" "${PORTABLE:-0}" <<'PY'
import json, statistics, sys
out, p, gen, threads, portable = sys.argv[1:]
def llmtop(name):
    d = json.load(open(f"{out}/llmtop-{name}.json"))
    runs = d["runs"]
    return (statistics.median(r["prefill_tok_s"] for r in runs),
            statistics.median(r["gen_tok_s"] for r in runs),
            statistics.median(r["gen_wall_tok_s"] for r in runs),
            min(r["generated_tokens"] for r in runs))
pp = json.load(open(f"{out}/llama-bench-pp.json"))[0]
tg = json.load(open(f"{out}/llama-bench-tg.json"))[0]
ref_pp, ref_tg = pp["avg_ts"], tg["avg_ts"]
l_pp, l_tg, l_wall, l_min = llmtop("native")
print(f"model {pp['model_type']}, {threads} threads, prompt {p} tokens, {gen} generated (min {l_min}), build {pp['build_commit']}")
print(f"{'':34}{'tok/s':>10}{'ratio':>9}")
print(f"{'llama-bench pp'+p:34}{ref_pp:>10.1f}{1:>9.3f}")
print(f"{'llmtop prefill':34}{l_pp:>10.1f}{l_pp/ref_pp:>9.3f}")
print(f"{'llama-bench tg'+gen+' @ depth '+p:34}{ref_tg:>10.1f}{1:>9.3f}")
print(f"{'llmtop generation (llama.cpp perf)':34}{l_tg:>10.1f}{l_tg/ref_tg:>9.3f}")
print(f"{'llmtop generation (wall clock)':34}{l_wall:>10.1f}{l_wall/ref_tg:>9.3f}")
if portable == "1":
    q_pp, q_tg, q_wall, _ = llmtop("portable")
    print(f"{'llmtop prefill, default flags':34}{q_pp:>10.1f}{q_pp/ref_pp:>9.3f}")
    print(f"{'llmtop generation, default flags':34}{q_tg:>10.1f}{q_tg/ref_tg:>9.3f}")
PY
