#!/usr/bin/env bash
# llmtop bench against llama.cpp's own llama-bench, in one run, as a ratio.
#
# The reference is built from the very llama.cpp sources llmtop links (vendored in the
# llama-cpp-sys-2 crate, so the same revision), with the flags llama-cpp-sys-2 uses for a
# target-cpu=native build: Release, GGML_NATIVE=ON, OpenMP. Same model, same threads, same
# prompt length, and generation measured at the same context depth (llama-bench -d).
#
#   scripts/bench-reference.sh              # default model, 2 threads, 128 generated tokens
#   THREADS=4 GEN=256 REPS=5 scripts/bench-reference.sh
#   PORTABLE=1 scripts/bench-reference.sh   # also a build without target-cpu=native
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL="${MODEL:-${LLMTOP_DATA_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/llmtop}/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
THREADS="${THREADS:-$(nproc)}"
GEN="${GEN:-128}"
REPS="${REPS:-5}"
OUT="${OUT:-target/bench-reference}"
mkdir -p "$OUT"

SYS_DIR=$(cargo metadata --format-version 1 | python3 -c '
import json, os, sys
m = json.load(sys.stdin)
print(next(os.path.dirname(p["manifest_path"]) for p in m["packages"] if p["name"] == "llama-cpp-sys-2"))')
SRC="$SYS_DIR/llama.cpp"
echo "reference: llama.cpp from $SRC"

cmake -S "$SRC" -B "$OUT/llama.cpp" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DGGML_OPENMP=ON \
    -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
    -DLLAMA_BUILD_TOOLS=ON -DBUILD_SHARED_LIBS=OFF >"$OUT/cmake.log"
cmake --build "$OUT/llama.cpp" --target llama-bench -j "$(nproc)" >>"$OUT/cmake.log"
LLAMA_BENCH="$OUT/llama.cpp/bin/llama-bench"

cargo build --release --quiet
BINS=("target/release/llmtop")
if [ "${PORTABLE:-0}" = 1 ]; then
    # RUSTFLAGS replaces .cargo/config.toml's target-cpu=native: baseline x86-64 (SSE2 only
    # for llama.cpp's kernels, as llama-cpp-sys-2 maps Rust target features to GGML flags).
    RUSTFLAGS="-C target-cpu=x86-64" cargo build --release --quiet --target-dir target/portable
    BINS+=("target/portable/release/llmtop")
fi

# A prompt long enough for a stable prefill figure (about 500 tokens with the chat template).
PROMPT="$(python3 -c 'print("Summarise the following notes in one sentence. " + "The lighthouse keeper climbed the stairs at dusk, trimmed the wick and watched the ships pass. " * 28)')"

for BIN in "${BINS[@]}"; do
    $BIN bench --model "$MODEL" --threads "$THREADS" --reps "$REPS" --max-tokens "$GEN" \
        --prompt "$PROMPT" --json "$OUT/$(basename "$(dirname "$(dirname "$BIN")")").json" >/dev/null
done
LLMTOP_JSON="$OUT/target.json"
P=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["runs"][0]["prompt_tokens"])' "$LLMTOP_JSON")

"$LLAMA_BENCH" -m "$MODEL" -t "$THREADS" -p "$P" -n 0 -r "$REPS" -o json >"$OUT/llama-bench-pp.json" 2>"$OUT/llama-bench.log"
"$LLAMA_BENCH" -m "$MODEL" -t "$THREADS" -p 0 -n "$GEN" -d "$P" -r "$REPS" -o json >"$OUT/llama-bench-tg.json" 2>>"$OUT/llama-bench.log"

python3 - "$OUT" "$P" "$GEN" "$THREADS" "${PORTABLE:-0}" <<'PY'
import json, statistics, sys
out, p, gen, threads, portable = sys.argv[1:]
def llmtop(name):
    d = json.load(open(f"{out}/{name}.json"))
    runs = d["runs"]
    return (statistics.median(r["prefill_tok_s"] for r in runs),
            statistics.median(r["gen_tok_s"] for r in runs),
            statistics.median(r["gen_wall_tok_s"] for r in runs),
            min(r["generated_tokens"] for r in runs))
pp = json.load(open(f"{out}/llama-bench-pp.json"))[0]
tg = json.load(open(f"{out}/llama-bench-tg.json"))[0]
ref_pp, ref_tg = pp["avg_ts"], tg["avg_ts"]
l_pp, l_tg, l_wall, l_min = llmtop("target")
print(f"model {pp['model_type']}, {threads} threads, prompt {p} tokens, {gen} generated (min {l_min}), build {pp['build_commit']}")
print(f"{'':34}{'tok/s':>10}{'ratio':>9}")
print(f"{'llama-bench pp'+p:34}{ref_pp:>10.1f}{1:>9.3f}")
print(f"{'llmtop prefill':34}{l_pp:>10.1f}{l_pp/ref_pp:>9.3f}")
print(f"{'llama-bench tg'+gen+' @ depth '+p:34}{ref_tg:>10.1f}{1:>9.3f}")
print(f"{'llmtop generation (llama.cpp perf)':34}{l_tg:>10.1f}{l_tg/ref_tg:>9.3f}")
print(f"{'llmtop generation (wall clock)':34}{l_wall:>10.1f}{l_wall/ref_tg:>9.3f}")
if portable == "1":
    q_pp, q_tg, q_wall, _ = llmtop("portable")
    print(f"{'llmtop prefill, portable build':34}{q_pp:>10.1f}{q_pp/ref_pp:>9.3f}")
    print(f"{'llmtop generation, portable build':34}{q_tg:>10.1f}{q_tg/ref_tg:>9.3f}")
PY
