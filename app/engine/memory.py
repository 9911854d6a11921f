"""What loading a model costs in memory, per device, before llama.cpp ever sees it.

The estimate has four parts on each device (system RAM and each GPU):

* weights: the tensor sizes in the file, split by offloaded layers the way llama.cpp does
  it (the last n_gpu_layers repeating layers go to the GPU; the output head goes with
  n_gpu_layers > n_layers; the token embeddings stay in RAM);
* KV cache: n_ctx x sum over layers of (n_head_kv x head_dim_k x bytes(type_k) +
  n_head_kv x head_dim_v x bytes(type_v)), with sliding-window layers holding only their
  window when swa_full is off (shared/DESIGN.md);
* compute buffer: llama.cpp's graph allocator keeps the largest set of tensors that are
  alive at once. Two moments dominate: attention (the KQ score matrix n_ctx x n_ubatch x
  n_head in f32 plus its mask without flash attention; only the f16 mask with it) and the
  output (logits n_vocab x n_ubatch in f32). Calibrated against the sizes llama.cpp logs
  (tests/engine/test_memory.py holds it within 25%, the KV cache within 1%);
* a fixed overhead: the worker process itself, or a GPU's runtime context;
* with speculative decoding by a draft model, the draft's own weights, KV cache and compute
  buffer (estimated the same way, with its own context and GPU layers), shown apart.

Headroom: every "does it fit" question (fit, largest_context, max_gpu_layers, the Tune
recommendation, the host's admission) takes a safety margin, the fraction of each device's
free memory kept back for what the estimate cannot see (other programs growing, driver
allocations, fragmentation). The user's preference holds it (app.engine.preferences,
default 10 %); 0 asks "does it fit exactly".
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from app.engine.gguf_info import GGUFInfo, human_bytes, inspect_cached
from app.engine.rpc_probe import known_devices
from app.engine.settings import CTX_ALIGN, MAX_CTX, LoadSettings, kv_bytes_per_element

if TYPE_CHECKING:
    from app.engine.protocol import BufferSizes

MiB = 1024 * 1024
# The worker process before any model: Python, llama.cpp's libraries, the sampler state.
HOST_OVERHEAD = 160 * MiB
# A GPU's runtime context (CUDA context, cuBLAS workspace) once llama.cpp uses it.
GPU_OVERHEAD = 400 * MiB
# Activations alive beside the attention scores: ~3 x n_embd + 2 x n_ff floats per token.
_ACT_EMBD, _ACT_FF = 3, 2


@dataclass(frozen=True)
class DeviceUse:
    """Bytes one device needs for a model."""

    device: str  # "RAM" or "GPU 0", "GPU 1", ..., or "RPC 10.0.0.2:50052" (remote)
    weights: int
    kv: int
    compute: int
    overhead: int
    draft: int = 0  # the draft model's weights + KV + compute (speculative decoding)
    remote_free: int | None = None  # a remote device: the free memory it last reported

    @property
    def total(self) -> int:
        return self.weights + self.kv + self.compute + self.overhead + self.draft


@dataclass(frozen=True)
class Estimate:
    """The memory a model needs with given settings, on RAM and on each GPU."""

    settings: LoadSettings  # normalized: the values llama.cpp will use
    n_gpu_layers: int  # effective: 0 .. n_layers + 1
    n_layers: int
    kv_k: int
    kv_v: int
    devices: tuple[DeviceUse, ...]  # RAM first, then each GPU, then each remote device
    draft: Estimate | None = None  # the draft model's own estimate, when one is set

    @property
    def host(self) -> DeviceUse:
        return self.devices[0]

    @property
    def gpus(self) -> tuple[DeviceUse, ...]:
        """This machine's GPUs (in the order of the free-memory lists callers pass)."""
        return tuple(d for d in self.devices[1:] if d.remote_free is None)

    @property
    def remote(self) -> tuple[DeviceUse, ...]:
        """Remote devices (llama.cpp RPC servers: settings.rpc)."""
        return tuple(d for d in self.devices[1:] if d.remote_free is not None)

    @property
    def host_bytes(self) -> int:
        return self.host.total

    @property
    def kv(self) -> int:
        return self.kv_k + self.kv_v

    @property
    def weights(self) -> int:
        return sum(d.weights for d in self.devices)

    @property
    def compute(self) -> int:
        return sum(d.compute for d in self.devices)

    @property
    def total(self) -> int:
        return sum(d.total for d in self.devices)


