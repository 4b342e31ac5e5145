# Sourced by scripts/run.sh: pick the llama.cpp backend to build (cpu, cuda, vulkan, metal)
# from what this machine has, and print which and why. Sets LLMTOP_FEATURE (the cargo
# feature, empty for cpu), LLMTOP_BUILD_CHOICE and LLMTOP_BUILD_WHY.
#
#   cuda    an NVIDIA driver (nvidia-smi, or /proc/driver/nvidia/version) and nvcc (on PATH,
#           or $CUDA_HOME/bin, else /usr/local/cuda/bin)
#   metal   macOS
#   vulkan  Vulkan headers new enough for this llama.cpp (vulkan_core.h defines
#           VK_EXT_layer_settings; Debian 12's 1.3.239 does not, and ggml-vulkan fails to
#           compile with it) and glslc, the shader compiler ggml-vulkan needs
#   cpu     otherwise
#
# LLMTOP_BUILD=cpu|cuda|vulkan|metal overrides the choice. Where tools live can be pointed
# elsewhere: LLMTOP_NVIDIA_PROC (the driver's version file), CUDA_HOME, VULKAN_SDK and
# LLMTOP_VULKAN_INCLUDE (space-separated include dirs; default /usr/include /usr/local/include).

llmtop_nvidia_driver() {
    # Prints the driver version (and GPU name) when an NVIDIA driver is loaded.
    local out proc="${LLMTOP_NVIDIA_PROC:-/proc/driver/nvidia/version}"
    if command -v nvidia-smi >/dev/null 2>&1; then
        if out="$(nvidia-smi --query-gpu=driver_version,name --format=csv,noheader 2>/dev/null)" && [ -n "$out" ]; then
            echo "driver $(echo "$out" | head -n 1 | sed 's/, */, /')"
            return 0
        fi
    fi
    if [ -r "$proc" ]; then
        out="$(grep -o 'Kernel Module  *[0-9][0-9.]*' "$proc" 2>/dev/null | head -n 1 | sed 's/Kernel Module  */driver /')"
        echo "${out:-driver (version unknown)} from $proc"
        return 0
    fi
    return 1
}

llmtop_nvcc() {
    local c
    if c="$(command -v nvcc 2>/dev/null)"; then
        echo "$c"
        return 0
    fi
    c="${CUDA_HOME:-${CUDA_PATH:-/usr/local/cuda}}/bin/nvcc"
    if [ -x "$c" ]; then
        echo "$c"
        return 0
    fi
    return 1
}

# Prints "DIR VERSION yes|no" for the first vulkan_core.h found (yes: has VK_EXT_layer_settings).
llmtop_vulkan_headers() {
    local dirs d h v
    dirs="${LLMTOP_VULKAN_INCLUDE:-/usr/include /usr/local/include}"
    if [ -n "${VULKAN_SDK:-}" ]; then dirs="$VULKAN_SDK/include $dirs"; fi
    for d in $dirs; do
        h="$d/vulkan/vulkan_core.h"
        [ -r "$h" ] || continue
        v="$(sed -n 's/^#define VK_HEADER_VERSION_COMPLETE VK_MAKE_API_VERSION(0, *\([0-9]*\), *\([0-9]*\), *VK_HEADER_VERSION).*/\1.\2/p' "$h" | head -n 1)"
        v="${v:-1.x}.$(sed -n 's/^#define VK_HEADER_VERSION  *\([0-9][0-9]*\).*/\1/p' "$h" | head -n 1)"
        if grep -q 'VK_EXT_layer_settings' "$h"; then
            echo "$d $v yes"
        else
            echo "$d $v no"
        fi
        return 0
    done
    return 1
}

