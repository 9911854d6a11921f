#!/usr/bin/env bash
# Hearth from source, in two commands:
#   ./dev.sh run [ARGS]    set up .venv if needed, then start Hearth (ARGS go to `hearth`)
#   ./dev.sh test [ARGS]   set up .venv if needed, then run the whole test suite (ARGS go to pytest)
#   ./dev.sh setup         only set up .venv
#   ./dev.sh flags         print the CMake flags llama.cpp would be built with, and exit
#
# Set-up builds llama-cpp-python from source once, with
# CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_RPC=ON" (a native build crashes on some CPUs in the AMX
# kernels on quantized models; RPC gives remote devices and `hearth rpc-serve`), keeps the
# wheel in .wheels/<flags>/ and re-uses it afterwards; each set of flags keeps its own wheel.
#
# HEARTH_GPU picks a GPU backend (any of them builds on a machine without a GPU):
#   cuda     -DGGML_CUDA=ON for CMAKE_CUDA_ARCHITECTURES=$HEARTH_CUDA_ARCHITECTURES, else the
#            local GPUs' (nvidia-smi), else a list of common ones; nvcc from the system
#            (PATH, else $CUDA_HOME, default /usr/local/cuda), else NVIDIA's CUDA 12 wheels from PyPI
#            installed into .venv
#   vulkan   -DGGML_VULKAN=ON, with Debian's libvulkan-dev, glslc and spirv-headers
# HEARTH_CMAKE_ARGS, when set, replaces all of these flags.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

LLAMA_VERSION="0.3.36"
VENV="$here/.venv"
# Turing, Ampere (A100; RTX 30), Ada (RTX 40), Hopper: what a build for "any recent card" has.
CUDA_ARCHITECTURES_DEFAULT="75;80;86;89;90"
CUDA_WHEELS="nvidia-cuda-nvcc-cu12 nvidia-cuda-runtime-cu12 nvidia-cublas-cu12 nvidia-cuda-cccl-cu12"
CUDA_TREE="$VENV/cuda-toolkit"  # the PyPI toolkit laid out as one CUDA_HOME

say() { printf '\033[1mhearth:\033[0m %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

# The compute capabilities to build for: HEARTH_CUDA_ARCHITECTURES, else the local GPUs'
# (nvidia-smi prints "8.9" per card), else the common list.
cuda_architectures() {
    if [ -n "${HEARTH_CUDA_ARCHITECTURES:-}" ]; then
        echo "$HEARTH_CUDA_ARCHITECTURES"
        return 0
    fi
    local caps=""
    if command -v nvidia-smi >/dev/null 2>&1; then
        caps="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null \
            | tr -d ' .\r' | grep -E '^[0-9]+$' | sort -un | paste -sd ';' || true)"
    fi
    echo "${caps:-$CUDA_ARCHITECTURES_DEFAULT}"
}

# nvcc of a system CUDA toolkit, if there is one.
system_nvcc() {
    local candidate
    for candidate in "$(command -v nvcc 2>/dev/null || true)" "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc"; do
        [ -n "$candidate" ] && [ -x "$candidate" ] && { echo "$candidate"; return 0; }
    done
    return 1
}

# The driver library llama.cpp's CUDA backend links for its VMM memory pool. A machine
# without the NVIDIA driver and without a system toolkit (whose stubs stand in) has none:
# that build goes without VMM (the older pool), which needs no libcuda.so to link.
have_libcuda() {
    system_nvcc >/dev/null && return 0
    { ldconfig -p 2>/dev/null || /sbin/ldconfig -p 2>/dev/null || true; } | grep -q 'libcuda\.so '
}

# The CMake flags llama-cpp-python is built with, from HEARTH_GPU (see the top).
cmake_flags() {
    if [ -n "${HEARTH_CMAKE_ARGS:-}" ]; then
        echo "$HEARTH_CMAKE_ARGS"
        return 0
    fi
    local flags="-DGGML_NATIVE=OFF -DGGML_RPC=ON"
    case "${HEARTH_GPU:-}" in
        "" | cpu) ;;
        cuda)
            flags="$flags -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=$(cuda_architectures)"
            have_libcuda || flags="$flags -DGGML_CUDA_NO_VMM=ON"
            ;;
        vulkan) flags="$flags -DGGML_VULKAN=ON" ;;
        *) die "HEARTH_GPU=${HEARTH_GPU} is not a backend Hearth builds: use cuda or vulkan, or leave it unset for the CPU" ;;
    esac
    echo "$flags"
}

