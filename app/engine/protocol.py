"""The commands and events that cross the engine boundary.

Small frozen dataclasses that pickle: nothing else goes between the window (or the CLI) and
the worker that owns llama.cpp. Commands flow to the worker, events flow back. Every
request carries a `request_id` chosen by the sender, so a late event from a cancelled
request can never be mistaken for the current one.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from app.engine.settings import LoadSettings, SamplingSettings

_ids = itertools.count(1)


def new_request_id(prefix: str = "r") -> str:
    """A request id unique within this process."""
    return f"{prefix}{next(_ids)}"


# --- commands ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: str  # "system" | "user" | "assistant" | "tool"
    content: str
    # More keys for the chat template, as JSON (the API's tool calls of an assistant turn,
    # a tool result's tool_call_id / name); "" for a plain message.
    extra_json: str = ""


def ends_with_reply(messages: Sequence[ChatMessage]) -> bool:
    """Whether a conversation ends with an assistant reply (no tool calls) to go on with."""
    return bool(messages) and messages[-1].role == "assistant" and not messages[-1].extra_json


@dataclass(frozen=True, slots=True)
class Load:
    """Load a model (unloading any current one). `skip_checks` bypasses Hearth's file and
    settings checks: only for tests that must show a crash is survived."""

    path: str
    settings: LoadSettings = field(default_factory=LoadSettings)
    request_id: str = field(default_factory=lambda: new_request_id("load"))
    skip_checks: bool = False


@dataclass(frozen=True, slots=True)
class Unload:
    request_id: str = field(default_factory=lambda: new_request_id("unload"))


@dataclass(frozen=True, slots=True)
class Generate:
    """Stream a reply: to chat `messages` through the model's chat template, or to a raw
    `prompt` (completion)."""

    messages: tuple[ChatMessage, ...] | None = None
    prompt: str | None = None
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    request_id: str = field(default_factory=lambda: new_request_id("gen"))
    suppress_eos: bool = False  # benchmarks: generate exactly max_tokens
    # --- asked for by API clients (app/api) ---
    json_schema: str = ""  # constrain the reply to this JSON schema (through a grammar)
    tools_json: str = ""  # OpenAI-style tool declarations for the chat template, as JSON
    logit_bias: tuple[tuple[int, float], ...] = ()  # (token id, bias) pairs
    # the API's tool_choice as JSON ("" for "auto"); only a remote server reads it, a local
    # model gets a forced choice as json_schema
    tool_choice_json: str = ""
    # --- dynamic context: the chat's Continue ---
    continue_last: bool = False  # the last message is an assistant reply to go on with


@dataclass(frozen=True, slots=True)
class Cancel:
    """Stop the load or generation `request_id` (None: whatever is running)."""

    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class CountTokens:
    """How many tokens `messages` (with the chat template) or `text` take."""

    messages: tuple[ChatMessage, ...] | None = None
    text: str | None = None
    request_id: str = field(default_factory=lambda: new_request_id("count"))


@dataclass(frozen=True, slots=True)
class Embed:
    """Turn each input (a text, or token ids) into one embedding vector, in order, on a
    model loaded with `embedding` on. An input longer than the worker's limit (the tokens
    one batch holds) is cut to it with `truncate`, else refused with the numbers;
    `normalize`: scale each vector to length 1 (OpenAI's and Ollama's /api/embed do)."""

    inputs: tuple[str | tuple[int, ...], ...]
    truncate: bool = True
    normalize: bool = True
    request_id: str = field(default_factory=lambda: new_request_id("embed"))


@dataclass(frozen=True, slots=True)
class Shutdown:
    pass


Command = Load | Unload | Generate | Cancel | CountTokens | Embed | Shutdown


# --- events -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ready:
    """The worker started and imported llama.cpp."""

    pid: int
    gpu_offload: bool
    system_info: str


@dataclass(frozen=True, slots=True)
class LoadProgress:
    request_id: str
    fraction: float


@dataclass(frozen=True, slots=True)
class BufferSizes:
    """What llama.cpp allocated, from its log: device name -> bytes."""

    model: dict[str, int]
    kv: dict[str, int]
    compute: dict[str, int]
    output: dict[str, int]

    def total(self, device_prefix: str = "") -> int:
        return sum(
            v
            for part in (self.model, self.kv, self.compute, self.output)
            for k, v in part.items()
            if k.startswith(device_prefix)
        )


@dataclass(frozen=True, slots=True)
class RemoteDeviceMemory:
    """A remote (llama.cpp RPC) device right after a load: llama.cpp's name ("RPC0"), its
    server, the bytes of this model's buffers there (weights, KV, compute), and the free /
    total memory the server reported then."""

    name: str
    endpoint: str
    placed: int
    free: int
    total: int

    @property
    def label(self) -> str:
        return f"{self.name} {self.endpoint}"


@dataclass(frozen=True, slots=True)
class Loaded:
    request_id: str
    path: str
    settings: LoadSettings  # what was asked (normalized)
    n_ctx: int  # what llama.cpp actually made
    n_ctx_train: int
    n_vocab: int
    n_gpu_layers: int  # layers llama.cpp reports offloaded
    buffers: BufferSizes
    load_seconds: float
    has_chat_template: bool
    description: str  # llama.cpp's model description, e.g. "llama ?B Q8_0"
    # Dynamic context: the most n_ctx may grow to (0: it does not grow; n_ctx is all).
    n_ctx_max: int = 0
    applied: Applied | None = None  # what llama.cpp really used (flash attention resolved)
    draft_description: str = ""  # the draft model's, when spec is "draft"
    # Layers per device as llama.cpp's log assigned them, the output layer counted as one
    # (as -ngl counts): (("CPU", 1), ("RPC0", 2)).
    placement: tuple[tuple[str, int], ...] = ()
    remote_devices: tuple[RemoteDeviceMemory, ...] = ()  # settings.rpc's devices, as loaded

    @property
    def context_max(self) -> int:
        """The largest context this model may reach without a reload."""
        return max(self.n_ctx, self.n_ctx_max)


@dataclass(frozen=True, slots=True)
class ContextGrown:
    """The worker gave the loaded model a larger context during `request_id`, on the same
    weights. `carried`: the KV cache moved over (nothing re-read); False: the tokens
    already read were read again. `kv_bytes`: llama.cpp's KV buffers after the growth."""

    request_id: str | None
    n_ctx_from: int
    n_ctx: int
    n_ctx_max: int
    seconds: float
    carried: bool
    kv_bytes: int