llmtop_pick_build() {
    local drv nvcc vk dir ver ok notes=()
    case "${LLMTOP_BUILD:-}" in
        "") ;;
        cpu | cuda | vulkan | metal)
            LLMTOP_BUILD_CHOICE="$LLMTOP_BUILD"
            LLMTOP_BUILD_WHY="LLMTOP_BUILD=$LLMTOP_BUILD set; detection skipped"
            return 0
            ;;
        *)
            echo "llmtop build: LLMTOP_BUILD=$LLMTOP_BUILD is not a build; use cpu, cuda, vulkan or metal, or unset it to detect" >&2
            return 2
            ;;
    esac
    if [ "$(uname -s 2>/dev/null)" = "Darwin" ]; then
        LLMTOP_BUILD_CHOICE=metal
        LLMTOP_BUILD_WHY="macOS: Apple GPU through Metal"
        return 0
    fi
    if drv="$(llmtop_nvidia_driver)"; then
        if nvcc="$(llmtop_nvcc)"; then
            LLMTOP_BUILD_CHOICE=cuda
            LLMTOP_BUILD_WHY="NVIDIA $drv; nvcc at $nvcc"
            return 0
        fi
        notes+=("NVIDIA $drv but no nvcc: install the CUDA toolkit (apt-get install nvidia-cuda-toolkit) for the GPU build")
    else
        notes+=("no NVIDIA driver")
    fi
    if vk="$(llmtop_vulkan_headers)"; then
        read -r dir ver ok <<<"$vk"
        if [ "$ok" = yes ]; then
            if command -v glslc >/dev/null 2>&1; then
                LLMTOP_BUILD_CHOICE=vulkan
                LLMTOP_BUILD_WHY="${notes[*]}; Vulkan headers $ver in $dir have VK_EXT_layer_settings; glslc found"
                return 0
            fi
            notes+=("Vulkan headers $ver in $dir but no glslc: install glslc (apt-get install glslc) for the Vulkan build")
        else
            notes+=("Vulkan headers $ver in $dir lack VK_EXT_layer_settings, too old for this llama.cpp (install newer ones, e.g. the LunarG SDK, and set VULKAN_SDK)")
        fi
    else
        notes+=("no Vulkan headers")
    fi
    LLMTOP_BUILD_CHOICE=cpu
    local IFS=";"
    LLMTOP_BUILD_WHY="$(echo "${notes[*]}" | sed 's/;/; /g')"
    return 0
}