find_python() {
    local candidate
    for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
        [ -n "$candidate" ] || continue
        command -v "$candidate" >/dev/null 2>&1 || continue
        if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

# Debian/Ubuntu packages a fresh machine may lack to build and install: a compiler for
# llama.cpp, and venv. Installed only when something is missing.
ensure_system_packages() {
    local missing=()
    command -v cc >/dev/null 2>&1 || missing+=(build-essential)
    command -v c++ >/dev/null 2>&1 || missing+=(g++)
    "$1" -c 'import ensurepip, venv' 2>/dev/null || missing+=("python3-venv")
    install_packages "${missing[@]}"
}

install_packages() {
    [ $# -eq 0 ] && return 0
    command -v apt-get >/dev/null 2>&1 || die "missing system packages ($*); install them with your package manager"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    say "installing system packages: $*"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

# The libraries Qt's platform plugin (xcb for the window, offscreen for the tests) loads
# from the system: whatever `ldd` finds missing, by Debian package (app/platform_libs.py,
# the same check the window makes before it opens).
ensure_qt_libraries() {
    [ "$(uname -s)" = Linux ] || return 0
    local packages
    packages="$("$VENV/bin/python" -m app.platform_libs packages "$1")" || return 0
    # shellcheck disable=SC2086  # one package a line
    install_packages $packages
}

llama_wheel() {
    ls "$WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl 2>/dev/null | head -n 1
}

# A CUDA toolkit for the build: the system's, else NVIDIA's wheels from PyPI laid out in
# $CUDA_TREE as one tree (bin and nvvm from nvcc; include and lib from all of them, with
# the unversioned .so links CMake's FindCUDAToolkit looks for).
ensure_cuda_toolkit() {
    local nvcc
    if nvcc="$(system_nvcc)"; then
        say "CUDA toolkit: $nvcc"
        export CUDACXX="$nvcc"
        return 0
    fi
    say "no CUDA toolkit found: installing NVIDIA's CUDA 12 compiler and libraries from PyPI into $VENV"
    # shellcheck disable=SC2086  # one package a word
    "$VENV/bin/python" -m pip install -q $CUDA_WHEELS >&2
    local nv pkg f
    nv="$("$VENV/bin/python" -c 'import nvidia; print(list(nvidia.__path__)[0])')"
    rm -rf "$CUDA_TREE"
    mkdir -p "$CUDA_TREE/include" "$CUDA_TREE/lib64"
    ln -s "$nv/cuda_nvcc/bin" "$CUDA_TREE/bin"
    ln -s "$nv/cuda_nvcc/nvvm" "$CUDA_TREE/nvvm"
    for pkg in cuda_nvcc cuda_runtime cublas cuda_cccl; do
        for f in "$nv/$pkg"/include/* "$nv/$pkg"/lib/*; do
            [ -e "$f" ] || continue
            case "$f" in
                */include/*) ln -sfn "$f" "$CUDA_TREE/include/" ;;
                *) ln -sfn "$f" "$CUDA_TREE/lib64/" ;;
            esac
        done
    done
    for f in "$CUDA_TREE"/lib64/lib*.so.*; do
        [ -e "$f" ] && ln -sfn "$(basename "$f")" "${f%%.so.*}.so"
    done
    export CUDACXX="$CUDA_TREE/bin/nvcc" CUDAToolkit_ROOT="$CUDA_TREE" CUDA_HOME="$CUDA_TREE"
}

# What HEARTH_GPU=vulkan builds with: the loader's headers, the shader compiler, and the
# SPIR-V headers' CMake package (ggml-vulkan's find_package(SPIRV-Headers CONFIG REQUIRED)).
ensure_vulkan_packages() {
    local missing=()
    command -v glslc >/dev/null 2>&1 || missing+=(glslc)
    [ -e /usr/include/vulkan/vulkan.h ] || missing+=(libvulkan-dev)
    [ -e /usr/share/cmake/SPIRV-Headers/SPIRV-HeadersConfig.cmake ] || missing+=(spirv-headers)
    install_packages "${missing[@]}"
    ensure_vulkan_headers
}

# llama.cpp's Vulkan backend uses VK_EXT_layer_settings, which Vulkan's headers have had
# since 1.3.272; Debian 12 ships 1.3.239 (Ubuntu 22.04 older still), and the build fails
# in ggml-vulkan.cpp. The headers alone are enough (the loader, libvulkan1, stays the
# system's), so where the system's are too old, Debian 13's libvulkan-dev is unpacked into
# .venv and CMake pointed at it (VULKAN_EXTRA_ARGS, not part of the wheel's flag set).
VULKAN_HEADERS="$VENV/vulkan-headers"
ensure_vulkan_headers() {
    VULKAN_EXTRA_ARGS=""
    grep -q VK_EXT_layer_settings /usr/include/vulkan/vulkan_core.h 2>/dev/null && return 0
    if ! grep -q VK_EXT_layer_settings "$VULKAN_HEADERS/usr/include/vulkan/vulkan_core.h" 2>/dev/null; then
        say "the system's Vulkan headers are older than llama.cpp needs: fetching Debian 13's libvulkan-dev (headers only) into $VULKAN_HEADERS"
        local tmp apt_opts
        tmp="$(mktemp -d)"
        mkdir -p "$tmp/lists/partial" "$tmp/archives/partial"
        echo "deb http://deb.debian.org/debian trixie main" >"$tmp/sources.list"
        apt_opts=(-o "Dir::Etc::SourceList=$tmp/sources.list" -o Dir::Etc::SourceParts=/dev/null
            -o "Dir::State::Lists=$tmp/lists" -o "Dir::Cache::Archives=$tmp/archives"
            -o APT::Sandbox::User=root -qq)
        apt-get "${apt_opts[@]}" update >&2 \
            && (cd "$tmp" && apt-get "${apt_opts[@]}" download libvulkan-dev >&2) \
            || die "could not download newer Vulkan headers; install Vulkan headers 1.3.272 or newer (e.g. from the LunarG SDK) and set HEARTH_CMAKE_ARGS"
        rm -rf "$VULKAN_HEADERS"
        dpkg-deb -x "$tmp"/libvulkan-dev_*.deb "$VULKAN_HEADERS"
        rm -rf "$tmp"
    fi
    VULKAN_EXTRA_ARGS="-DVulkan_INCLUDE_DIR=$VULKAN_HEADERS/usr/include"
}

# The PyPI CUDA libraries (if that is where the toolkit came from) for llama.cpp to load.
export_cuda_libraries() {
    [ -d "$CUDA_TREE/lib64" ] && export LD_LIBRARY_PATH="$CUDA_TREE/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    return 0
}

build_llama_wheel() {
    local stamp="$WHEELS/CMAKE_ARGS"
    local legacy="$here/.wheels"  # before wheels were kept per set of flags
    if [ -z "$(llama_wheel)" ] && [ "$(cat "$legacy/CMAKE_ARGS" 2>/dev/null)" = "$CMAKE_FLAGS" ] \
        && ls "$legacy"/llama_cpp_python-"$LLAMA_VERSION"-*.whl >/dev/null 2>&1; then
        mkdir -p "$WHEELS"
        mv "$legacy"/llama_cpp_python-"$LLAMA_VERSION"-*.whl "$legacy/CMAKE_ARGS" "$WHEELS/"
    fi
    if [ -n "$(llama_wheel)" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$CMAKE_FLAGS" ]; then
        return 0
    fi
    case "${HEARTH_GPU:-}" in
        cuda) ensure_cuda_toolkit ;;
        vulkan) ensure_vulkan_packages ;;
    esac
    rm -rf "$WHEELS"
    mkdir -p "$WHEELS"
    say "building llama-cpp-python $LLAMA_VERSION with CMAKE_ARGS=\"$CMAKE_FLAGS\" (once; 6-11 min on 2 cores for the CPU, far longer for CUDA)"
    CMAKE_ARGS="$CMAKE_FLAGS${VULKAN_EXTRA_ARGS:+ $VULKAN_EXTRA_ARGS}" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc 2>/dev/null || echo 2)" \
        "$VENV/bin/python" -m pip wheel --no-deps --no-cache-dir --no-binary llama-cpp-python \
        "llama-cpp-python==$LLAMA_VERSION" -w "$WHEELS" >&2
    echo "$CMAKE_FLAGS" >"$stamp"
}

ensure_env() {
    local python
    python="$(find_python)" || die "Hearth needs Python 3.11 or newer (set PYTHON=/path/to/python3.11)"
    ensure_system_packages "$python"
    if [ ! -x "$VENV/bin/python" ]; then
        say "creating $VENV with $python"
        "$python" -m venv "$VENV"
        "$VENV/bin/python" -m pip install -q --upgrade pip wheel >&2
    fi
    build_llama_wheel
    # Re-install only when the project's dependencies or the wheel changed.
    local want have
    want="$(cat pyproject.toml "$WHEELS/CMAKE_ARGS" | sha256sum | cut -c1-16) $(basename "$(llama_wheel)")"
    have="$(cat "$VENV/.hearth-installed" 2>/dev/null || true)"
    if [ "$want" != "$have" ]; then
        say "installing Hearth and its dependencies into $VENV"
        "$VENV/bin/python" -m pip install -q --force-reinstall --no-deps "$(llama_wheel)" >&2
        "$VENV/bin/python" -m pip install -q --find-links "$WHEELS" -e ".[test]" >&2
        echo "$want" >"$VENV/.hearth-installed"
    fi
}

cmd="${1:-}"
[ $# -gt 0 ] && shift
CMAKE_FLAGS="$(cmake_flags)"
# One folder per set of flags: going back to the CPU build after a CUDA one rebuilds nothing.
WHEELS="$here/.wheels/$(printf '%s' "$CMAKE_FLAGS" | sha256sum | cut -c1-12)"
case "$cmd" in
    flags)
        echo "$CMAKE_FLAGS"
        ;;
    run)
        ensure_env
        ensure_qt_libraries xcb
        export_cuda_libraries
        exec "$VENV/bin/hearth" "$@"
        ;;
    test)
        ensure_env
        ensure_qt_libraries offscreen
        export_cuda_libraries
        export QT_QPA_PLATFORM="${QT_QPA_PLATFORM:-offscreen}"
        exec "$VENV/bin/python" -m pytest "$@"
        ;;
    setup)
        ensure_env
        ensure_qt_libraries xcb
        ensure_qt_libraries offscreen
        ;;
    *)
        echo "usage: [HEARTH_GPU=cuda|vulkan] ./dev.sh run [hearth args] | test [pytest args] | setup | flags" >&2
        exit 2
        ;;
esac
