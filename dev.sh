#!/usr/bin/env bash
# Hearth from source, in two commands:
#   ./dev.sh run [ARGS]    set up .venv if needed, then start Hearth (ARGS go to `hearth`)
#   ./dev.sh test [ARGS]   set up .venv if needed, then run the whole test suite (ARGS go to pytest)
#
# Set-up builds llama-cpp-python from source once, with CMAKE_ARGS="-DGGML_NATIVE=OFF"
# (a native build crashes on some CPUs in the AMX kernels on quantized models), keeps the
# wheel in .wheels/ and re-uses it afterwards. Set HEARTH_CMAKE_ARGS to build with other
# flags (e.g. "-DGGML_CUDA=ON"); a change of flags rebuilds the wheel.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

LLAMA_VERSION="0.3.36"
CMAKE_FLAGS="${HEARTH_CMAKE_ARGS:--DGGML_NATIVE=OFF}"
VENV="$here/.venv"
WHEELS="$here/.wheels"

say() { printf '\033[1mhearth:\033[0m %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

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

build_llama_wheel() {
    local stamp="$WHEELS/CMAKE_ARGS"
    if [ -n "$(llama_wheel)" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$CMAKE_FLAGS" ]; then
        return 0
    fi
    rm -rf "$WHEELS"
    mkdir -p "$WHEELS"
    say "building llama-cpp-python $LLAMA_VERSION with CMAKE_ARGS=\"$CMAKE_FLAGS\" (once; 6-11 min on 2 cores)"
    CMAKE_ARGS="$CMAKE_FLAGS" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc 2>/dev/null || echo 2)" \
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
case "$cmd" in
    run)
        ensure_env
        ensure_qt_libraries xcb
        exec "$VENV/bin/hearth" "$@"
        ;;
    test)
        ensure_env
        ensure_qt_libraries offscreen
        export QT_QPA_PLATFORM="${QT_QPA_PLATFORM:-offscreen}"
        exec "$VENV/bin/python" -m pytest "$@"
        ;;
    setup)
        ensure_env
        ensure_qt_libraries xcb
        ensure_qt_libraries offscreen
        ;;
    *)
        echo "usage: ./dev.sh run [hearth args] | ./dev.sh test [pytest args] | ./dev.sh setup" >&2
        exit 2
        ;;
esac