@dataclass(frozen=True)
class Fit:
    """Whether a model fits this machine now, and what to do if it does not."""

    verdict: str  # "fits" | "partial" | "tight" | "no"
    message: str
    n_gpu_layers: int  # the largest count that fits in VRAM (what "partial" would use)
    estimate: Estimate

    @property
    def ok(self) -> bool:
        return self.verdict in ("fits", "partial")


def kv_cache_bytes(
    info: GGUFInfo,
    n_ctx: int,
    type_k: str,
    type_v: str,
    swa_full: bool = True,
    n_ubatch: int = 512,
    layers: range | None = None,
) -> tuple[int, int]:
    """(K bytes, V bytes) of the KV cache for `layers` (default: all), as llama.cpp sizes it."""
    n_ctx = _align(n_ctx)
    bk, bv = kv_bytes_per_element(type_k), kv_bytes_per_element(type_v)
    k = v = 0.0
    for layer in layers if layers is not None else range(info.n_layers):
        cells = n_ctx
        if not swa_full and info.sliding_window and info.swa_layers[layer]:
            cells = min(n_ctx, _align(info.sliding_window + n_ubatch))
        kv_heads = info.n_head_kv[layer]
        k += cells * kv_heads * info.head_dim_k * bk
        v += cells * kv_heads * info.head_dim_v * bv
    return int(k), int(v)


def compute_buffer_bytes(info: GGUFInfo, n_ctx: int, n_ubatch: int, flash_attn: bool) -> int:
    """The compute buffer llama.cpp reserves for the worst-case micro-batch."""
    n_ctx, ub = _align(n_ctx), n_ubatch
    n_ff = _feed_forward_length(info)
    activations = ub * (_ACT_EMBD * info.n_embd + _ACT_FF * n_ff) * 4
    if flash_attn:
        attention = n_ctx * ub * 2 + activations  # only the f16 mask
    else:
        attention = n_ctx * ub * info.n_head * 4 + n_ctx * ub * 4 + activations
    output = info.vocab_size * ub * 4 + ub * info.n_embd * 3 * 4
    return max(attention, output)


def _feed_forward_length(info: GGUFInfo) -> int:
    v = info.metadata.get(f"{info.architecture}.feed_forward_length", 4 * info.n_embd)
    if isinstance(v, tuple):
        return max(v) if v else 4 * info.n_embd
    return int(v)


