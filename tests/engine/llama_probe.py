"""Load models with real llama.cpp in a child process and report what it did, as JSON.

    python -m tests.engine.llama_probe < jobs.json

Each job is {"model": path, "id": any, "generate": n_tokens, "prompt": str, ...Llama kwargs}.
For each job the child prints {"start": id} and then one result line: whether the context
was created, the KV cache and compute buffer sizes llama.cpp logged, the greedy text, and
the error lines. llama.cpp may abort the process on some inputs; the "start" line names the
job that did it. `run_jobs()` is the parent's side.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

# llama_kv_cache: size =   16.00 MiB (  4096 cells,   4 layers,  1/1 seqs), K (f16):    8.00 MiB, V (f16):    8.00 MiB
KV_RE = re.compile(
    r"llama_kv_cache: size = +(?P<total>[\d.]+) MiB \( *(?P<cells>\d+) cells, +(?P<layers>\d+) "
    r"layers.*?K \((?P<type_k>\w+)\): +(?P<k>[\d.]+) MiB, V \((?P<type_v>\w+)\): +(?P<v>[\d.]+) MiB"
)
GGML_LOG_LEVEL_ERROR = 4
COMPUTE_RE = re.compile(r"CPU compute buffer size = +([\d.]+) MiB")


def parse_log(log: str) -> dict[str, Any]:
    """The KV caches (one per line: an SWA model has two) and compute buffers logged."""
    kv = [
        {
            "total": float(m["total"]),
            "cells": int(m["cells"]),
            "layers": int(m["layers"]),
            "type_k": m["type_k"],
            "type_v": m["type_v"],
            "k": float(m["k"]),
            "v": float(m["v"]),
        }
        for m in KV_RE.finditer(log)
    ]
    return {"kv": kv, "compute": [float(x) for x in COMPUTE_RE.findall(log)]}


def _run_one(llama_cpp: Any, job: dict[str, Any], lines: list[tuple[int, str]]) -> dict[str, Any]:
    lines.clear()
    kwargs = {k: v for k, v in job.items() if k not in ("model", "id", "generate", "prompt")}
    kwargs.setdefault("n_threads", 2)
    result: dict[str, Any] = {"id": job.get("id")}
    try:
        llm = llama_cpp.Llama(job["model"], verbose=False, **kwargs)
    except Exception as e:
        result.update(ok=False, error=str(e))
    else:
        result["ok"] = True
        if job.get("generate"):
            out = llm(job.get("prompt", "Tell me"), max_tokens=job["generate"], temperature=0.0)
            result["text"] = out["choices"][0]["text"]
        llm.close()
    result.update(parse_log("".join(text for _, text in lines)))
    result["errors"] = [text.strip() for level, text in lines if level == GGML_LOG_LEVEL_ERROR]
    return result


def main() -> None:
    import ctypes

    import llama_cpp

    jobs = json.load(sys.stdin)
    lines: list[tuple[int, str]] = []

    @llama_cpp.llama_log_callback
    def on_log(level, text, user_data):
        lines.append((level, text.decode("utf-8", errors="replace")))

    llama_cpp.llama_log_set(on_log, ctypes.c_void_p())  # keep on_log referenced: it is
    out = sys.stdout  # called from C for as long as llama.cpp logs
    for job in jobs:
        print(json.dumps({"start": job.get("id")}), file=out, flush=True)
        print(json.dumps(_run_one(llama_cpp, job, lines)), file=out, flush=True)


def run_jobs(jobs: list[dict[str, Any]], timeout: float = 240) -> list[dict[str, Any]]:
    """Run jobs in one child process; fail naming the job if the child dies."""
    jobs = [{"id": i, **j} if "id" not in j else j for i, j in enumerate(jobs)]
    for j in jobs:
        j["model"] = os.fspath(j["model"])
    proc = subprocess.run(
        [sys.executable, "-m", "tests.engine.llama_probe"],
        input=json.dumps(jobs),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
    results, started = [], None
    for line in proc.stdout.splitlines():
        if not line.startswith("{"):
            continue
        msg = json.loads(line)
        if "start" in msg:
            started = msg["start"]
        else:
            results.append(msg)
    if proc.returncode != 0 or len(results) != len(jobs):
        raise AssertionError(
            f"llama.cpp child exited {proc.returncode} during job {started!r} "
            f"({next((j for j in jobs if j['id'] == started), None)}):\n{proc.stderr[-3000:]}"
        )
    return results


if __name__ == "__main__":
    main()
