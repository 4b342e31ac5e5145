# Sourced by scripts/test.sh and scripts/run.sh: compile llama.cpp through ccache when it is
# installed. Cargo keeps the build script's output apart for check builds (clippy) and normal
# builds (test), so llama.cpp's C++ is compiled twice per clean build; the second time is a
# cache hit (about 6 minutes saved on a 2-core machine). Paths are made relative (base dir /)
# so the two build directories share entries.
if command -v ccache >/dev/null 2>&1; then
    export CMAKE_C_COMPILER_LAUNCHER=ccache CMAKE_CXX_COMPILER_LAUNCHER=ccache
    export CCACHE_BASEDIR=/ CCACHE_NOHASHDIR=true
fi
