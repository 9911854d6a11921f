"""The loop that owns llama_cpp.Llama: load, generate (streaming), cancel, count tokens.

This is the only module that imports llama_cpp. It runs in a child process started by the
supervisor (or on a thread, for tests and --engine-in-process), takes commands from a
channel and answers with events (app.engine.protocol). One model per worker; every call
into it happens on the worker's main loop, one at a time. A reader thread takes commands
off the channel so that Cancel acts at once, even in the middle of a load or a long prompt.

What llama-cpp-python 0.3.36 does not offer directly, and how it is reached here:
* load progress and cancel: llama_model_params.progress_callback (returning False aborts
  the load), set by wrapping llama_model_default_params while the Llama is constructed;
* llama.cpp's log: our own llama_log_set callback keeps every line (errors, buffer sizes)
  instead of verbose=False, which would point stderr at /dev/null and hide aborts;
* cancelling a long prompt: the ggml abort callback, installed only while the prompt is
  evaluated (it is called for every graph node, so it stays off while tokens stream);
* timings: llama_perf_context after each request.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import faulthandler
import gc
import json
import logging
import os
import queue
import re
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from app.engine import devices, gguf_info, hardware, rpc, rpc_probe
from app.engine import settings as settings_mod
from app.engine.applied import placement_from_log, placement_problem, read_applied
from app.engine.context_growth import ContextGrowth, PerfCarry
from app.engine.llama_args import llama_kwargs
from app.engine.protocol import (
    BufferSizes,
    Cancel,
    CountTokens,
    Embed,
    Error,
    Finished,
    Generate,
    Load,
    Loaded,
    LoadProgress,
    Log,
    PromptProgress,
    Ready,
    Shutdown,
    Timings,
    Token,
    TokenCount,
    Tune,
    Unload,
    Unloaded,
)
from app.engine.token_limit import TokenLimit

log = logging.getLogger(__name__)

# ggml_log_level (ggml.h): NONE 0, DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5.
_LEVELS = {0: "info", 1: "debug", 2: "info", 3: "warning", 4: "error"}
_MIB = 1024 * 1024


class Channel:
    """Where commands come from and events go: a pipe to the supervisor, or queues."""

    def send(self, obj: Any) -> None:
        raise NotImplementedError

    def recv(self) -> Any:
        """Block for the next command; raise EOFError when the other side is gone."""
        raise NotImplementedError


class PipeChannel(Channel):
    """A multiprocessing Connection, safe to send on from several threads."""

    def __init__(self, conn):
        self._conn = conn
        self._lock = threading.Lock()

    def send(self, obj: Any) -> None:
        with self._lock:
            self._conn.send(obj)

    def recv(self) -> Any:
        return self._conn.recv()


class QueueChannel(Channel):
    """The in-process twin of PipeChannel: commands in one queue, events out another."""

    def __init__(self, commands: queue.Queue, events: queue.Queue):
        self._commands = commands
        self._events = events

    def send(self, obj: Any) -> None:
        self._events.put(obj)

    def recv(self) -> Any:
        obj = self._commands.get()
        if obj is None:
            raise EOFError
        return obj


class _LogCapture:
    """Receives llama.cpp's log lines: keeps the recent ones, forwards the useful ones."""

    def __init__(self, send: Callable[[Any], None]):
        self._send = send
        self.recent: deque[str] = deque(maxlen=400)
        self.errors: list[str] = []  # error/warning lines since mark()
        self.lines_since_mark: list[str] = []
        self.forward_info = False
        self._partial = ""
        self._level = 2
        self._lock = threading.Lock()

    def mark(self) -> None:
        with self._lock:
            self.errors = []
            self.lines_since_mark = []

    def __call__(self, level: int, text: bytes | None, _user: Any) -> None:
        try:
            chunk = (text or b"").decode("utf-8", errors="replace")
            with self._lock:
                if level != 5:
                    self._level = level
                self._partial += chunk
                if "\n" not in self._partial:
                    return
                *lines, self._partial = self._partial.split("\n")
                level = self._level
            for line in lines:
                self._line(level, line.rstrip())
        except Exception:  # a C callback must never raise
            pass

    def _line(self, level: int, line: str) -> None:
        if not line.strip(" ."):
            return
        name = _LEVELS.get(level, "info")
        with self._lock:
            self.recent.append(line)
            self.lines_since_mark.append(line)
            if name in ("warning", "error"):
                self.errors.append(line)
        if name in ("warning", "error") or (name == "info" and self.forward_info):
            self._send(Log(name, line))


