"""What llama.cpp really applied at load, read back from the lines it logged.

llama.cpp can differ from what was asked: flash attention "auto" resolves to on or off per
device, some architectures force it off, a quantized V cache forces it on, and the KV cache
types are what its cache reports. The worker hands the load's log lines here and sends the
result in `Loaded.applied`; the status bar, `hearth run --json` and the Loaded event show
it, and `Applied.differences()` says where it differs from the request.
"""

from __future__ import annotations

import re

from app.engine.protocol import Applied
from app.engine.settings import LoadSettings

# llama_kv_cache: size = 64.00 MiB (4096 cells, 16 layers, 1/1 seqs), K (f16): 32.00 MiB, ...
_KV_TYPES_RE = re.compile(r"K \((?P<k>[\w.]+)\):.*V \((?P<v>[\w.]+)\):")
# resolve_fused_ops: Flash Attention enabled | Flash Attention not supported, set to disabled
_FA_RESOLVED_RE = re.compile(r"Flash Attention (?:(?P<on>enabled)|not supported)")
_FA_FORCED_OFF = "flash_attn is not compatible"  # "... with Grok - forcing off"
_FA_FORCED_ON = "enabling flash_attn since"  # "... it is required for quantized V cache"
# load_tensors: layer   3 assigned to device RPC0, is_swa = 0   (a debug line)
_LAYER_RE = re.compile(r"layer\s+\d+ assigned to device (?P<dev>[^,\s]+)")


def flash_attn_from_log(lines: list[str], asked: bool | None) -> bool:
    """Flash attention as llama.cpp resolved it (the last word in the log wins)."""
    resolved = bool(asked)
    for line in lines:
        m = _FA_RESOLVED_RE.search(line)
        if m:
            resolved = m["on"] is not None
        elif _FA_FORCED_OFF in line:
            resolved = False
        elif _FA_FORCED_ON in line:
            resolved = True
    return resolved


def kv_types_from_log(lines: list[str]) -> tuple[str, str] | None:
    """(K type, V type) from the KV cache's size line; None if it logged none."""
    for line in lines:
        m = _KV_TYPES_RE.search(line)
        if m:
            return m["k"], m["v"]
    return None


def read_applied(lines: list[str], asked: LoadSettings, n_ctx: int, n_gpu_layers: int) -> Applied:
    """The values llama.cpp applied, from the load's log lines and its context's n_ctx."""
    s = asked.normalized()
    types = kv_types_from_log(lines) or (s.type_k, s.type_v)
    return Applied(
        n_ctx=n_ctx,
        type_k=types[0],
        type_v=types[1],
        flash_attn=flash_attn_from_log(lines, s.flash_attn),
        n_gpu_layers=n_gpu_layers,
    )


def placement_from_log(lines: list[str]) -> tuple[tuple[str, int], ...]:
    """Layers per device as llama.cpp assigned them while loading ("RPC0", "CPU", ...), in
    the order the devices first appear. The output layer counts as one more, as -ngl counts
    it: a 2-layer model all on RPC0 is (("RPC0", 3),)."""
    counts: dict[str, int] = {}
    for line in lines:
        m = _LAYER_RE.search(line)
        if m:
            counts[m["dev"]] = counts.get(m["dev"], 0) + 1
    return tuple(counts.items())


def placement_problem(placement: tuple[tuple[str, int], ...], asked: LoadSettings) -> str | None:
    """A sentence when remote devices were asked for layers but llama.cpp put none there."""
    if not asked.rpc or asked.n_gpu_layers == 0 or not placement:
        return None
    if any(dev.startswith("RPC") and n for dev, n in placement):
        return None
    where = ", ".join(f"{dev} {n}" for dev, n in placement)
    return (
        f"llama.cpp put no layer on the remote devices ({', '.join(asked.rpc)}): {where}. "
        "Raise GPU layers, or check that the remote devices have free memory."
    )
