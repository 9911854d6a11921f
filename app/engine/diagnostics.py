"""What to say about this installation in About and in a crash report: Hearth's version,
llama.cpp's (the llama-cpp-python release that vendors it) and its GPU backend, the OS and
the GPUs. Read from disk and NVML without importing llama_cpp (the window must not load it).
"""

from __future__ import annotations

import platform
import sys
from importlib import metadata

from app.engine import hardware


def llama_cpp_version() -> str:
    """The installed llama-cpp-python release ("0.3.36"), or a sentence when it is missing."""
    try:
        return metadata.version("llama_cpp_python")
    except metadata.PackageNotFoundError:
        return "not installed"


def backend() -> str:
    """The GPU backend llama.cpp was built with ("CUDA", "Vulkan", ...), or "CPU only"."""
    found = hardware.llama_gpu_backend()
    return found.upper() if found in ("cuda", "hip", "sycl") else (found or "CPU only").title()


def about_rows(
    system_info: str | None = None, qt_version: str | None = None
) -> list[tuple[str, str]]:
    """(label, value) rows for About and the diagnostics. `system_info` is what the worker's
    llama.cpp printed (its CPU features and backends); blocking: NVML is asked for GPUs."""
    from app import __version__

    gpus = hardware.gpus()
    rows = [
        ("Hearth", __version__),
        ("llama.cpp", f"llama-cpp-python {llama_cpp_version()}, backend: {backend()}"),
        ("Python", f"{platform.python_version()} ({sys.executable})"),
        ("OS", platform.platform()),
        ("GPU", ", ".join(f"{g.name} ({g.total / 2**30:.1f} GiB)" for g in gpus) or "none seen"),
    ]
    if qt_version:
        rows.insert(3, ("Qt", qt_version))
    if system_info:
        rows.append(("llama.cpp features", system_info))
    return rows


def report(rows: list[tuple[str, str]], error: str = "", recent: list[str] = (),
           log_file: str = "") -> str:  # fmt: skip
    """The text "Copy diagnostics" puts on the clipboard: plain, for an issue report."""
    width = max(len(label) for label, _ in rows)
    parts = ["Hearth diagnostics", *(f"{label:<{width}}  {value}" for label, value in rows)]
    if log_file:
        parts.append(f"{'Log file':<{width}}  {log_file}")
    if error:
        parts += ["", "Error:", error.rstrip()]
    if recent:
        parts += ["", f"Last {len(recent)} log lines:", *recent]
    return "\n".join(parts) + "\n"