class Worker:
    """The command loop. `run()` returns after Shutdown or when the channel closes."""

    def __init__(self, channel: Channel):
        self.channel = channel
        self.llm = None
        self.loaded: Loaded | None = None
        self._commands: queue.Queue = queue.Queue()
        self._cancel = threading.Event()
        self._current: str | None = None  # request id being served
        self._cancelled_ids: set[str] = set()
        self._state_lock = threading.Lock()
        self._formatter = None
        self._abort_cb = None
        self._null_abort = None
        self._abort_installed = False
        self._sampled = [0]  # stopping-criteria calls of the current request
        self._growth: ContextGrowth | None = None  # when the context may grow
        self._load_info: gguf_info.GGUFInfo | None = None
        self._full_calls = 0  # stopping-criteria calls that found the context full
        self._spec = None  # speculative.Speculator while a model loaded with spec is in use

    # --- plumbing -------------------------------------------------------------------

    def send(self, event: Any) -> None:
        self.channel.send(event)

    def run(self) -> None:
        try:
            import llama_cpp
        except Exception as e:  # a broken install: say so, do not die silently
            self.send(Error(f"llama-cpp-python could not be imported: {e}"))
            return
        self.lc = llama_cpp
        self.logs = _LogCapture(self.send)
        self._log_cb = llama_cpp.llama_log_callback(self.logs)  # keep a reference: C holds it
        llama_cpp.llama_log_set(self._log_cb, ctypes.c_void_p(0))
        self._abort_cb = llama_cpp.ggml_abort_callback(lambda _data: self._cancel.is_set())
        self._null_abort = ctypes.cast(None, llama_cpp.ggml_abort_callback)
        info = llama_cpp.llama_print_system_info().decode("utf-8", errors="replace").strip()
        # Not llama_supports_gpu_offload(): it is true in any build with RPC, GPU or not.
        self.send(Ready(os.getpid(), bool(devices.offload_gpus()), info))
        reader = threading.Thread(
            target=self._read_commands, name="hearth-worker-reader", daemon=True
        )
        reader.start()
        try:
            while True:
                cmd = self._commands.get()
                if cmd is None or isinstance(cmd, Shutdown):
                    break
                self._dispatch(cmd)
        finally:
            self._unload_model()

    def _read_commands(self) -> None:
        while True:
            try:
                cmd = self.channel.recv()
            except (EOFError, OSError):
                self._cancel.set()
                self._commands.put(None)  # the supervisor is gone: stop
                return
            if isinstance(cmd, Cancel):
                self._on_cancel(cmd)
                continue
            self._commands.put(cmd)
            if isinstance(cmd, Shutdown):
                self._cancel.set()
                return

    def _on_cancel(self, cmd: Cancel) -> None:
        with self._state_lock:
            if cmd.request_id is None or cmd.request_id == self._current:
                self._cancel.set()
            elif cmd.request_id is not None:
                self._cancelled_ids.add(cmd.request_id)

    def _dispatch(self, cmd: Any) -> None:
        rid = getattr(cmd, "request_id", None)
        with self._state_lock:
            if rid in self._cancelled_ids:
                self._cancelled_ids.discard(rid)
                self.send(Finished(rid, "cancelled"))
                return
            self._current = rid
            self._cancel.clear()
        try:
            if isinstance(cmd, Load):
                self._load(cmd)
            elif isinstance(cmd, Unload):
                self._unload_model()
                self.send(Unloaded(cmd.request_id))
            elif isinstance(cmd, Generate):
                self._generate(cmd)
            elif isinstance(cmd, CountTokens):
                self._count_tokens(cmd)
            elif isinstance(cmd, Embed):
                self._embed(cmd)
            elif isinstance(cmd, Tune):
                from app.engine import tune_worker

                tune_worker.run(self, cmd)
            else:
                self.send(Error(f"Unknown command {type(cmd).__name__}", rid))
        except Exception as e:  # a bug here must not take the worker down
            log.exception("worker command failed")
            self.send(Error(f"The engine failed unexpectedly: {e}", rid))
            self.send(Finished(rid, "error"))
        finally:
            with self._state_lock:
                self._current = None

    def _fail(
        self, rid: str | None, message: str, details: tuple[str, ...] = (), kind: str = "engine"
    ) -> None:
        self.send(Error(message, rid, details, kind))
        self.send(Finished(rid, "error"))

    # --- load -----------------------------------------------------------------------

    def _check(self, cmd: Load) -> list[str] | None:
        """Hearth's checks before llama.cpp sees the file; the error sentences, if any."""
        result = gguf_info.inspect(cmd.path)
        self._load_info = result.info
        problems = list(result.problems)
        if result.info is not None:
            ram = hardware.ram()
            gpus = hardware.offload_gpus(devices.offload_gpus)  # asked here: libllama is loaded
            rpc_probe.remote_devices(cmd.settings.rpc)  # the estimate's reading of them, now
            problems += settings_mod.validate(
                cmd.settings, result.info, ram.available, ram.total, [g.free for g in gpus]
            )
        else:
            problems += settings_mod.validate(cmd.settings)
        errors = [p.message for p in problems if p.is_error]
        for p in problems:
            if not p.is_error:
                self.send(Log("warning", p.message))
        return errors or None

    def _load(self, cmd: Load) -> None:
        self._unload_model()
        self._load_info = None
        if not cmd.skip_checks:
            errors = self._check(cmd)
            if errors:
                self._fail(cmd.request_id, errors[0], tuple(errors))
                return
        s = cmd.settings.normalized()
        started = time.perf_counter()
        self.logs.mark()
        self.logs.forward_info = True
        llm = draft = None
        loading = cmd
        try:
            llm = self._construct(cmd, s)
            draft_settings = s.draft_settings()
            if draft_settings is not None:  # speculative decoding with a draft model
                loading = dataclasses.replace(cmd, path=s.model_draft)
                draft = self._construct(loading, draft_settings)
        except rpc.RpcUnavailable as e:  # before llama.cpp saw the file: a plain sentence
            self.logs.forward_info = False
            if llm is not None:
                llm.close()
            self._fail(cmd.request_id, str(e))
            return
        except Exception as e:
            self.logs.forward_info = False
            if llm is not None:
                llm.close()
            if self._cancel.is_set():
                self.send(Finished(cmd.request_id, "cancelled"))
            else:
                self._fail(cmd.request_id, *self._load_error(loading, e))
            return
        finally:
            self.logs.forward_info = False
        self.llm = llm
        if s.spec != "off":
            from app.engine import speculative

            self._spec = speculative.attach(
                self.lc, llm, s, draft, self._cancel.is_set, self._ensure_capacity
            )
        self._detokenize = _IncrementalDetokenize(llm)
        self._limit = TokenLimit(llm)  # after the speculative loop: it wraps that
        self._formatter = self._chat_formatter(llm)
        lines = list(self.logs.lines_since_mark)
        placement = placement_from_log(lines)
        offloaded = _offloaded_layers(lines, placement)
        misplaced = placement_problem(placement, s)
        if misplaced:
            self.send(Log("warning", misplaced))
        if s.grows:
            self._growth = self._make_growth(cmd, s)
        buffers = parse_buffer_sizes(lines)
        self.loaded = Loaded(
            request_id=cmd.request_id,
            path=cmd.path,
            settings=s,
            n_ctx=llm.n_ctx(),
            n_ctx_train=llm._model.n_ctx_train(),
            n_vocab=llm.n_vocab(),
            n_gpu_layers=offloaded,
            buffers=buffers,
            load_seconds=time.perf_counter() - started,
            has_chat_template=self._formatter is not None,  # a template jinja can render
            description=_model_desc(self.lc, llm),
            n_ctx_max=self._growth.n_ctx_max if self._growth else 0,
            applied=read_applied(lines, s, llm.n_ctx(), offloaded),
            draft_description=_model_desc(self.lc, draft) if draft is not None else "",
            placement=placement,
            remote_devices=rpc.device_memory(s.rpc, buffers) if s.rpc else (),
        )
        self.send(self.loaded)

    def _make_growth(self, cmd: Load, s: settings_mod.LoadSettings) -> ContextGrowth:
        info = self._load_info
        if info is None:
            with contextlib.suppress(Exception):
                info = gguf_info.inspect(cmd.path).info
        return ContextGrowth(self.lc, self.llm, s, info, self.send, self._on_new_context)

    def _on_new_context(self, _ctx) -> None:
        """A grown context has no abort callback yet: install ours if one is in use."""
        if self._abort_installed:
            self._abort_installed = False
            self._set_abort(True)

    def _construct(self, cmd: Load, s: settings_mod.LoadSettings):
        lc = self.lc
        last = [-1.0]

        def progress(fraction: float, _user: Any) -> bool:
            if fraction - last[0] >= 0.01 or fraction >= 1.0:
                last[0] = fraction
                self.send(LoadProgress(cmd.request_id, min(1.0, float(fraction))))
            return not self._cancel.is_set()

        progress_cb = lc.llama_progress_callback(progress)
        lowlevel = lc.llama_cpp
        original = lowlevel.llama_model_default_params

        # Remote devices: probed and registered now (RpcUnavailable before any load), then
        # named in the params with the local GPUs (app/engine/rpc.py says why).
        load_devices = rpc.load_devices(s.rpc)

        def params_with_progress():
            params = original()
            params.progress_callback = progress_cb
            if load_devices is not None:
                params.devices = ctypes.cast(load_devices, ctypes.c_void_p)
            return params

        # verbose=False would point stderr at /dev/null while loading and hide the reason
        # for an abort; our log callback already captures llama.cpp's log.
        kwargs = dict(llama_kwargs(s), verbose=True)
        if s.embedding:
            kwargs.update(self._embedding_kwargs(cmd, s))
        lowlevel.llama_model_default_params = params_with_progress
        # Llama() only takes flash_attn as a bool; "auto" is set on the context params
        # on their way into llama_init_from_model, as the progress callback is above.
        init_from_model = lowlevel.llama_init_from_model

        def init_with_auto_fa(model, params):
            params.flash_attn_type = lowlevel.LLAMA_FLASH_ATTN_TYPE_AUTO
            return init_from_model(model, params)

        if s.flash_attn is None:
            lowlevel.llama_init_from_model = init_with_auto_fa
        try:
            return lc.Llama(model_path=cmd.path, **kwargs)
        finally:
            lowlevel.llama_model_default_params = original
            lowlevel.llama_init_from_model = init_from_model

    def _load_error(self, cmd: Load, exc: Exception) -> tuple[str, tuple[str, ...]]:
        """Turn llama-cpp-python's 'Failed to create llama_context' into the real reason."""
        reasons = [_strip_prefix(line) for line in self.logs.errors]
        reasons = [r for r in reasons if r] or [str(exc)]
        name = os.path.basename(cmd.path)
        what = "create the context for" if "context" in str(exc) else "load"
        main = next((r for r in reversed(reasons) if "failed" not in r.lower()), reasons[-1])
        return f"llama.cpp could not {what} {name}: {main}", tuple(reasons[-10:])

    def _unload_model(self) -> None:
        if self.llm is None:
            return
        if self._spec is not None:
            with contextlib.suppress(Exception):
                self._spec.close()  # the draft model, if any
            self._spec = None
        with contextlib.suppress(Exception):
            self.llm.close()
        self.llm = None
        self.loaded = None
        self._formatter = None
        self._growth = None
        gc.collect()
        _release_free_memory()

    # --- prompts --------------------------------------------------------------------

    def _chat_formatter(self, llm):
        template = llm.metadata.get("tokenizer.chat_template")
        if not template:
            return None
        from llama_cpp import llama_chat_format

        eos, bos = llm.token_eos(), llm.token_bos()
        text = llm._model.token_get_text
        try:
            return llama_chat_format.Jinja2ChatFormatter(
                template=template,
                eos_token=text(eos) if eos != -1 else "",
                bos_token=text(bos) if bos != -1 else "",
                stop_token_ids=[eos],
            )
        except Exception as e:  # a template jinja cannot even parse
            self.send(Log("warning", f"The model's chat template cannot be used: {e}"))
            return None

    def _prompt(
        self,
        messages,
        prompt,
        system_prompt: str = "",
        tools_json: str = "",
        continue_last: bool = False,
    ) -> tuple[list[int], list[str], Any]:
        """Tokens, stop strings and stopping criteria for a chat or a raw prompt.
        `continue_last`: the last message is a reply to go on with, not a finished turn."""
        llm = self.llm
        if messages is None:
            return (
                llm.tokenize((prompt or "").encode("utf-8"), add_bos=True, special=False),
                [],
                None,
            )
        msgs = [_message_dict(m) for m in messages]
        partial = ""
        if continue_last and msgs and msgs[-1]["role"] == "assistant":
            partial = msgs.pop()["content"]  # rendered after the generation prompt, open
        if system_prompt and not any(m["role"] == "system" for m in msgs):
            msgs.insert(0, {"role": "system", "content": system_prompt})
        if self._formatter is not None:
            try:
                tools = json.loads(tools_json) if tools_json else None
                result = self._formatter(messages=msgs, tools=tools)
            except Exception as e:
                raise _UserError(
                    f"The model's chat template failed on this conversation: {e}"
                ) from e
            tokens = llm.tokenize(
                (result.prompt + partial).encode("utf-8"),
                add_bos=not result.added_special,
                special=True,
            )
            stop = (
                result.stop
                if isinstance(result.stop, list)
                else [result.stop]
                if result.stop
                else []
            )
            return tokens, [s for s in stop if s], result.stopping_criteria
        # No template in the file: a plain transcript the model can continue.
        text = "".join(f"{m['role'].capitalize()}: {m['content']}\n" for m in msgs) + "Assistant:"
        text += f" {partial}" if partial else ""
        return llm.tokenize(text.encode("utf-8"), add_bos=True, special=False), ["\nUser:"], None

    # --- generate -------------------------------------------------------------------

    def _generate(self, cmd: Generate) -> None:
        rid = cmd.request_id
        if self.llm is None:
            self._fail(rid, "No model is loaded: load a model first.")
            return
        problems = [p for p in settings_mod.validate_sampling(cmd.sampling) if p.is_error]
        if problems:
            self._fail(rid, problems[0].message, tuple(p.message for p in problems), "request")
            return
        started = time.perf_counter()
        try:
            tokens, stop, criteria = self._prompt(
                cmd.messages,
                cmd.prompt,
                cmd.sampling.system_prompt,
                cmd.tools_json,
                cmd.continue_last,
            )
            grammar = self._grammar(cmd.json_schema)
        except _UserError as e:
            self._fail(rid, str(e), kind="request")
            return
        n_ctx = self._context_max()
        if len(tokens) >= n_ctx:
            self._fail(
                rid,
                f"The conversation takes {len(tokens):,} tokens but the context holds {n_ctx:,}: "
                "shorten it, or reload the model with a larger context.",
                kind="request",
            )
            return
        growth = self._growth
        # Timings count from here: a growth below closes this context and keeps its figures.
        self.lc.llama_perf_context_reset(self.llm._ctx.ctx)
        if growth is not None:
            growth.begin_request(rid)
            if not growth.ensure_capacity(len(tokens) + 1):
                self._fail(rid, growth.limit_message)
                return
        self._stream(cmd, tokens, stop, criteria, started, grammar)

    def _ensure_capacity(self, n_tokens: int) -> bool:
        """Room for n_tokens in the context, grown if it must and may (speculative steps)."""
        return self._growth is None or self._growth.ensure_capacity(n_tokens)

    def _context_max(self) -> int:
        """The most tokens a request may use: the growth maximum, else the context."""
        return self._growth.n_ctx_max if self._growth is not None else self.llm.n_ctx()

    def _grammar(self, json_schema: str):
        """The grammar for an API client's JSON schema (None: unconstrained)."""
        if not json_schema:
            return None
        try:
            return self.lc.LlamaGrammar.from_json_schema(json_schema, verbose=False)
        except Exception as e:  # the converter's own assertion and ValueError messages
            raise _UserError(f"This JSON schema cannot be turned into a grammar: {e}") from e

    def _completion_kwargs(
        self, cmd: Generate, stop: list[str], criteria, grammar=None
    ) -> dict[str, Any]:
        sp = cmd.sampling
        kwargs: dict[str, Any] = dict(
            max_tokens=sp.max_tokens,
            temperature=sp.temperature,
            top_k=sp.top_k,
            top_p=sp.top_p,
            min_p=sp.min_p,
            repeat_penalty=sp.repeat_penalty,
            presence_penalty=sp.presence_penalty,
            frequency_penalty=sp.frequency_penalty,
            stop=list(sp.stop) + stop,
            stream=True,
        )
        if sp.seed >= 0:
            kwargs["seed"] = sp.seed
        if grammar is not None:
            kwargs["grammar"] = grammar
        if cmd.logit_bias:
            kwargs["logit_bias"] = dict(cmd.logit_bias)
        if cmd.suppress_eos:
            import numpy as np

            eos = self.llm.token_eos()

            def no_eos(_ids, scores):
                scores[eos] = -np.inf
                return scores

            kwargs["logits_processor"] = self.lc.LogitsProcessorList([no_eos])
            criteria = None
        # Count sampled tokens (llama-cpp-python reports no usage when streaming): the
        # criteria run once per sampled token, and once more when the stream ends normally.
        counter = self._sampled = [0]

        def count(_ids, _logits) -> bool:
            counter[0] += 1
            return False

        checks = [count, *(criteria or [])]
        self._full_calls = 0
        growth = self._growth
        if growth is not None:
            # The next token needs one more cell. If the context cannot grow to hold it,
            # stop here ("length", context full). create_completion calls the criteria once
            # more after its loop; a context found full only then ended nothing.
            def room(_ids, _logits) -> bool:
                if growth.can_grow_to(self.llm.n_tokens + 1):
                    return False
                self._full_calls += 1
                return True

            checks.append(room)
        kwargs["stopping_criteria"] = self.lc.StoppingCriteriaList(checks)
        return kwargs

    def _stream(
        self, cmd: Generate, tokens: list[int], stop, criteria, started: float, grammar=None
    ) -> None:
        rid = cmd.request_id
        lc = self.lc
        self._set_abort(True)  # a long prompt can be interrupted
        pieces: list[str] = []
        ttft = 0.0
        reason = "stop"
        self._watch_prompt(rid)
        self._detokenize.reset()
        self._limit.max_tokens = cmd.sampling.max_tokens
        if self._spec is not None:
            self._spec.run = None
        stream = self.llm.create_completion(
            prompt=tokens, **self._completion_kwargs(cmd, stop, criteria, grammar)
        )
        try:
            for chunk in stream:
                choice = chunk["choices"][0]
                text = choice.get("text") or ""
                if text:
                    if not pieces:
                        ttft = time.perf_counter() - started
                        self._set_abort(False)
                    pieces.append(text)
                    self.send(Token(rid, text))
                if choice.get("finish_reason"):
                    reason = choice["finish_reason"]
                if self._cancel.is_set():
                    reason = "cancelled"
                    break
        except RuntimeError as e:
            if self._cancel.is_set():  # llama_decode aborted by our callback mid-prompt
                reason = "cancelled"
                self._forget_context()
            else:
                self._fail(rid, f"llama.cpp failed while generating: {e}")
                self._forget_context()
                return
        finally:
            with contextlib.suppress(Exception):
                stream.close()
            self._set_abort(False)
        if self._cancel.is_set():
            reason = "cancelled"
        # Contexts replaced by a growth took their figures with them: add them back.
        perf = PerfCarry()
        perf.add(lc.llama_perf_context(self.llm._ctx.ctx))
        if self._growth is not None:
            perf.add_carry(self._growth.perf)
        # One criteria call ends a complete stream; the token that ended a "stop" reply
        # (EOS or the end of a stop string) is not part of the reply.
        sampled = self._sampled[0] - (0 if reason == "cancelled" else 1)
        full = reason != "cancelled" and self._full_calls >= 2  # see _completion_kwargs
        if full:
            reason = "length"  # the token that did not fit was sampled, not part of the reply
        completion = max(0, sampled - (1 if reason == "stop" or full else 0))
        timings = Timings(
            ttft_s=ttft,
            prompt_tokens=len(tokens),
            prompt_eval_tokens=perf.n_p_eval,
            prompt_ms=perf.t_p_eval_ms,
            completion_tokens=completion,
            decode_tokens=perf.n_eval,
            decode_ms=perf.t_eval_ms,
        )
        if reason == "length" and not full:
            max_tokens = cmd.sampling.max_tokens
            full = max_tokens <= 0 or len(tokens) + max_tokens >= self._context_max()
        if self._spec is not None:
            timings = self._spec.timings(timings)
        self.send(
            Finished(
                rid,
                reason if reason in ("stop", "length", "cancelled") else "stop",
                "".join(pieces),
                timings,
                context_full=full,
            )
        )

    def _watch_prompt(self, rid: str) -> None:
        """Evaluate long prompts batch by batch: report progress, stop between batches when
        cancelled (the abort callback stops a batch already running)."""
        llm = self.llm
        original = type(llm).eval.__get__(llm)

        growth = self._growth

        def eval_in_batches(tokens) -> None:
            if growth is not None and not growth.ensure_capacity(llm.n_tokens + len(tokens)):
                raise RuntimeError(growth.limit_message or "the context is full")
            n, step = len(tokens), llm.n_batch
            if n <= step:
                return original(tokens)
            for start in range(0, n, step):
                if self._cancel.is_set():
                    raise RuntimeError("cancelled")
                original(tokens[start : start + step])
                self.send(PromptProgress(rid, min(n, start + step), n))
            return None

        llm.eval = eval_in_batches

    def _set_abort(self, on: bool) -> None:
        if on == self._abort_installed or self.llm is None:
            return
        cb = self._abort_cb if on else self._null_abort
        self.lc.llama_set_abort_callback(self.llm._ctx.ctx, cb, None)
        self._abort_installed = on

    def _forget_context(self) -> None:
        """After an aborted decode, drop the cached prompt so the next request starts clean."""
        with contextlib.suppress(Exception):
            self.llm.reset()
            mem = self.lc.llama_get_memory(self.llm._ctx.ctx)
            if mem:
                self.lc.llama_memory_clear(mem, True)

    def _count_tokens(self, cmd: CountTokens) -> None:
        if self.llm is None:
            self._fail(cmd.request_id, "No model is loaded: load a model first.")
            return
        try:
            tokens, _, _ = self._prompt(cmd.messages, cmd.text)
        except _UserError as e:
            self._fail(cmd.request_id, str(e))
            return
        # Against the most the context may grow to: what a conversation can use.
        self.send(TokenCount(cmd.request_id, len(tokens), self._context_max()))

    # --- embeddings (app/engine/embedding.py) ---------------------------------------

    def _embedding_kwargs(self, cmd: Load, s: settings_mod.LoadSettings) -> dict[str, Any]:
        """Pooling "auto" on a file without pooling of its own: the last token's vector."""
        from app.engine.embedding import pooling_for_file

        info = self._load_info
        if info is None:
            with contextlib.suppress(Exception):
                info = gguf_info.inspect(cmd.path).info
        if info is None:
            return {}
        pooling = pooling_for_file(s.pooling_type, info.metadata, info.architecture)
        return {} if pooling is None else {"pooling_type": pooling}

    def _embed(self, cmd: Embed) -> None:
        from app.engine import embedding

        rid = cmd.request_id
        if self.llm is None:
            self._fail(rid, "No model is loaded: load a model first.")
            return
        self._set_abort(True)  # a long batch can be interrupted
        try:
            result = embedding.embed(self.lc, self.llm, cmd, self._cancel.is_set)
        except embedding.EmbedError as e:
            self._fail(rid, str(e), kind="request")
            return
        except RuntimeError as e:
            if self._cancel.is_set():  # the decode was aborted by our callback
                self.send(Finished(rid, "cancelled"))
            else:
                self._fail(rid, f"llama.cpp failed while embedding: {e}")
            return
        finally:
            self._set_abort(False)
        self.send(result if result is not None else Finished(rid, "cancelled"))