@dataclass(frozen=True, slots=True)
class ContextLimited:
    """The context could not grow as far as the request needed (memory is short, or the
    maximum is reached): `message` says so in a sentence; the context stays `n_ctx`."""

    request_id: str | None
    n_ctx: int
    needed: int
    message: str


@dataclass(frozen=True, slots=True)
class Applied:
    """The values llama.cpp applied, read back from its context and log after a load."""

    n_ctx: int
    type_k: str
    type_v: str
    flash_attn: bool  # resolved: "auto" became on or off
    n_gpu_layers: int  # layers offloaded

    def differences(self, asked: LoadSettings) -> list[str]:
        """Where this differs from what was asked, one sentence each ("auto" resolving
        to on or off is a resolution, not a difference, and is said as such)."""
        s = asked.normalized()
        out = []
        if self.n_ctx != s.initial_ctx:  # a context that grows starts smaller, as asked
            out.append(f"Context {self.n_ctx:,} instead of {s.initial_ctx:,}.")
        if (self.type_k, self.type_v) != (s.type_k, s.type_v) and self.type_k:
            out.append(f"KV cache {self.type_k}/{self.type_v} instead of {s.type_k}/{s.type_v}.")
        if s.flash_attn is None:
            out.append(f"Flash attention auto: {'on' if self.flash_attn else 'off'}.")
        elif self.flash_attn != s.flash_attn:
            out.append(
                f"Flash attention {'on' if self.flash_attn else 'off'} instead of "
                f"{'on' if s.flash_attn else 'off'}."
            )
        return out

    def summary(self) -> str:
        """'n_ctx 8,192 · KV q8_0/q8_0 · FA on'."""
        text = f"n_ctx {self.n_ctx:,} · KV {self.type_k}/{self.type_v} · FA "
        return text + ("on" if self.flash_attn else "off")


@dataclass(frozen=True, slots=True)
class Unloaded:
    request_id: str


@dataclass(frozen=True, slots=True)
class PromptProgress:
    """Prompt tokens evaluated so far, sent after each batch of a multi-batch prompt."""

    request_id: str
    done: int
    total: int


@dataclass(frozen=True, slots=True)
class Token:
    request_id: str
    text: str


@dataclass(frozen=True, slots=True)
class SpecStats:
    """How speculative decoding went in one reply: tokens guessed and tokens the model kept."""

    kind: str  # "lookup" | "draft"
    drafted: int
    accepted: int
    steps: int  # batches the model checked (one per output run)

    @property
    def acceptance(self) -> float:
        """The share of guessed tokens the model kept (0 when nothing was guessed)."""
        return self.accepted / self.drafted if self.drafted else 0.0

    def as_dict(self) -> dict[str, Any]:
        """A plain dict for `hearth run --json` and stored reply stats."""
        return {
            "kind": self.kind,
            "drafted": self.drafted,
            "accepted": self.accepted,
            "acceptance": round(self.acceptance, 4),
            "steps": self.steps,
        }


@dataclass(frozen=True, slots=True)
class Timings:
    """How a request went. Prompt and decode figures come from llama_perf_context."""

    ttft_s: float  # request received -> first token sent
    prompt_tokens: int  # the whole prompt
    prompt_eval_tokens: int  # the part evaluated (the rest was reused from the cache)
    prompt_ms: float
    completion_tokens: int  # tokens the model produced (EOS not counted)
    decode_tokens: int  # single-token decodes (llama.cpp's n_eval); with spec: reply tokens
    decode_ms: float  # with spec: the reply's wall time after the first token
    spec: SpecStats | None = None  # speculative decoding was on

    @property
    def prompt_tps(self) -> float:
        return self.prompt_eval_tokens / (self.prompt_ms / 1000) if self.prompt_ms > 0 else 0.0

    @property
    def gen_tps(self) -> float:
        return self.decode_tokens / (self.decode_ms / 1000) if self.decode_ms > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Finished:
    """A request ended. reason: "stop" (EOS or a stop string), "length" (max tokens or
    context full: `context_full` tells them apart), "cancelled", "error" (an Error event
    came first)."""

    request_id: str
    reason: str
    text: str = ""  # the whole reply, for callers that did not keep the tokens
    timings: Timings | None = None
    context_full: bool = False  # "length" because the context (not max_tokens) ran out


