"""Hearth's downloader against curl, from the same local fake Hub, in the same run.

A 1 GB sparse GGUF-named file (zeros; no disk used on the server side) is served by
tests/fakehub.py in a separate process with no fault switches (sendfile). Each round
downloads it once with curl (`curl -sSL -o`, following the Hub's redirect) and once with
Hearth's DownloadManager (Range-capable GET, SHA-256 hashed while writing and verified, then
moved into place), alternating which goes first, after one untimed warm-up round; the output
file is deleted after each. A third row is what a careful curl user runs to get the same
guarantee: curl, then sha256sum. Reports the median MB/s, wall time and CPU time (user+sys of
the child processes for curl, of this process for Hearth) and the ratio to plain curl. The OS
file cache stays warm (dropping it needs root).

    .venv/bin/python bench/download_throughput.py [--size-mb 1024] [--rounds 5]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REPO, NAME = "bench/Sparse-GGUF", "Sparse-F16.gguf"
MB = 1_000_000


def _serve(conn, root: str, size: int) -> None:
    """Child process: a fake Hub with one sparse file; runs until the parent says stop."""
    from tests.fakehub import FakeHub

    hub = FakeHub(Path(root)).start()
    hub.add_repo(REPO, {NAME: size})
    conn.send(hub.url)
    conn.recv()
    hub.stop()


def _cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_curl(url: str, dest: Path, sha256: str | None = None) -> tuple[float, float]:
    cpu0, t0 = _cpu_children(), time.perf_counter()
    subprocess.run(["curl", "-sSL", "--fail", "-o", str(dest), url], check=True)
    if sha256:
        out = subprocess.run(["sha256sum", str(dest)], check=True, capture_output=True, text=True)
        assert out.stdout.split()[0] == sha256
    return time.perf_counter() - t0, _cpu_children() - cpu0


def run_hearth(request, dest: Path) -> tuple[float, float]:
    from app.engine import downloads as dl

    manager = dl.DownloadManager()
    try:
        cpu0, t0 = _cpu_self(), time.perf_counter()
        did = manager.enqueue(dl.request_with_dest(request, dest.parent))
        state = manager.wait(did)
        wall, cpu = time.perf_counter() - t0, _cpu_self() - cpu0
    finally:
        manager.close()
    if state is None or state.status != "completed":
        raise SystemExit(f"Hearth's download failed: {state and state.message}")
    return wall, cpu


def _curl_version() -> str:
    out = subprocess.run(["curl", "--version"], capture_output=True, text=True).stdout
    return out.split("\n", 1)[0].split(" (")[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mb", type=int, default=1024, help="file size in MiB (default 1024)")
    ap.add_argument("--rounds", type=int, default=5, help="downloads per tool (median shown)")
    args = ap.parse_args()
    if not shutil.which("curl"):
        raise SystemExit("curl is not installed (apt-get install curl)")
    size = args.size_mb << 20

    with tempfile.TemporaryDirectory(prefix="hearth-bench-") as tmp:
        tmp_path = Path(tmp)
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        server = ctx.Process(target=_serve, args=(child, str(tmp_path / "hub"), size))
        server.start()
        try:
            url = parent.recv()
            os.environ["HF_ENDPOINT"] = url
            from app.engine import downloads as dl
            from app.engine import hub

            details = hub.repo_details(REPO, machine=hub.Machine(1 << 40, 1 << 40))
            (entry,) = details.models
            request = dl.DownloadRequest.for_entry(details, entry)
            resolve = f"{url}/{REPO}/resolve/{details.sha}/{NAME}"
            sha = entry.files[0].sha256
            tools = {
                "curl": lambda dest: run_curl(resolve, dest),
                "curl+sha256sum": lambda dest: run_curl(resolve, dest, sha),
                "Hearth": lambda dest: run_hearth(request, dest),
            }
            results: dict[str, list[tuple[float, float]]] = {t: [] for t in tools}
            for i in range(args.rounds + 1):  # round 0 warms up and is not counted
                order = list(tools) if i % 2 == 0 else list(reversed(tools))
                for tool in order:
                    dest = tmp_path / f"out-{tool}" / NAME
                    dest.parent.mkdir(exist_ok=True)
                    wall, cpu = tools[tool](dest)
                    assert dest.stat().st_size == size
                    dest.unlink()
                    if i:
                        results[tool].append((wall, cpu))
                    print(f"round {i} {tool:<15} {size / MB / wall:6.0f} MB/s", file=sys.stderr)
        finally:
            parent.send("stop")
            server.join(10)
    _table(results, size, args)
    return 0


def _table(results, size: int, args) -> None:
    med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v))
           for k, v in results.items()}  # fmt: skip
    print(f"Download of a {size / MB:,.0f} MB file from a local fake Hub (loopback, sparse "
          f"file served with sendfile), median of {args.rounds} rounds; "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}, {_curl_version()}.\n")  # fmt: skip
    print("| downloader | MB/s | wall time | CPU time (user+sys) | vs curl |")
    print("|---|---:|---:|---:|---:|")
    curl_speed = size / med["curl"][0]
    names = {
        "curl": "curl -sSL -o (no check)",
        "curl+sha256sum": "curl, then sha256sum",
        "Hearth": "Hearth DownloadManager (SHA-256 while writing)",
    }
    for tool, what in names.items():
        wall, cpu = med[tool]
        speed = size / wall
        print(f"| {what} | {speed / MB:,.0f} | {wall:.2f} s | {cpu:.2f} s "
              f"| {speed / curl_speed:.2f}× |")  # fmt: skip
    cmd = " ".join(["bench/download_throughput.py", *sys.argv[1:]])
    print(f"\n`.venv/bin/python {cmd}`")


if __name__ == "__main__":
    sys.exit(main())
