"""The outcome of a Tune run: its rows, the recommendation and the rule behind it, the cache.

THE RULE (README "Tune" says the same). A combination of K cache type, V cache type and
flash attention *qualifies* when
  1. it was measured (llama.cpp accepted it and it ran to the end);
  2. its quality matches f16: against f16/f16 without flash attention on the fixed text,
     mean KL divergence <= MAX_KL (0.01 nats) and top-1 agreement >= MIN_TOP1 (99 %);
  3. it is not much slower than that reference: generation >= MIN_TG (0.95 x) and prompt
     processing >= MIN_PP (0.90 x) of the reference's tok/s;
  4. the context asked for fits this machine with it, keeping the memory headroom
     (its largest context >= the context asked for).
Of the qualifying combinations the one with the smallest KV cache is recommended; equal
sizes go to the faster generation. The reference meets 1-3 by definition, so something is
recommended whenever the reference fits; when nothing qualifies, nothing is recommended
and the reason says which condition failed.

Results are cached per model file (path, size, modification time), machine (host, CPU,
RAM, GPUs) and llama.cpp build (llama-cpp-python's version and GPU backend) in
`cache_dir()/tune/`, one JSON file per model+machine+build holding the latest result of
each way of measuring (context, types, flash attention, quick). The model card shows the
latest; `hearth bench` reuses the one measured the same way unless told --fresh.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.engine import fileio, paths
from app.engine.gguf_info import human_bytes
from app.engine.protocol import Measurement, TuneCombo

MAX_KL = 0.01
MIN_TOP1 = 0.99
MIN_TG = 0.95
MIN_PP = 0.90
REFERENCE = TuneCombo("f16", "f16", False)
CACHE_VERSION = 1


@dataclass(frozen=True)
class Row:
    """One combination: what happened to it, and its figures when measured.

    status: "measured" | "invalid" (Hearth's checks refuse it, not run) | "failed"
    (llama.cpp refused it or failed) | "crashed" (llama.cpp killed its worker) |
    "skipped" (cancelled or out of time)."""

    combo: TuneCombo
    status: str
    reason: str = ""
    m: Measurement | None = None
    kv_estimate: int = 0  # memory.py's KV bytes at the measuring context
    largest_context: int = 0  # with this combination, keeping the headroom

    @property
    def measured(self) -> bool:
        return self.status == "measured" and self.m is not None


@dataclass(frozen=True)
class Recommendation:
    combo: TuneCombo | None
    reason: str


@dataclass
class TuneResult:
    """Everything one Tune run found, as cached and shown."""

    model: str
    key: dict[str, Any]  # model file, machine, build (the cache key)
    plan: dict[str, Any]  # how it was measured (context, depth, pp, tg, kv types, fa, quick)
    rows: list[Row] = field(default_factory=list)
    headroom: float = 0.1
    n_ctx: int = 0  # the context the recommendation must fit
    created: float = field(default_factory=time.time)
    seconds: float = 0.0
    cancelled: bool = False
    from_cache: bool = False

    def reference(self) -> Row | None:
        return next((r for r in self.rows if r.combo == REFERENCE and r.measured), None)

    def ratios(self, row: Row) -> dict[str, float] | None:
        """KV, pp and tg of `row` relative to the reference (None without both measured)."""
        ref = self.reference()
        if ref is None or not row.measured or not ref.m.kv_bytes:
            return None
        return {
            "kv": row.m.kv_bytes / ref.m.kv_bytes,
            "pp": row.m.pp_tps / ref.m.pp_tps if ref.m.pp_tps else 0.0,
            "tg": row.m.tg_tps / ref.m.tg_tps if ref.m.tg_tps else 0.0,
        }

    def recommendation(self) -> Recommendation:
        return recommend(self)

    # --- JSON -----------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        d = {k: v for k, v in dataclasses.asdict(self).items() if k != "from_cache"}
        rec = self.recommendation()
        d["recommendation"] = {
            "combo": dataclasses.asdict(rec.combo) if rec.combo else None,
            "reason": rec.reason,
        }
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TuneResult:
        rows = []
        for r in d["rows"]:
            combo = TuneCombo(**r["combo"])
            m = r.get("m") or None
            if m is not None:
                split = tuple((dev, n) for dev, n in m.get("kv_devices", ()))
                m = Measurement(**{**m, "combo": combo, "kv_devices": split})
            rows.append(Row(combo, r["status"], r.get("reason", ""), m,
                            r.get("kv_estimate", 0), r.get("largest_context", 0)))  # fmt: skip
        fields = {f.name for f in dataclasses.fields(cls)} - {"rows", "from_cache"}
        return cls(**{k: v for k, v in d.items() if k in fields}, rows=rows)


def kv_split(m: Measurement) -> str:
    """Where the KV cache went, when part of it is on remote devices ('' when all is here):
    "CPU 8 MB · RPC0[10.0.0.2:50052] 8 MB"."""
    if not any(dev.startswith("RPC") for dev, _ in m.kv_devices):
        return ""
    return " · ".join(f"{dev} {human_bytes(n)}" for dev, n in m.kv_devices)


def qualifies(result: TuneResult, row: Row) -> str | None:
    """None when `row` meets the rule; else the first condition it fails, as words."""
    if not row.measured:
        return "not measured"
    ratios = result.ratios(row)
    if ratios is None:
        return "no reference to compare with"
    if row.m.mean_kl > MAX_KL or row.m.top1 < MIN_TOP1:
        return (f"quality: KL {row.m.mean_kl:.4f}, top-1 {_pct(row.m.top1)} "
                f"(needs KL <= {MAX_KL} and top-1 >= {MIN_TOP1:.0%})")  # fmt: skip
    if ratios["tg"] < MIN_TG or ratios["pp"] < MIN_PP:
        return (f"speed: {ratios['tg']:.2f}x tg, {ratios['pp']:.2f}x pp "
                f"(needs >= {MIN_TG}x tg and >= {MIN_PP}x pp)")  # fmt: skip
    if result.n_ctx and row.largest_context < result.n_ctx:
        return f"memory: context {result.n_ctx:,} does not fit (at most {row.largest_context:,})"
    return None


def recommend(result: TuneResult) -> Recommendation:
    """The rule in this module's docstring, applied to `result`."""
    ref = result.reference()
    if ref is None:
        return Recommendation(None, "No recommendation: f16/f16 without flash attention, "
                                    "the reference, was not measured.")  # fmt: skip
    ok = [r for r in result.rows if qualifies(result, r) is None]
    if not ok:
        return Recommendation(None, "No recommendation: " + (qualifies(result, ref) or "")
                              + f" even with {ref.combo.label}.")  # fmt: skip
    best = min(ok, key=lambda r: (r.m.kv_bytes, -r.m.tg_tps))
    return Recommendation(best.combo, describe(result, best))


def describe(result: TuneResult, row: Row) -> str:
    """'q8_0/q8_0 + FA: −47 % KV, 0.99× tg, top-1 agreement 99.6 %'."""
    ratios = result.ratios(row)
    if ratios is None or row.m is None:
        return row.combo.label
    kv = (ratios["kv"] - 1) * 100
    kv_text = "same KV" if abs(kv) < 0.5 else f"{'−' if kv < 0 else '+'}{abs(kv):.0f} % KV"
    return (f"{row.combo.label}: {kv_text}, {ratios['tg']:.2f}× tg, {ratios['pp']:.2f}× pp, "
            f"top-1 agreement {_pct(row.m.top1)}, KL {row.m.mean_kl:.4f}")  # fmt: skip


def _pct(x: float) -> str:
    return f"{x * 100:.1f} %"


# --- cache ------------------------------------------------------------------------------


def model_key(path: str) -> dict[str, Any]:
    st = os.stat(path)
    return {"path": os.path.abspath(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def machine_key() -> dict[str, Any]:
    """This machine as far as speed goes: host, CPU, cores, RAM, GPUs."""
    from app.engine import hardware

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "host": platform.node(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": round(hardware.ram().total / 2**30),
        "gpus": [g.name for g in hardware.gpus()],
    }


def build_key() -> dict[str, Any]:
    """The llama.cpp build: llama-cpp-python's version and its GPU backend (read from disk,
    without loading llama.cpp)."""
    from importlib.metadata import PackageNotFoundError, version

    from app.engine import hardware

    try:
        v = version("llama_cpp_python")
    except PackageNotFoundError:
        v = "unknown"
    return {"llama_cpp_python": v, "backend": hardware.llama_gpu_backend() or "cpu"}


def cache_key(path: str) -> dict[str, Any]:
    return {"model": model_key(path), "machine": machine_key(), "build": build_key()}


def _cache_file(key: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    return paths.cache_dir() / "tune" / f"{digest}.json"


def plan_signature(plan: dict[str, Any]) -> str:
    return json.dumps(plan, sort_keys=True)


def load_cached(path: str, plan: dict[str, Any] | None = None) -> TuneResult | None:
    """The cached result for this model file, machine and build: measured as `plan`, or
    (plan None) the latest. None when there is none or the file changed since."""
    try:
        key = cache_key(path)
    except OSError:
        return None
    data = fileio.read_json(_cache_file(key))
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
        return None
    entries = data.get("results", {})
    try:
        if plan is not None:
            entry = entries.get(plan_signature(plan))
        else:
            entry = max(entries.values(), key=lambda e: e.get("created", 0), default=None)
        if entry is None or entry.get("key") != key:
            return None
        result = TuneResult.from_json(entry)
    except (KeyError, TypeError, ValueError):
        return None  # an older or damaged entry: measure again
    result.from_cache = True
    return result


def save(result: TuneResult) -> Path:
    """Add `result` to its cache file (atomically), replacing one measured the same way."""
    file = _cache_file(result.key)
    data = fileio.read_json(file)
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
        data = {"version": CACHE_VERSION, "results": {}}
    data["results"][plan_signature(result.plan)] = result.to_json()
    file.parent.mkdir(parents=True, exist_ok=True)
    fileio.atomic_write_json(file, data)
    return file