@dataclass(frozen=True, slots=True)
class TokenCount:
    request_id: str
    n_tokens: int
    n_ctx: int


@dataclass(frozen=True, slots=True)
class Embeddings:
    """The answer to Embed: one vector per input, in order, and the tokens each input took
    (after truncation). `limit`: the most tokens one input may have; `truncated`: how many
    inputs were cut to it."""

    request_id: str
    vectors: tuple[tuple[float, ...], ...]
    token_counts: tuple[int, ...]
    limit: int
    seconds: float
    truncated: int = 0


@dataclass(frozen=True, slots=True)
class Log:
    level: str  # "debug" | "info" | "warning" | "error"
    line: str


@dataclass(frozen=True, slots=True)
class Error:
    """Something went wrong that the user can act on; the worker is still usable."""

    message: str
    request_id: str | None = None
    details: tuple[str, ...] = ()  # e.g. every validation problem, llama.cpp's log lines
    # "request": the request itself cannot be served as asked (bad sampling values, a
    # prompt over the context, a schema no grammar can express): the API answers 400.
    kind: str = "engine"


@dataclass(frozen=True, slots=True)
class Crashed:
    """The worker process died. The supervisor can start a fresh one."""

    exit_code: int | None
    signal: str | None  # "SIGSEGV", "SIGABRT", "SIGKILL"...
    message: str  # a sentence for the banner
    last_log_lines: tuple[str, ...]
    running: str  # what the worker was doing ("loading x.gguf (n_ctx 4096, KV f16/f16)")
    request_id: str | None = None  # the request that was running


Event = (
    Ready
    | LoadProgress
    | Loaded
    | ContextGrown
    | ContextLimited
    | Unloaded
    | PromptProgress
    | Token
    | Finished
    | TokenCount
    | Embeddings
    | Log
    | Error
    | Crashed
)


# --- tuning: KV cache types x flash attention (hearth bench, the window's Tune) ----------


@dataclass(frozen=True, slots=True)
class TuneCombo:
    """One combination to measure."""

    type_k: str
    type_v: str
    flash_attn: bool

    @property
    def label(self) -> str:
        """'q8_0/q8_0 + FA' or 'f16/f16'."""
        return f"{self.type_k}/{self.type_v}" + (" + FA" if self.flash_attn else "")


@dataclass(frozen=True, slots=True)
class Tune:
    """Measure every combination on `path`, in a worker of its own: prompt and generation
    speed with `depth` tokens already in the cache, llama.cpp's buffer sizes, and the
    next-token distributions over `quality_text` against f16/f16 without flash attention.
    `settings` gives everything else (n_ctx, GPU layers, threads, batch). Combinations not
    begun within `budget_s` seconds are reported as not measured."""

    path: str
    combos: tuple[TuneCombo, ...]
    settings: LoadSettings
    depth: int
    n_prompt: int
    n_gen: int
    reps: int
    quality_text: str
    quality_tokens: int
    budget_s: float
    request_id: str = field(default_factory=lambda: new_request_id("tune"))


@dataclass(frozen=True, slots=True)
class TuneProgress:
    """`combo`: the index in Tune.combos being measured (-1: loading, the reference)."""

    request_id: str
    combo: int
    fraction: float  # of the whole command
    what: str


@dataclass(frozen=True, slots=True)
class Measurement:
    """What one combination did. `error`: llama.cpp refused it or it was not run (why)."""

    combo: TuneCombo
    pp_tps: float = 0.0
    tg_tps: float = 0.0
    kv_bytes: int = 0  # llama.cpp's KV buffers, from its log
    compute_bytes: int = 0
    total_bytes: int = 0  # model + KV + compute + output buffers
    n_ctx: int = 0
    mean_kl: float = 0.0  # nats, against the reference's next-token distributions
    top1: float = 0.0  # share of positions whose likeliest token matches the reference
    positions: int = 0
    seconds: float = 0.0
    error: str = ""
    # llama.cpp's KV buffers per device, as its log names them ("CPU", "RPC0[host:port]"):
    # where the cache went when the load had remote devices (settings.rpc)
    kv_devices: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class TuneMeasured:
    request_id: str
    combo: int
    measurement: Measurement


Command = Command | Tune
Event = Event | TuneProgress | TuneMeasured


def describe(obj: Any) -> str:
    """A short, log-safe description of a command or event (never prompt text)."""
    name = type(obj).__name__
    rid = getattr(obj, "request_id", None)
    return f"{name}({rid})" if rid else name
