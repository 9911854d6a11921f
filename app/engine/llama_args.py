"""LoadSettings -> the keyword arguments of `llama_cpp.Llama(...)`, in one place.

The worker and the benchmarks build their Llama objects through `llama_kwargs()`, so what
the settings panel and the CLI declare is what llama.cpp gets. llama-cpp-python swallows an
unknown keyword without a word (DESIGN.md: `rpc_servers`), so tests/engine/test_llama_args.py
checks every LoadSettings field against the signature of `Llama.__init__`: a field either
reaches a parameter of that name (after the conversions below) or is listed in
`NOT_LLAMA_ARGS` with the place that handles it.

No llama_cpp import here: the values are plain numbers (the window and the CLI may call it).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from app.engine.settings import LoadSettings, kv_type_id

# llama.h's LLAMA_DEFAULT_SEED: "pick a random seed" (the test checks it against llama_cpp).
LLAMA_DEFAULT_SEED = 0xFFFFFFFF

# llama.h's llama_pooling_type (the test checks them against llama_cpp). "auto" is
# UNSPECIFIED here; the worker resolves it from the file (app/engine/embedding.py).
POOLING_TYPE_IDS = {"auto": -1, "mean": 1, "cls": 2, "last": 3}

# LoadSettings fields that are not a Llama(...) keyword, and who uses them instead.
# Add a field here when it is handled outside the constructor; the test names any field
# that is neither.
_SPEC = "speculative decoding: the worker's loop (app/engine/speculative.py)"
NOT_LLAMA_ARGS: dict[str, str] = {
    "ctx_start": "the context allocated at load when it grows: Llama's n_ctx (below); "
    "app/engine/context_growth.py grows it up to n_ctx",
    "ctx_grow": "whether the worker grows the context (app/engine/context_growth.py)",
    "spec": _SPEC,
    "spec_ngram_min": _SPEC,
    "spec_ngram_max": _SPEC,
    "model_draft": _SPEC + "; the worker loads it as a second Llama",
    "draft_n_gpu_layers": "LoadSettings.draft_settings() -> the draft's n_gpu_layers",
    "draft_n_ctx": "LoadSettings.draft_settings() -> the draft's n_ctx",
    "draft_max": _SPEC,
    "draft_min": _SPEC,
    "rpc": "remote devices: registered by the worker through ggml's registry and passed "
    "as the model's devices (app/engine/rpc.py)",
}


def physical_cores() -> int:
    """CPU cores without hyper-threads (llama.cpp's own default for generation threads)."""
    import psutil

    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def _convert(name: str, value: Any) -> Any:
    if name in ("type_k", "type_v"):
        return kv_type_id(value)  # a validated name -> ggml type id; a bad id aborts
    if name == "seed":
        return value if value >= 0 else LLAMA_DEFAULT_SEED
    if name == "n_threads":
        return value or physical_cores()
    if name == "n_threads_batch":
        return value or os.cpu_count() or 1
    if name == "pooling_type":
        return POOLING_TYPE_IDS[value]  # validated against settings.POOLING_TYPES first
    if name == "flash_attn":
        # Llama() takes a bool; "auto" (None) reaches llama.cpp through the worker, which
        # sets flash_attn_type on the context params (worker._construct).
        return bool(value)
    return value


def llama_kwargs(settings: LoadSettings) -> dict[str, Any]:
    """Llama(...) keyword arguments for these settings (normalized first: n_ctx rounded up
    to a multiple of 256, batches cut to the context), without `model_path` and `verbose`.
    When the context grows, n_ctx is the start size (what is allocated at load)."""
    s = settings.normalized()
    kwargs = {
        f.name: _convert(f.name, getattr(s, f.name))
        for f in dataclasses.fields(s)
        if f.name not in NOT_LLAMA_ARGS
    }
    kwargs["n_ctx"] = s.initial_ctx  # the start size when the context grows
    return kwargs