def _align(n_ctx: int) -> int:
    return max(CTX_ALIGN, -(-n_ctx // CTX_ALIGN) * CTX_ALIGN)


def _effective_gpu_layers(info: GGUFInfo, requested: int, n_gpus: int) -> int:
    if n_gpus == 0:
        return 0
    total = info.n_layers + 1  # the output head counts as one more "layer"
    return total if requested < 0 else min(requested, total)


def estimate(info: GGUFInfo, settings: LoadSettings, gpu_free: list[int] | None = None) -> Estimate:
    """Bytes per device to load `info` with `settings`; gpu_free lists the GPUs to use (their
    free bytes split the offloaded layers between them, as llama.cpp's default split does).

    Remote devices (settings.rpc) join the split with the free memory they last reported
    (rpc_probe.known_devices: no network I/O here), first, as llama.cpp orders them; their
    rows come after the GPUs'. One never read yet is left out until it answers."""
    s = settings.normalized()
    remote = known_devices(s.rpc) if s.rpc else []
    n_local = len(gpu_free or [])
    # llama.cpp's device order: the remote devices first, then the local GPUs.
    gpu_free = [d.free for d in remote] + list(gpu_free or [])
    ngl = _effective_gpu_layers(info, s.n_gpu_layers, len(gpu_free))
    n_off = min(ngl, info.n_layers)  # repeating layers on the GPU(s): the last n_off
    first_off = info.n_layers - n_off
    layer_bytes = info.layer_bytes
    out_on_gpu = ngl > info.n_layers

    # Which GPU holds each offloaded layer: contiguous runs proportional to free memory.
    owner = _split_layers(n_off, gpu_free)
    gpu_weights = [0] * len(gpu_free)
    gpu_kv = [0] * len(gpu_free)
    for j, layer in enumerate(range(first_off, info.n_layers)):
        gpu_weights[owner[j]] += layer_bytes[layer]
        if s.offload_kqv:
            k, v = kv_cache_bytes(info, s.n_ctx, s.type_k, s.type_v, s.swa_full, s.n_ubatch,
                                  range(layer, layer + 1))  # fmt: skip
            gpu_kv[owner[j]] += k + v
    if out_on_gpu and gpu_free:
        gpu_weights[-1] += info.output_bytes

    kv_k, kv_v = kv_cache_bytes(info, s.n_ctx, s.type_k, s.type_v, s.swa_full, s.n_ubatch)
    compute = compute_buffer_bytes(info, s.n_ctx, s.n_ubatch, s.flash_attn_expected)
    host_weights = info.tensor_bytes - sum(gpu_weights)
    host_kv = kv_k + kv_v - sum(gpu_kv)
    # Embedding mode makes every token of a batch an output: logits and a vector for each.
    per_output = info.vocab_size + info.n_embd if s.embedding else 0
    output_buffer = max(info.vocab_size, s.n_ubatch * per_output) * 4
    if ngl > 0:
        # The GPUs run the graph; RAM keeps a small buffer for the embeddings and output copy.
        host_compute = s.n_ubatch * info.n_embd * 4 * 4 + output_buffer
        gpu_compute = [compute] * len(gpu_free)
    else:
        host_compute = compute + output_buffer
        gpu_compute = [0] * len(gpu_free)
    devices = [DeviceUse("RAM", host_weights, host_kv, host_compute, HOST_OVERHEAD)]
    n_remote = len(remote)
    for i in [*range(n_remote, n_remote + n_local), *range(n_remote)]:  # GPUs, then remote
        used = gpu_weights[i] > 0 or gpu_compute[i] > 0
        if i >= n_remote:
            devices.append(DeviceUse(
                f"GPU {i - n_remote}", gpu_weights[i], gpu_kv[i], gpu_compute[i] if used else 0,
                GPU_OVERHEAD if used else 0,
            ))  # fmt: skip
        else:  # the server process's own overhead is its machine's business
            devices.append(DeviceUse(
                f"RPC {remote[i].label}", gpu_weights[i], gpu_kv[i], gpu_compute[i] if used else 0,
                0, remote_free=remote[i].free,
            ))  # fmt: skip
    est = Estimate(dataclasses.replace(s), ngl, info.n_layers, kv_k, kv_v, tuple(devices))
    return _with_draft(est, _draft_estimate(s, gpu_free[n_remote:]))


def _with_draft(est: Estimate, draft: Estimate | None) -> Estimate:
    """`est` with the draft model's weights + KV + compute as each device's draft part (the
    draft has no remote devices: they come last in `est`, and keep no draft part)."""
    if draft is None:
        return est
    parts = {dd.device: dd.weights + dd.kv + dd.compute for dd in draft.devices}
    devices = tuple(dataclasses.replace(d, draft=parts.get(d.device, 0)) for d in est.devices)
    return dataclasses.replace(est, devices=devices, draft=draft)


def _draft_estimate(s: LoadSettings, gpu_free: list[int]) -> Estimate | None:
    """The draft model's estimate (spec = "draft" with a readable file), else None."""
    draft_settings = s.draft_settings()
    if draft_settings is None:
        return None
    result = inspect_cached(s.model_draft)
    if result.info is None or not result.usable:
        return None  # validation says why
    return estimate(result.info, draft_settings, gpu_free)


def estimate_now(
    info: GGUFInfo, settings: LoadSettings, gpu_free: list[int] | None = None
) -> Estimate:
    """The memory used right after loading: `estimate` at the context allocated at load
    (the start size when the context grows; `estimate` itself is the most it may grow to,
    and what "fits" is judged on)."""
    s = settings.normalized()
    start = s.initial_ctx
    now = estimate(info, dataclasses.replace(s, n_ctx=start, ctx_start=start), gpu_free)
    # The draft model's context does not grow: all of it is allocated at load.
    return _with_draft(now, _draft_estimate(s, list(gpu_free or [])))


def _split_layers(n_layers: int, gpu_free: list[int]) -> list[int]:
    if not gpu_free or n_layers == 0:
        return []
    total = sum(max(f, 1) for f in gpu_free)
    owner, acc = [], 0.0
    bounds = []
    for f in gpu_free:
        acc += max(f, 1) / total
        bounds.append(acc * n_layers)
    for j in range(n_layers):
        owner.append(next(i for i, b in enumerate(bounds) if j < b - 1e-9 or i == len(bounds) - 1))
    return owner


def usable(free: int, headroom: float = 0.0) -> int:
    """The part of `free` bytes a model may take when `headroom` (0..1) is kept back."""
    return int(free * (1.0 - min(max(headroom, 0.0), 0.95)))


def fits_devices(
    est: Estimate, ram_available: int, gpu_free: list[int], headroom: float = 0.0
) -> bool:
    """True when every device's share is within what it has free, less the headroom."""
    if est.host.total > usable(ram_available, headroom):
        return False
    if any(d.total > usable(d.remote_free or 0, headroom) for d in est.remote):
        return False
    return all(
        d.total <= usable(free, headroom) for d, free in zip(est.gpus, gpu_free, strict=False)
    )


def max_gpu_layers(
    info: GGUFInfo, settings: LoadSettings, gpu_free: list[int], headroom: float = 0.0
) -> int:
    """The most layers (0 .. n_layers + 1) whose weights, KV and compute fit the GPUs."""
    if not gpu_free:
        return 0
    best = 0
    lo, hi = 0, info.n_layers + 1
    while lo <= hi:  # VRAM use grows with the layer count: bisect
        mid = (lo + hi) // 2
        est = estimate(info, dataclasses.replace(settings, n_gpu_layers=mid), gpu_free)
        if all(d.total <= usable(f, headroom) for d, f in zip(est.gpus, gpu_free, strict=False)):
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
    return best


def largest_context(
    info: GGUFInfo,
    settings: LoadSettings,
    ram_available: int,
    gpu_free: list[int] | None = None,
    limit: int = MAX_CTX,
    headroom: float = 0.0,
) -> int:
    """The largest n_ctx (a multiple of 256) that fits with these KV types, keeping
    `headroom` of each device free; 0 if none does."""
    gpu_free = list(gpu_free or [])

    def ok(n_ctx: int) -> bool:
        est = estimate(info, dataclasses.replace(settings, n_ctx=n_ctx), gpu_free)
        return fits_devices(est, ram_available, gpu_free, headroom)

    lo, hi = 1, limit // CTX_ALIGN
    if not ok(CTX_ALIGN):
        return 0
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ok(mid * CTX_ALIGN):
            lo = mid
        else:
            hi = mid - 1
    return lo * CTX_ALIGN


def fit(
    info: GGUFInfo,
    settings: LoadSettings,
    ram_available: int,
    ram_total: int | None = None,
    gpu_free: list[int] | None = None,
    headroom: float = 0.0,
) -> Fit:
    """Does it fit now? A verdict with a sentence that says why, and what would fit.

    Judged on the most the context may grow to; when it grows, the sentence also says what
    the start costs. With `headroom`, that fraction of each device's free memory is kept
    back: the figures in the sentences are what remains usable."""
    result = _fit(info, settings, ram_available, ram_total, gpu_free, headroom)
    if not settings.grows:
        return result
    s, now = settings.normalized(), estimate_now(info, settings, list(gpu_free or []))
    start = (
        f" It starts with a {s.ctx_start:,}-token context ({human_bytes(now.host.total)} of "
        f"RAM) and grows up to {s.n_ctx:,} as a conversation needs."
    )
    return dataclasses.replace(result, message=result.message + start)


def _fit(
    info: GGUFInfo,
    settings: LoadSettings,
    ram_available: int,
    ram_total: int | None,
    gpu_free: list[int] | None,
    headroom: float = 0.0,
) -> Fit:
    gpu_free = list(gpu_free or [])
    est = estimate(info, settings, gpu_free)
    best_ngl = max_gpu_layers(info, settings, gpu_free, headroom)
    gpu_ok = all(d.total <= usable(f, headroom) for d, f in zip(est.gpus, gpu_free, strict=False))
    host_need = est.host.total
    ram_available = usable(ram_available, headroom)
    gpu_free = [usable(f, headroom) for f in gpu_free]
    free = f"free after the {headroom:.0%} headroom" if headroom > 0 else "free"
    if gpu_free and not gpu_ok:
        partial = estimate(info, dataclasses.replace(settings, n_gpu_layers=best_ngl), gpu_free)
        if partial.host.total <= ram_available and best_ngl == 0:
            return Fit(
                "partial",
                "Runs on the CPU only: not one layer fits in the GPU's free memory "
                f"({human_bytes(max(gpu_free))}); needs {human_bytes(partial.host.total)} "
                "of RAM.",
                0,
                partial,
            )
        if partial.host.total <= ram_available:
            return Fit(
                "partial",
                f"Fits with partial offload: {min(best_ngl, info.n_layers)} of {info.n_layers} "
                f"layers on the GPU ({human_bytes(sum(g.total for g in partial.gpus))} of VRAM), "
                f"the rest in RAM ({human_bytes(partial.host.total)}).",
                best_ngl,
                partial,
            )
        est, host_need = partial, partial.host.total
    elif host_need <= ram_available:
        where = (
            f"{human_bytes(sum(g.total for g in est.gpus))} of VRAM and "
            f"{human_bytes(host_need)} of RAM"
            if est.n_gpu_layers
            else f"{human_bytes(host_need)} of RAM ({human_bytes(ram_available)} {free})"
        )
        return Fit("fits", f"Fits: needs {where}.", best_ngl, est)
    if ram_total is not None and host_need <= ram_total:
        return Fit(
            "tight",
            f"Needs {human_bytes(host_need)} of RAM but only {human_bytes(ram_available)} is "
            f"{free} now ({human_bytes(ram_total)} in all): close other programs, or choose a "
            "smaller context or KV cache type.",
            best_ngl,
            est,
        )
    smaller = largest_context(info, settings, ram_available, gpu_free if gpu_ok else [])
    hint = (
        f" The largest context that fits is {smaller:,}."
        if smaller
        else " The weights alone are larger than the free memory: choose a smaller quant."
    )
    return Fit(
        "no",
        f"Will not fit: needs {human_bytes(host_need)} of RAM, "
        f"{human_bytes(ram_available)} is {free}"
        + (f" ({human_bytes(ram_total)} in all)." if ram_total else ".")
        + hint,
        best_ngl,
        est,
    )


@dataclass(frozen=True)
class KVRow:
    """One row of the KV cache table: a KV type, its size at a context, and what fits."""

    kv_type: str
    flash_attn: bool
    kv_bytes: int
    largest_context: int


def kv_table(
    info: GGUFInfo,
    settings: LoadSettings,
    ram_available: int,
    gpu_free: list[int] | None = None,
    kv_types: tuple[str, ...] = ("f16", "q8_0", "q4_0"),
    headroom: float = 0.0,
) -> list[KVRow]:
    """KV size at settings.n_ctx and the largest fitting context for each KV type (K = V),
    up to the model's trained context.

    Quantized types are shown with flash attention on, which llama.cpp needs for them."""
    rows = []
    for t in kv_types:
        fa = settings.flash_attn_expected or t not in ("f16", "f32", "bf16")
        s = dataclasses.replace(settings, type_k=t, type_v=t, flash_attn=fa)
        k, v = kv_cache_bytes(info, s.n_ctx, t, t, s.swa_full, s.n_ubatch)
        limit = info.n_ctx_train or MAX_CTX  # beyond it needs RoPE scaling: not "fits"
        largest = largest_context(info, s, ram_available, gpu_free, limit, headroom)
        rows.append(KVRow(t, fa, k + v, largest))
    return rows


def held_by_model(buffers: BufferSizes, n_gpus: int) -> tuple[int, list[int]]:
    """The memory a loaded model holds that an unload gives back: (host bytes, bytes per
    GPU), from the buffers llama.cpp logged. Memory-mapped weights (`CPU_Mapped`) are the
    file's page cache, which the OS already counts as available, so they are left out, as
    are remote devices' buffers (`RPC0[host:port]`: another machine's memory); a device name
    ending in a number is that GPU, any other is host memory (`CPU`, `CUDA_Host`)."""
    host, gpus = 0, [0] * n_gpus
    for part, sizes in (("model", buffers.model), ("kv", buffers.kv),
                        ("compute", buffers.compute), ("output", buffers.output)):  # fmt: skip
        for device, size in sizes.items():
            name = device.upper()
            if (part == "model" and name.endswith("_MAPPED")) or name.startswith("RPC"):
                continue
            digits = len(name) - len(name.rstrip("0123456789"))
            if digits and not name.startswith("CPU"):
                index = int(name[-digits:])
                if index < n_gpus:
                    gpus[index] += size
            else:
                host += size
    return host, gpus
