"""Load and sampling settings: each one declared once, with its default, range and meaning.

`LoadSettings` and `SamplingSettings` are frozen dataclasses whose fields carry an `Option`
in their metadata. That one declaration drives everything else: `validate()` checks ranges
and choices from it, the settings panel builds its widgets from it, and the CLI's flags
(named as llama.cpp names them: -c, -ngl, -ctk, -ctv, -fa, ...) are generated from it.

`validate(settings, info)` returns every problem as a sentence a user can act on, tied to
the field it concerns. No KV cache type id reaches llama.cpp unless it passed validation:
an invalid id aborts the process.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from app.engine.ggml_types import GGML_TYPE_BY_NAME
from app.engine.gguf_info import Problem
from app.engine.rpc_probe import endpoint_problem, split_endpoints

if TYPE_CHECKING:
    from app.engine.gguf_info import GGUFInfo

# KV cache types llama.cpp accepts, in the order the UI lists them (most precise first).
KV_TYPES: tuple[str, ...] = ("f32", "f16", "bf16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0", "iq4_nl")
QUANTIZED_KV_TYPES = frozenset(KV_TYPES) - {"f32", "f16", "bf16"}
CTX_ALIGN = 256  # llama.cpp rounds n_ctx up to a multiple of this
CTX_FULL_CHOICES = ("stop", "drop-oldest", "refuse")
MAX_CTX = 1 << 21
SPEC_KINDS: tuple[str, ...] = ("off", "lookup", "draft")
# keep_alive (seconds a model stays loaded after a reply; Ollama's meaning): the values a
# user picks from, for a model (SamplingSettings.keep_alive) and in Preferences.
KEEP_ALIVE_AS_PREFERENCES = -2  # a model's value that defers to Edit → Preferences
KEEP_ALIVE_CHOICES: dict[int, str] = {
    -1: "until unloaded", 0: "unload after each reply", 60: "1 minute", 300: "5 minutes",
    1800: "30 minutes", 3600: "1 hour",
}  # fmt: skip
# How token vectors pool into one embedding ("auto": the model's own, else "last").
POOLING_TYPES: tuple[str, ...] = ("auto", "mean", "cls", "last")


def kv_type_id(name: str) -> int:
    """The ggml type id llama.cpp expects for a KV cache type name (validated first)."""
    if name not in KV_TYPES:
        raise ValueError(f"unknown KV cache type {name!r}")
    return GGML_TYPE_BY_NAME[name].id


def kv_block_size(name: str) -> int:
    return GGML_TYPE_BY_NAME[name].block_size


def kv_bytes_per_element(name: str) -> float:
    t = GGML_TYPE_BY_NAME[name]
    return t.type_size / t.block_size


@dataclass(frozen=True)
class Option:
    """The declaration of one setting."""

    label: str
    description: str
    group: str
    flags: tuple[str, ...] = ()  # CLI flags; the first long one names the option
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None
    special: dict[Any, str] = field(default_factory=dict)  # value -> what it means ("auto")
    step: float | None = None
    unit: str = ""
    kind: str = ""  # "file": a path, edited with a file picker; "keep_alive": a duration;
    # "endpoints": HOST:PORT addresses
    cli: bool = True  # False: the window's setting only, no CLI flag
    # Also a per-request option of the local API under the field's own name (OpenAI: the
    # request body, Ollama: `options`). Never a file: a client must not name server files.
    api: bool = False


def _opt(default: Any, /, **kw: Any) -> Any:
    return field(default=default, metadata={"option": Option(**kw)})


def declare(default: Any, /, **kw: Any) -> Any:
    """A dataclass field declared as a setting (its `Option` in the metadata), for settings
    classes outside this module (app.engine.preferences)."""
    return _opt(default, **kw)


@dataclass(frozen=True)
class LoadSettings:
    """How llama.cpp loads a model and builds its context. Changing one means a reload."""

    n_ctx: int = _opt(
        4096, label="Context length", group="Context", flags=("-c", "--ctx-size"),
        minimum=CTX_ALIGN, maximum=MAX_CTX, step=CTX_ALIGN, unit="tokens",
        description="Tokens the model can see at once: system prompt, history and reply. "
        "Memory for the KV cache grows with it. When the context grows, this is the most it "
        "may grow to (memory is judged on it); otherwise exactly this is allocated.",
    )  # fmt: skip
    type_k: str = _opt(
        "f16", label="K cache type", group="Context", flags=("-ctk", "--cache-type-k"),
        choices=KV_TYPES,
        description="Precision of the attention keys kept for every token. q8_0 halves the "
        "memory of f16 with little loss; q4_0 quarters it.",
    )  # fmt: skip
    type_v: str = _opt(
        "f16", label="V cache type", group="Context", flags=("-ctv", "--cache-type-v"),
        choices=KV_TYPES,
        description="Precision of the attention values kept for every token. A quantized V "
        "cache needs flash attention.",
    )  # fmt: skip
    flash_attn: bool | None = _opt(
        False, label="Flash attention", group="Context", flags=("-fa", "--flash-attn"),
        special={None: "auto"},
        description="Compute attention without materialising the full score matrix: less "
        "memory at long contexts, and required for a quantized V cache. Auto: llama.cpp "
        "turns it on where the device supports it (the status bar shows what it chose).",
    )  # fmt: skip
    swa_full: bool = _opt(
        True, label="Full-size SWA cache", group="Context", flags=("--swa-full",),
        description="Give sliding-window layers a cache as long as the context (llama.cpp's "
        "default). Off saves much of the KV memory of models like Gemma, but a chat's earlier "
        "turns are then re-read more often.",
    )  # fmt: skip
    n_gpu_layers: int = _opt(
        -1, label="GPU layers", group="Offload", flags=("-ngl", "--n-gpu-layers"),
        minimum=-1, maximum=1000, special={-1: "all"},
        description="How many of the model's layers live in GPU memory (-1: all). The rest "
        "run on the CPU from system RAM. Ignored without a GPU build.",
    )  # fmt: skip
    offload_kqv: bool = _opt(
        True, label="KV cache on GPU", group="Offload", flags=("--offload-kqv",),
        description="Keep the KV cache of offloaded layers in GPU memory too.",
    )  # fmt: skip
    # --- remote devices (llama.cpp's RPC backend: app/engine/rpc.py) ------------------------
    rpc: tuple[str, ...] = _opt(
        (), label="Remote devices", group="Offload", flags=("--rpc",), kind="endpoints",
        api=True,
        description="Other machines' devices, served there by `hearth rpc-serve`, as "
        "HOST:PORT (comma-separated). They hold offloaded layers and their KV cache like GPUs "
        "(GPU layers decides how many). llama.cpp's RPC has no authentication: use them on a "
        "trusted network or through an SSH tunnel.",
    )  # fmt: skip
    n_batch: int = _opt(
        512, label="Batch size", group="Performance", flags=("-b", "--batch-size"),
        minimum=1, maximum=65536, step=64, unit="tokens",
        description="Most prompt tokens handed to llama.cpp in one call.",
    )  # fmt: skip
    n_ubatch: int = _opt(
        512, label="Micro-batch size", group="Performance", flags=("-ub", "--ubatch-size"),
        minimum=1, maximum=65536, step=64, unit="tokens",
        description="Tokens computed together; the compute buffer grows with it.",
    )  # fmt: skip
    n_threads: int = _opt(
        0, label="Threads", group="Performance", flags=("-t", "--threads"),
        minimum=0, maximum=1024, special={0: "auto"},
        description="CPU threads for generating tokens (0: one per physical core).",
    )  # fmt: skip
    n_threads_batch: int = _opt(
        0, label="Prompt threads", group="Performance", flags=("-tb", "--threads-batch"),
        minimum=0, maximum=1024, special={0: "auto"},
        description="CPU threads for reading the prompt (0: one per logical core).",
    )  # fmt: skip
    use_mmap: bool = _opt(
        True, label="Memory-map the file", group="Memory", flags=("--mmap",),
        description="Map the model file instead of reading it into memory: faster loads, "
        "and the OS can share and evict the pages.",
    )  # fmt: skip
    use_mlock: bool = _opt(
        False, label="Lock in RAM", group="Memory", flags=("--mlock",),
        description="Keep the whole model in RAM so the OS never swaps it out.",
    )  # fmt: skip
    seed: int = _opt(
        -1, label="Seed", group="Advanced", flags=("-s", "--seed"),
        minimum=-1, maximum=0xFFFFFFFF, special={-1: "random"},
        description="Seed of the context's random number generator (-1: random).",
    )  # fmt: skip
    rope_freq_base: float = _opt(
        0.0, label="RoPE base", group="Advanced", flags=("--rope-freq-base",),
        minimum=0.0, maximum=1e9, special={0.0: "from model"},
        description="RoPE base frequency (0: the model's own).",
    )  # fmt: skip
    rope_freq_scale: float = _opt(
        0.0, label="RoPE scale", group="Advanced", flags=("--rope-freq-scale",),
        minimum=0.0, maximum=1.0, step=0.05, special={0.0: "from model"},
        description="RoPE frequency scale: 0.5 stretches the trained context to twice its "
        "length (0: the model's own).",
    )  # fmt: skip
    # --- dynamic context (context growth) ---------------------------------------------
    ctx_grow: bool = _opt(
        True, label="Grow the context", group="Context", flags=("--ctx-grow",),
        description="Start with a small context and double it when the conversation needs "
        "more, up to the context length above, keeping what was already read. Off: the "
        "whole context length is allocated at load.",
    )  # fmt: skip
    ctx_start: int = _opt(
        4096, label="Start context", group="Context", flags=("--ctx-start",),
        minimum=CTX_ALIGN, maximum=MAX_CTX, step=CTX_ALIGN, unit="tokens",
        description="Tokens allocated at load when the context grows (never more than the "
        "context length); the KV cache of the rest is allocated only when it is needed.",
    )  # fmt: skip

    # --- Speculative decoding (the worker's loop: app/engine/speculative.py) ---------------
    spec: str = _opt(
        "off", label="Speculative decoding", group="Speculative decoding", flags=("--spec",),
        choices=SPEC_KINDS, api=True,
        description="Guess the next tokens cheaply and have the model check them in one "
        "batch: the same reply, faster when the guesses are right. lookup: copy what follows "
        "the same words earlier in the conversation (pays when replies repeat it: edits, "
        "quotes, code); draft: a small model of the same family guesses.",
    )  # fmt: skip
    spec_ngram_min: int = _opt(
        2, label="Lookup: shortest match", group="Speculative decoding",
        flags=("--spec-ngram-min",), minimum=1, maximum=16, unit="tokens", api=True,
        description="Lookup drafts only after the last tokens of the reply appeared before; "
        "this many at least (a single token must have been seen 4 times, mostly followed by "
        "the same one).",
    )  # fmt: skip
    spec_ngram_max: int = _opt(
        4, label="Lookup: longest match", group="Speculative decoding",
        flags=("--spec-ngram-max",), minimum=1, maximum=16, unit="tokens", api=True,
        description="The longest run of recent tokens lookup tries to find earlier (longer "
        "matches are tried first: they guess better).",
    )  # fmt: skip
    model_draft: str = _opt(
        "", label="Draft model", group="Speculative decoding", flags=("-md", "--model-draft"),
        kind="file",
        description="A small GGUF model with the same vocabulary (the same family, e.g. a 0.5B "
        "beside a 7B) that drafts tokens for spec = draft.",
    )  # fmt: skip
    draft_n_gpu_layers: int = _opt(
        -1, label="Draft GPU layers", group="Speculative decoding",
        flags=("-ngld", "--n-gpu-layers-draft"), minimum=-1, maximum=1000, special={-1: "all"},
        description="How many of the draft model's layers live in GPU memory (-1: all).",
    )  # fmt: skip
    draft_n_ctx: int = _opt(
        0, label="Draft context", group="Speculative decoding", flags=("-cd", "--ctx-size-draft"),
        minimum=0, maximum=MAX_CTX, step=CTX_ALIGN, unit="tokens",
        special={0: "same as the model"},
        description="The draft model's context (0: the same as the model's). Drafting stops "
        "once a conversation outgrows it.",
    )  # fmt: skip
    draft_max: int = _opt(
        16, label="Draft at most", group="Speculative decoding", flags=("--draft-max",),
        minimum=1, maximum=64, unit="tokens", api=True,
        description="The most tokens guessed at once. Hearth shortens the guess when guesses "
        "fail and stops guessing for a while when they do not pay.",
    )  # fmt: skip
    draft_min: int = _opt(
        0, label="Draft at least", group="Speculative decoding", flags=("--draft-min",),
        minimum=0, maximum=64, unit="tokens", api=True,
        description="A guess shorter than this is not checked (0: any guess is).",
    )  # fmt: skip

    # --- Embeddings (the worker's embedding mode: app/engine/embedding.py) ----------------
    embedding: bool = _opt(
        False, label="Embeddings", group="Embeddings", flags=("--embedding",),
        description="Load the model so that it can also turn text into embedding vectors (the "
        "API's /v1/embeddings and /api/embed). Off, an embedding request starts a second "
        "worker of the same model for embeddings; on, this worker answers them between "
        "replies (each embedding request clears the chat's cached prompt).",
    )  # fmt: skip
    pooling_type: str = _opt(
        "auto", label="Pooling", group="Embeddings", flags=("--pooling",),
        choices=POOLING_TYPES,
        description="How the vectors of an input's tokens become one embedding. auto: the "
        "model's own (embedding models name theirs), else the last token's, as Ollama does; "
        "mean: their average; cls: the first token's; last: the last token's.",
    )  # fmt: skip

    def normalized(self) -> LoadSettings:
        """The settings llama.cpp will actually use: n_ctx (and the start context) rounded up
        to a multiple of 256, the start at most n_ctx, batch at most the context llama.cpp
        allocates first and micro-batch at most the batch. With `embedding` on the
        micro-batch is the batch: llama.cpp aborts on a pooled batch split in micro-batches
        (app/engine/embedding.py)."""
        n_ctx = _align_ctx(self.n_ctx)
        ctx_start = min(_align_ctx(self.ctx_start), n_ctx)
        n_batch = min(self.n_batch, ctx_start if self.ctx_grow else n_ctx)
        return dataclasses.replace(
            self, n_ctx=n_ctx, ctx_start=ctx_start, n_batch=n_batch,
            n_ubatch=n_batch if self.embedding else min(self.n_ubatch, n_batch),
        )  # fmt: skip

    @property
    def initial_ctx(self) -> int:
        """The context allocated at load: the start size when growing, else n_ctx."""
        s = self.normalized()
        return s.ctx_start if s.ctx_grow else s.n_ctx

    @property
    def grows(self) -> bool:
        """True when the context starts smaller than its maximum and may grow."""
        s = self.normalized()
        return s.ctx_grow and s.ctx_start < s.n_ctx

    def summary(self) -> str:
        """A short description for status bars and logs: 'n_ctx 8192, KV q8_0/q8_0, FA'
        ('n_ctx 4096→32768' when the context grows; 'FA auto' for llama.cpp's choice)."""
        fa = ", FA auto" if self.flash_attn is None else ", FA" if self.flash_attn else ""
        ctx = f"{self.ctx_start}→{self.n_ctx}" if self.grows else f"{self.n_ctx}"
        spec = f", spec {self.spec}" if self.spec != "off" else ""
        rpc = f", RPC {','.join(self.rpc)}" if self.rpc else ""
        return f"n_ctx {ctx}, KV {self.type_k}/{self.type_v}{fa}{spec}{rpc}"

    def draft_settings(self) -> LoadSettings | None:
        """How the draft model loads (None unless spec is "draft"): the model's settings
        with the draft's own context (all of it allocated at load: a draft's KV cache is
        small, and it must hold what the model's context may grow to) and GPU layers, and
        no speculation of its own."""
        if self.spec != "draft" or not self.model_draft:
            return None
        return dataclasses.replace(
            self,
            n_ctx=self.draft_n_ctx or self.n_ctx,
            ctx_grow=False,
            n_gpu_layers=self.draft_n_gpu_layers,
            spec="off",
            model_draft="",
            rpc=(),  # a draft is small: it stays here (and one client per RPC server)
        ).normalized()

    @property
    def flash_attn_expected(self) -> bool:
        """Flash attention as llama.cpp will most likely resolve it: "auto" turns it on
        wherever the device runs the flash-attention kernel (CPU, CUDA, Metal), and always
        for a quantized V cache. The estimate uses this; Loaded says what really ran."""
        return True if self.flash_attn is None else self.flash_attn


def _align_ctx(n_ctx: int) -> int:
    return max(CTX_ALIGN, -(-n_ctx // CTX_ALIGN) * CTX_ALIGN)


@dataclass(frozen=True)
class SamplingSettings:
    """How each reply is sampled. Takes effect on the next message; no reload."""

    temperature: float = _opt(
        0.8, label="Temperature", group="Sampling", flags=("--temp",),
        minimum=0.0, maximum=5.0, step=0.05,
        description="Randomness of the reply: 0 always picks the likeliest token.",
    )  # fmt: skip
    top_k: int = _opt(
        40, label="Top-k", group="Sampling", flags=("--top-k",),
        minimum=0, maximum=100000, special={0: "off"},
        description="Sample only from the k likeliest tokens (0: off).",
    )  # fmt: skip
    top_p: float = _opt(
        0.95, label="Top-p", group="Sampling", flags=("--top-p",),
        minimum=0.0, maximum=1.0, step=0.01,
        description="Sample from the likeliest tokens that together hold this probability.",
    )  # fmt: skip
    min_p: float = _opt(
        0.05, label="Min-p", group="Sampling", flags=("--min-p",),
        minimum=0.0, maximum=1.0, step=0.01,
        description="Drop tokens less likely than this fraction of the likeliest one.",
    )  # fmt: skip
    repeat_penalty: float = _opt(
        1.0, label="Repeat penalty", group="Sampling", flags=("--repeat-penalty",),
        minimum=0.0, maximum=5.0, step=0.05,
        description="Discourage repeating recent tokens (1: off).",
    )  # fmt: skip
    presence_penalty: float = _opt(
        0.0, label="Presence penalty", group="Sampling", flags=("--presence-penalty",),
        minimum=-2.0, maximum=2.0, step=0.1,
        description="Discourage any token that already appeared.",
    )  # fmt: skip
    frequency_penalty: float = _opt(
        0.0, label="Frequency penalty", group="Sampling", flags=("--frequency-penalty",),
        minimum=-2.0, maximum=2.0, step=0.1,
        description="Discourage tokens in proportion to how often they appeared.",
    )  # fmt: skip
    max_tokens: int = _opt(
        2048, label="Max reply tokens", group="Sampling", flags=("-n", "--max-tokens"),
        minimum=0, maximum=MAX_CTX, special={0: "until the context is full"},
        description="Stop the reply after this many tokens (0: until the context is full).",
    )  # fmt: skip
    seed: int = _opt(
        -1, label="Sampling seed", group="Sampling", flags=("--sampling-seed",),
        minimum=-1, maximum=0xFFFFFFFF, special={-1: "random"},
        description="Seed for sampling; a fixed seed repeats the same reply (-1: random).",
    )  # fmt: skip
    stop: tuple[str, ...] = _opt(
        (), label="Stop strings", group="Sampling", flags=("--stop",),
        description="End the reply when the model writes one of these strings.",
    )  # fmt: skip
    system_prompt: str = _opt(
        "", label="System prompt", group="Prompt", flags=("--system",),
        description="Instructions the model sees before the conversation.",
    )  # fmt: skip
    # --- how long the model stays loaded after a reply (the window's; the host keeps it) ---
    keep_alive: int = _opt(
        KEEP_ALIVE_AS_PREFERENCES, label="Keep loaded after a reply", group="Memory",
        minimum=KEEP_ALIVE_AS_PREFERENCES, maximum=7 * 86400, unit="s", kind="keep_alive",
        special={KEEP_ALIVE_AS_PREFERENCES: "as in Preferences", **KEEP_ALIVE_CHOICES},
        cli=False,
        description="How long the model stays loaded once a reply has ended. Until unloaded: "
        "it stays until you unload it and is never unloaded to make room for another model. "
        "Unload after each reply: its memory is free between replies (Load brings it back). "
        "A duration: unloaded when it has not replied for that long, or sooner if another "
        "model needs the memory. A model you load stays loaded until its first reply.",
    )  # fmt: skip
    # --- dynamic context: what a chat does at the maximum ---------------------------------
    ctx_full: str = _opt(
        "stop", label="When the context is full", group="Context", flags=("--ctx-full",),
        choices=CTX_FULL_CHOICES,
        description="What a chat does when a reply reaches the end of the largest context: "
        "stop (and offer Continue, which leaves the oldest turns out), drop-oldest (leave "
        "the oldest turns out and go on by itself) or refuse (stop; nothing is left out).",
    )  # fmt: skip


def option(cls: type, name: str) -> Option:
    """The declaration of field `name` of LoadSettings or SamplingSettings."""
    return next(f.metadata["option"] for f in fields(cls) if f.name == name)


def options(cls: type) -> list[tuple[str, Any, Option]]:
    """(name, default, Option) for every field of a settings class, in declaration order."""
    return [(f.name, f.default, f.metadata["option"]) for f in fields(cls)]


def from_dict(cls: type, data: dict[str, Any]) -> tuple[Any, list[Problem]]:
    """Build settings from a dict (a preset file, the CLI), keeping defaults for bad values.

    Unknown names and values of the wrong type are reported, never silently dropped.
    """
    problems: list[Problem] = []
    kwargs: dict[str, Any] = {}
    known = {f.name: f for f in fields(cls)}
    for key, value in data.items():
        if key not in known:
            problems.append(Problem("warning", f"Unknown setting '{key}' ignored.", "unknown", key))
            continue
        if _is_auto(known[key].metadata["option"], value):
            kwargs[key] = None
            continue
        try:
            kwargs[key] = _coerce(known[key].default, value)
            if known[key].metadata["option"].kind == "endpoints":
                kwargs[key] = split_endpoints(kwargs[key])
        except (TypeError, ValueError):
            label = known[key].metadata["option"].label
            problems.append(
                Problem("error", f"{label}: {value!r} is not a valid value.", "type", key)
            )
    return cls(**kwargs), problems


def _is_auto(opt: Option, value: Any) -> bool:
    """A setting whose special values include None ("auto") takes None or that word."""
    if None not in opt.special:
        return False
    return value is None or (isinstance(value, str) and value.lower() == opt.special[None])


def to_dict(settings: Any) -> dict[str, Any]:
    """Plain JSON-able dict of every field."""
    d = dataclasses.asdict(settings)
    for k, v in d.items():
        if isinstance(v, tuple):
            d[k] = list(v)
    return d


def _coerce(default: Any, value: Any) -> Any:
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in (
            "1",
            "true",
            "on",
            "yes",
            "0",
            "false",
            "off",
            "no",
        ):
            return value.lower() in ("1", "true", "on", "yes")
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise TypeError
    if isinstance(default, int):
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise TypeError
        return int(value)
    if isinstance(default, float):
        if isinstance(value, bool):
            raise TypeError
        return float(value)
    if isinstance(default, tuple):
        if isinstance(value, str):
            return (value,)
        return tuple(str(v) for v in value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise TypeError
        return value
    return value


def _range_problems(settings: Any) -> list[Problem]:
    problems = []
    for name, _, opt in options(type(settings)):
        value = getattr(settings, name)
        if opt.choices is not None and value not in opt.choices:
            problems.append(Problem(
                "error",
                f"{opt.label}: '{value}' is not a known type; choose one of {', '.join(opt.choices)}.",
                "unknown_choice", name,
            ))  # fmt: skip
        elif isinstance(value, int | float) and not isinstance(value, bool):
            if value in opt.special:
                continue
            if value != value:  # NaN
                problems.append(Problem("error", f"{opt.label} is not a number.", "range", name))
            elif opt.minimum is not None and value < opt.minimum:
                problems.append(Problem(
                    "error", f"{opt.label} is {value}; it must be at least {_fmt(opt.minimum)}.",
                    "range", name,
                ))  # fmt: skip
            elif opt.maximum is not None and value > opt.maximum:
                problems.append(Problem(
                    "error", f"{opt.label} is {value}; it can be at most {_fmt(opt.maximum)}.",
                    "range", name,
                ))  # fmt: skip
    return problems


def check_ranges(settings: Any) -> list[Problem]:
    """Range and choice problems of any object of declared settings."""
    return _range_problems(settings)


def _fmt(x: float) -> str:
    return f"{int(x):,}" if float(x).is_integer() else f"{x:g}"


def validate(
    settings: LoadSettings,
    info: GGUFInfo | None = None,
    available_bytes: int | None = None,
    total_bytes: int | None = None,
    vram_bytes: list[int] | None = None,
    headroom: float = 0.0,
) -> list[Problem]:
    """Every problem with these load settings (for this model, on this machine).

    available_bytes / total_bytes: free and total system RAM; vram_bytes: free memory per
    GPU (the memory checks are skipped when these are None); headroom: the fraction of free
    memory kept back (memory.usable). Errors stop a load; warnings say what llama.cpp will
    do differently from what was asked.
    """
    problems = _range_problems(settings)
    bad_types = {p.field for p in problems if p.code == "unknown_choice"}

    for which, name in (("V", settings.type_v), ("K", settings.type_k)):
        fname = "type_" + which.lower()
        if fname in bad_types:
            continue
        # "auto" turns flash attention on for a quantized V cache; only "off" refuses it.
        if which == "V" and name in QUANTIZED_KV_TYPES and settings.flash_attn is False:
            problems.append(Problem(
                "error",
                f"A quantized V cache ({name}) needs flash attention: turn flash attention "
                "on, or use an f16 V cache.",
                "v_needs_flash_attn", "type_v",
            ))  # fmt: skip
        if info is not None and name in QUANTIZED_KV_TYPES:
            head = info.head_dim_k if which == "K" else info.head_dim_v
            block = kv_block_size(name)
            if head % block:
                problems.append(Problem(
                    "error",
                    f"{which} cache type {name} stores values in blocks of {block}, which do not "
                    f"divide this model's {which} head size of {head}; use f16, bf16 or f32.",
                    "kv_block_size", fname,
                ))  # fmt: skip

    if (
        settings.n_ctx >= CTX_ALIGN
        and settings.n_ctx % CTX_ALIGN
        and "n_ctx" not in _fields(problems)
    ):
        rounded = settings.normalized().n_ctx
        problems.append(Problem(
            "warning",
            f"Context {settings.n_ctx:,} will be rounded up to {rounded:,} (llama.cpp uses "
            f"multiples of {CTX_ALIGN}).",
            "ctx_rounded", "n_ctx",
        ))  # fmt: skip
    # Against the rounded context: llama.cpp cuts the batch to what it really allocates.
    if settings.n_batch > settings.initial_ctx and "n_batch" not in _fields(problems):
        problems.append(Problem(
            "warning",
            f"Batch size {settings.n_batch:,} is larger than the context; it will be "
            f"{settings.normalized().n_batch:,}.",
            "batch_gt_ctx", "n_batch",
        ))  # fmt: skip
    if settings.n_ubatch > settings.n_batch and "n_ubatch" not in _fields(problems):
        problems.append(Problem(
            "warning",
            f"Micro-batch size {settings.n_ubatch:,} is larger than the batch size "
            f"{settings.n_batch:,}; it will be {settings.normalized().n_ubatch:,}.",
            "ubatch_gt_batch", "n_ubatch",
        ))  # fmt: skip
    if settings.use_mlock and not settings.use_mmap:
        pass  # valid: the whole file is read and locked
    problems += _spec_problems(settings, info)
    problems += _rpc_problems(settings)
    if info is not None:
        problems += _model_problems(settings, info)
        if available_bytes is not None and not any(p.is_error for p in problems):
            problems += _memory_problems(
                settings, info, available_bytes, total_bytes, vram_bytes, headroom
            )
    return problems


def _spec_problems(settings: LoadSettings, info: GGUFInfo | None) -> list[Problem]:
    """Speculative decoding: sizes that contradict each other, and a draft model that cannot
    draft for this one (llama.cpp's compatibility rule, read from both files' metadata)."""
    problems = []
    if settings.spec == "off":
        return problems
    if settings.spec == "lookup" and settings.spec_ngram_min > settings.spec_ngram_max:
        problems.append(Problem(
            "error",
            f"Lookup: the shortest match ({settings.spec_ngram_min}) is longer than the longest "
            f"({settings.spec_ngram_max}); lower the first or raise the second.",
            "spec_ngram", "spec_ngram_min",
        ))  # fmt: skip
    if settings.draft_min > settings.draft_max:
        problems.append(Problem(
            "error",
            f"Draft at least ({settings.draft_min}) is more than draft at most "
            f"({settings.draft_max}): no guess would ever be checked.",
            "draft_min", "draft_min",
        ))  # fmt: skip
    n_batch = settings.normalized().n_batch
    if settings.draft_max + 1 > n_batch:
        problems.append(Problem(
            "warning",
            f"A guess of {settings.draft_max} tokens is checked in a batch of "
            f"{settings.draft_max + 1}, more than the batch size {n_batch}; guesses will be "
            f"at most {n_batch - 1} tokens.",
            "draft_gt_batch", "draft_max",
        ))  # fmt: skip
    if settings.spec == "draft":
        from app.engine.gguf_info import draft_problems

        if not settings.model_draft:
            problems.append(Problem(
                "error",
                "Speculative decoding with a draft model needs a draft model file: choose a "
                "small model of the same family (-md FILE), or use lookup instead.",
                "no_draft", "model_draft",
            ))  # fmt: skip
        else:
            problems += draft_problems(settings.model_draft, info)
    return problems


def _rpc_problems(settings: LoadSettings) -> list[Problem]:
    """Remote devices: each a HOST:PORT (whether it answers is checked before a load)."""
    problems = [
        Problem("error", f"Remote devices: {why}", "rpc_endpoint", "rpc")
        for why in filter(None, map(endpoint_problem, settings.rpc))
    ]
    if settings.rpc and settings.n_gpu_layers == 0 and not problems:
        problems.append(Problem(
            "warning",
            "GPU layers is 0, so no layer goes to the remote devices: set GPU layers to -1 "
            "(all) or to how many layers the remote devices and GPUs should hold.",
            "rpc_no_layers", "n_gpu_layers",
        ))  # fmt: skip
    return problems


def _fields(problems: list[Problem]) -> set[str | None]:
    return {p.field for p in problems}


def _model_problems(settings: LoadSettings, info: GGUFInfo) -> list[Problem]:
    problems = []
    n_ctx = settings.normalized().n_ctx
    if info.n_ctx_train and n_ctx > info.n_ctx_train:
        scaled = settings.rope_freq_scale not in (0.0, 1.0) or (
            info.rope_scaling_type not in (None, "none") and (info.rope_scaling_factor or 1) > 1
        )
        if not scaled:
            factor = info.n_ctx_train / n_ctx
            problems.append(Problem(
                "warning",
                f"Context {n_ctx:,} is beyond the {info.n_ctx_train:,} tokens this model was "
                f"trained on; without RoPE scaling, replies degrade past {info.n_ctx_train:,} "
                f"tokens. Lower the context, or set RoPE scale to {factor:.2g}.",
                "ctx_beyond_training", "n_ctx",
            ))  # fmt: skip
    if settings.n_gpu_layers > info.n_layers + 1:
        problems.append(Problem(
            "warning",
            f"GPU layers {settings.n_gpu_layers} is more than the model's {info.n_layers} "
            "layers (+ output); all of them will be offloaded.",
            "ngl_gt_layers", "n_gpu_layers",
        ))  # fmt: skip
    return problems


def _memory_problems(
    settings: LoadSettings,
    info: GGUFInfo,
    available: int,
    total: int | None,
    vram: list[int] | None,
    headroom: float = 0.0,
) -> list[Problem]:
    from app.engine import memory
    from app.engine.gguf_info import human_bytes

    est = memory.estimate(info, settings, gpu_free=vram or [])
    need = est.host_bytes
    if need <= memory.usable(available, headroom):
        return []
    best = memory.largest_context(info, settings, available, gpu_free=vram or [], headroom=headroom)
    hint = (
        f" The largest context that fits with {settings.type_k}/{settings.type_v} KV is {best:,}."
        if best
        else " Even the smallest context does not fit: the weights alone are too big."
    )
    too_big = total is not None and need > total
    kept = f" and {headroom:.0%} of it is kept as headroom" if headroom > 0 else ""
    return [Problem(
        "error" if too_big else "warning",
        f"Loading with context {settings.normalized().n_ctx:,} needs about "
        f"{human_bytes(need)} of RAM, but {human_bytes(available)} is free{kept}"
        + (f" ({human_bytes(total)} in all)" if too_big and total else "")
        + "." + hint,
        "memory", "n_ctx",
    )]  # fmt: skip


def validate_sampling(settings: SamplingSettings) -> list[Problem]:
    """Range problems in sampling settings."""
    problems = _range_problems(settings)
    if any(not s for s in settings.stop):
        problems.append(Problem("error", "A stop string is empty.", "empty_stop", "stop"))
    return problems


# --- CLI flags generated from the declarations ------------------------------------------


def add_arguments(parser: argparse.ArgumentParser, cls: type, title: str, prefix: str = "") -> None:
    """Add one flag per field of `cls`, named as llama.cpp names it, default None (unset).

    `prefix` keeps the destinations of two classes apart (both have a `seed`).
    """
    group = parser.add_argument_group(title)
    for name, default, opt in options(cls):
        if not opt.cli:
            continue
        dest = prefix + name
        flags = list(opt.flags) or [f"--{name.replace('_', '-')}"]
        help_ = opt.description
        if opt.special:
            help_ += " " + ", ".join(f"{k}: {v}" for k, v in opt.special.items())
        help_ += f" [default: {default!r}]"
        if isinstance(default, bool) and None in opt.special:
            _add_tristate(group, flags, dest, opt.special[None], help_)
        elif isinstance(default, bool):
            group.add_argument(
                *flags, dest=dest, default=None, action=argparse.BooleanOptionalAction, help=help_
            )
        elif isinstance(default, tuple):
            group.add_argument(*flags, dest=dest, default=None, action="append", help=help_)
        else:
            kind = type(default)
            group.add_argument(
                *flags,
                dest=dest,
                default=None,
                type=kind,
                choices=opt.choices,
                metavar=name.upper() if opt.choices is None else None,
                help=help_,
            )


def _add_tristate(group, flags: list[str], dest: str, auto: str, help_: str) -> None:
    """`-fa` (on), `-fa on|off|auto` as llama.cpp spells it, and `--no-flash-attn` (off).
    The flag stores the word; from_args() turns it into True, False or None."""
    group.add_argument(
        *flags, dest=dest, default=None, nargs="?", const="on", choices=("on", "off", auto),
        type=str.lower, help=help_ + f" (on, off or {auto}; alone: on)",
    )  # fmt: skip
    negative = next(f for f in flags if f.startswith("--")).replace("--", "--no-", 1)
    group.add_argument(
        negative, dest=dest, action="store_const", const="off", help=argparse.SUPPRESS
    )


def from_args(cls: type, args: argparse.Namespace, base: Any = None, prefix: str = "") -> Any:
    """Settings from parsed CLI flags: flags given override `base` (or the defaults)."""
    base = base if base is not None else cls()
    changes = {}
    for name, _, opt in options(cls):
        value = getattr(args, prefix + name, None) if opt.cli else None
        if value is None:
            continue
        if None in opt.special and isinstance(value, str):  # a tri-state flag's word
            value = None if value == opt.special[None] else value == "on"
        changes[name] = value
    if "stop" in changes:
        changes["stop"] = tuple(changes["stop"])
    if "rpc" in changes:  # --rpc A:1,B:2 and/or --rpc A:1 --rpc B:2
        changes["rpc"] = split_endpoints(changes["rpc"])
    return dataclasses.replace(base, **changes)