# Called by scripts/run.sh for a cuda build: what llama-cpp-sys-2 0.1.160's CUDA build needs
# that the crate does not pass, as environment for cargo. Prints one line per decision.
#   - The toolkit: nvcc's folder is the toolkit root (CUDACXX, CUDA_PATH, CUDAToolkit_ROOT),
#     also for one assembled from PyPI wheels (scripts/cuda-build.sh).
#   - The GPU architecture: with target-cpu=native the crate turns GGML_NATIVE on, and ggml
#     then asks CMake for CUDA_ARCHITECTURES=native, which fails where no GPU is visible.
#     LLMTOP_CUDA_ARCHS (e.g. 90 for H100) is passed as CMAKE_CUDA_ARCHITECTURES through
#     scripts/cmake-defines.sh; without a driver it is required.
#   - Static or shared: the crate links cudart/cuBLAS statically (libcublas_static.a), which
#     the PyPI wheels do not ship. Without it llama.cpp is built as shared libraries
#     (LLAMA_BUILD_SHARED_LIBS=1) that the binary finds beside itself (rpath $ORIGIN), and
#     they find the toolkit's libraries through their own rpath.
llmtop_cuda_env() {
    local nvcc tk lib="" stubs="" d
    if ! nvcc="$(llmtop_nvcc)"; then
        echo "llmtop build: no nvcc on PATH, in \$CUDA_HOME/bin or /usr/local/cuda/bin; install the CUDA toolkit or run scripts/cuda-build.sh" >&2
        return 1
    fi
    tk="$(cd "$(dirname "$nvcc")/.." && pwd)"
    export PATH="$(dirname "$nvcc"):$PATH" CUDACXX="$nvcc" CUDAToolkit_ROOT="$tk"
    export CUDA_PATH="${CUDA_PATH:-$tk}"
    LLMTOP_CMAKE_DEFINES="${LLMTOP_CMAKE_DEFINES:-}"
    if [ -n "${LLMTOP_CUDA_ARCHS:-}" ]; then
        LLMTOP_CMAKE_DEFINES="$LLMTOP_CMAKE_DEFINES -DCMAKE_CUDA_ARCHITECTURES=$LLMTOP_CUDA_ARCHS"
        echo "llmtop build: CUDA architectures $LLMTOP_CUDA_ARCHS (LLMTOP_CUDA_ARCHS)"
    elif llmtop_nvidia_driver >/dev/null; then
        echo "llmtop build: CUDA architectures: the GPUs of this machine (native); LLMTOP_CUDA_ARCHS overrides"
    else
        echo "llmtop build: no NVIDIA GPU here to compile for (ggml asks for CUDA_ARCHITECTURES=native); set LLMTOP_CUDA_ARCHS, e.g. 90 (H100/H200), 89 (RTX 40xx, L4), 86 (RTX 30xx, A10), 80 (A100)" >&2
        return 2
    fi
    for d in "$tk/lib64" "$tk/lib" "$tk/targets/x86_64-linux/lib"; do
        if [ -z "$lib" ] && { [ -e "$d/libcudart.so" ] || [ -e "$d/libcudart_static.a" ]; }; then lib="$d"; fi
    done
    for d in "$tk/lib64/stubs" "$tk/lib/stubs" "$tk/targets/x86_64-linux/lib/stubs"; do
        if [ -z "$stubs" ] && [ -e "$d/libcuda.so" ]; then stubs="$d"; fi
    done
    local flags="${RUSTFLAGS:--C target-cpu=native}"
    if [ -n "$lib" ] && [ -e "$lib/libcublas_static.a" ] && [ -z "${LLAMA_BUILD_SHARED_LIBS:-}" ]; then
        echo "llmtop build: CUDA toolkit $tk, linked statically (cudart, cuBLAS)"
    else
        export LLAMA_BUILD_SHARED_LIBS=1
        flags="$flags -C link-arg=-Wl,-rpath,\$ORIGIN"
        if [ -n "$lib" ]; then
            LLMTOP_CMAKE_DEFINES="$LLMTOP_CMAKE_DEFINES -DCMAKE_INSTALL_RPATH=$lib"
            flags="$flags -C link-arg=-Wl,-rpath-link,$lib"
        fi
        echo "llmtop build: CUDA toolkit $tk has no static cuBLAS (the PyPI wheels ship none): llama.cpp as shared libraries beside the binary"
    fi
    # The driver library is needed to link, not to build: a toolkit's stub stands in for it.
    if [ -n "$stubs" ]; then flags="$flags -C link-arg=-Wl,-rpath-link,$stubs"; fi
    export RUSTFLAGS="$flags" LLMTOP_CMAKE_DEFINES
    export CMAKE="$PWD/scripts/cmake-defines.sh"
    return 0
}

llmtop_pick_build || exit $?
case "$LLMTOP_BUILD_CHOICE" in
    cpu) LLMTOP_FEATURE="" ;;
    *) LLMTOP_FEATURE="$LLMTOP_BUILD_CHOICE" ;;
esac
echo "llmtop build: $LLMTOP_BUILD_CHOICE ($LLMTOP_BUILD_WHY)"
if [ "$LLMTOP_BUILD_CHOICE" != cpu ] || [ -n "${LLMTOP_BUILD:-}" ]; then
    echo "llmtop build: set LLMTOP_BUILD=cpu|cuda|vulkan|metal to choose another"
else
    echo "llmtop build: set LLMTOP_BUILD=cuda|vulkan|metal to force a GPU build"
fi