class _UserError(Exception):
    pass


def _message_dict(m) -> dict[str, Any]:
    """A ChatMessage as the chat template sees it (with an API client's tool-call keys)."""
    msg: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.extra_json:
        msg.update(json.loads(m.extra_json))
    return msg


# --- helpers --------------------------------------------------------------------------------

# A device is "CPU", "CUDA0", "CPU_Mapped" or, remote, "RPC0[10.0.0.2:50052]".
_BUFFER_RE = re.compile(
    r"(?P<dev>[\w.\-]+(?:\[[^\]\s]*\])?)\s+(?P<kind>model|KV|compute|output) buffer size\s*=\s*"
    r"(?P<mib>[\d.]+) MiB"
)
_OFFLOAD_RE = re.compile(r"offloaded (\d+)/(\d+) layers to GPU")


class _IncrementalDetokenize:
    """Makes llama-cpp-python's streaming loop linear in the reply's length.

    Its create_completion detokenizes *every* token generated so far at each new token
    (to look for stop strings), and each detokenize is a Python loop over the tokens: a
    4,000-token reply spent most of its time there, each token costing more than the one
    before. Detokenizing is a concatenation of per-token pieces (plus one leading space
    dropped after a BOS), so a call that extends the longest sequence seen in this reply
    only decodes the new tokens. Other calls (the short tail it also decodes) go to the
    original and leave the memo alone. reset() starts a new reply."""

    def __init__(self, llm):
        self._original = llm.detokenize
        self._bos = llm.token_bos()
        self.reset()
        llm.detokenize = self

    def reset(self) -> None:
        self._tokens: list[int] = []
        self._text = b""

    def __call__(self, tokens, prev_tokens=None, special: bool = False) -> bytes:
        done, n = self._tokens, len(self._tokens)
        if special or len(tokens) < n or tokens[:n] != done:
            return self._original(tokens, prev_tokens=prev_tokens, special=special)
        if len(tokens) == n:
            return self._text
        new = tokens[n:]
        if n == 0 or new[0] == self._bos:  # the original drops a space after a BOS
            text = self._original(tokens, prev_tokens=prev_tokens)
        else:
            text = self._text + self._original(new)
        self._tokens, self._text = list(tokens), text
        return text


