#!/usr/bin/env bash
# Hearth on a real GPU, in one go: VRAM against the estimate, tok/s against llama-bench
# -ngl 99, the monitor's VRAM series during a reply; one Markdown table (bench/gpu_check.py).
#
#   bench/gpu_check.sh [--wheel llama_cpp_python-0.3.36-...whl] [gpu_check.py options]
#
# Offline and under 10 minutes: it compiles nothing for the GPU. The llama.cpp it measures
# is the installed llama-cpp-python's, or --wheel's (a GPU build made elsewhere with
# HEARTH_GPU=cuda ./dev.sh setup, unpacked into a scratch folder, not installed).
# llama-bench is the CPU-built one cached in bench/.cache (built there in a few minutes
# when missing, unless --no-build), run on that wheel's libraries. Python: $PYTHON, else
# .venv/bin/python, else python3; it needs numpy, gguf, psutil and nvidia-ml-py besides
# llama_cpp (not PySide6: the engine is Qt-free).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

PY="${PYTHON:-}"
[ -n "$PY" ] || { [ -x .venv/bin/python ] && PY=.venv/bin/python; } || PY="$(command -v python3)"
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --wheel)
            scratch="$(mktemp -d)"
            trap 'rm -rf "$scratch"' EXIT
            "$PY" -m zipfile -e "$2" "$scratch" || { echo "cannot unpack $2" >&2; exit 2; }
            export PYTHONPATH="$scratch${PYTHONPATH:+:$PYTHONPATH}"
            shift ;;
        *) args+=("$1") ;;
    esac
    shift
done
# CUDA libraries from PyPI, where HEARTH_GPU=cuda ./dev.sh setup put them.
[ -d .venv/cuda-toolkit/lib64 ] && export LD_LIBRARY_PATH=".venv/cuda-toolkit/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
exec timeout 570 "$PY" bench/gpu_check.py "${args[@]}"