def parse_buffer_sizes(lines: list[str]) -> BufferSizes:
    """Bytes per device of each buffer llama.cpp reported while loading."""
    parts: dict[str, dict[str, int]] = {"model": {}, "KV": {}, "compute": {}, "output": {}}
    for line in lines:
        for m in _BUFFER_RE.finditer(line):
            part = parts[m["kind"]]
            part[m["dev"]] = part.get(m["dev"], 0) + int(float(m["mib"]) * _MIB)
    return BufferSizes(parts["model"], parts["KV"], parts["compute"], parts["output"])


def _offloaded_layers(lines: list[str], placement: tuple[tuple[str, int], ...] = ()) -> int:
    """Layers llama.cpp put on a device other than the CPU. From the per-layer assignments
    when logged: a build with RPC (or any GPU backend) logs "offloaded N/N layers to GPU"
    whatever the devices, even when there is none."""
    if placement:
        return sum(n for dev, n in placement if dev != "CPU")
    for line in lines:
        m = _OFFLOAD_RE.search(line)
        if m:
            return int(m[1])
    return 0


def _strip_prefix(line: str) -> str:
    """'llama_init_from_model: quantized V cache needs...' -> 'quantized V cache needs...'"""
    return re.sub(r"^[\w:]+:\s+", "", line.strip()).strip()


def _model_desc(lc, llm) -> str:
    buf = ctypes.create_string_buffer(256)
    with contextlib.suppress(Exception):
        lc.llama_model_desc(llm._model.model, buf, 256)
    return buf.value.decode("utf-8", errors="replace")


def _release_free_memory() -> None:
    """Give freed heap pages back to the OS so an unloaded model really leaves RSS."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            ctypes.CDLL("libc.so.6").malloc_trim(0)


def worker_main(conn, stderr_path: str | None = None) -> None:
    """Entry point of the worker process (multiprocessing spawn target)."""
    os.environ.setdefault("GGML_NO_BACKTRACE", "1")
    # Ctrl+C in a terminal reaches the whole process group: the parent decides what it means
    # (cancel the request), so the worker must not die of it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if stderr_path:
        # Send fd 1 and 2 (llama.cpp's GGML_ASSERT messages, faulthandler's traceback) to a
        # file the supervisor reads after a crash.
        fd = os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(fd, 2)
        os.dup2(fd, 1)
        os.close(fd)
    with contextlib.suppress(Exception):
        faulthandler.enable()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    Worker(PipeChannel(conn)).run()
