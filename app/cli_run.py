"""`hearth run FILE "PROMPT"`: load a model through a model host and stream a reply.

The host (app.engine.host) is this process's own: the same code the window and the API use,
with the model in a supervised worker process.

Tokens go to stdout as they arrive; the load progress, the timings and every message go to
stderr. Ctrl+C cancels the running load or reply (a second Ctrl+C quits at once).

Exit codes: 0 done, 1 unusable file or engine error, 2 invalid settings, 3 the engine
crashed, 130 cancelled.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import signal
import sys
import threading

from app.cli import EXIT_FAIL, EXIT_OK, EXIT_USAGE
from app.engine import gguf_info, settings
from app.engine.protocol import (
    ChatMessage,
    ContextGrown,
    ContextLimited,
    Crashed,
    Error,
    Finished,
    Loaded,
    LoadProgress,
    Token,
)

EXIT_CRASH, EXIT_CANCELLED = 3, 130


def configure_run(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="a .gguf model file")
    parser.add_argument("prompt", help="the prompt (with --chat: the user's message)")
    parser.add_argument("--chat", action="store_true", help="use the model's chat template")
    parser.add_argument("--json", action="store_true", help="print one JSON object at the end")
    parser.add_argument(
        "--engine-in-process",
        action="store_true",
        help="run llama.cpp in this process (no crash protection; for debugging)",
    )
    settings.add_arguments(parser, settings.LoadSettings, "load settings")
    settings.add_arguments(parser, settings.SamplingSettings, "sampling settings", prefix="s_")


def run_run(args: argparse.Namespace) -> int:
    from app.cli_model import print_problems

    load = settings.from_args(settings.LoadSettings, args)
    sampling = settings.from_args(settings.SamplingSettings, args, prefix="s_")
    result = gguf_info.inspect(args.file)
    if result.info is None or not result.usable:
        print_problems(result.problems)
        return EXIT_FAIL
    problems = settings.validate(load, result.info) + settings.validate_sampling(sampling)
    print_problems([p for p in problems if p.is_error or p.code != "ctx_rounded"])
    if any(p.is_error for p in problems):
        return EXIT_USAGE
    return _Runner(args, load, sampling).run()


class _Runner:
    """One load and one reply through a model host of this process's own."""

    def __init__(self, args, load, sampling):
        self.args = args
        self.load = load
        self.sampling = sampling
        self.tty = sys.stderr.isatty()
        self.cancelled = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.loading: asyncio.Future | None = None
        self.request = None
        self.report: dict = {"file": args.file}

    def run(self) -> int:
        previous = signal.signal(signal.SIGINT, self._on_sigint)
        try:
            return asyncio.run(self._main())
        finally:
            signal.signal(signal.SIGINT, previous)

    async def _main(self) -> int:
        from app.engine.host import ModelHost

        self.loop = asyncio.get_running_loop()
        host = ModelHost(in_process=self.args.engine_in_process)
        host.subscribe(self._on_host_event)
        try:
            return await self._load_and_generate(host)
        finally:
            await host.close()

    def _on_sigint(self, _sig, _frame) -> None:
        if self.cancelled.is_set():
            raise KeyboardInterrupt
        self.cancelled.set()
        print("\nCancelling… (Ctrl+C again to quit at once)", file=sys.stderr)
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self._cancel_current)

    def _cancel_current(self) -> None:
        if self.request is not None:
            self.request.cancel()
        elif self.loading is not None:
            self.loading.cancel()

    async def _load_and_generate(self, host) -> int:
        from app.engine.host_types import HostError

        # keep_alive -1: the model stays until this command ends and closes the host.
        self.loading = asyncio.ensure_future(
            host.ensure_loaded(self.args.file, self.load, keep_alive=-1)
        )
        try:
            event = (await self.loading).loaded
        except asyncio.CancelledError:
            return self._end(Finished("", "cancelled"))
        except HostError as e:
            if self.tty:
                print(file=sys.stderr)
            if e.crash is not None:
                return self._end(e.crash)
            self._on_event(Error(str(e), None, e.details))
            return self._end(Finished("", "error"))
        finally:
            self.loading = None
        if self.tty:
            print(file=sys.stderr)
        applied = event.applied
        differences = applied.differences(event.settings) if applied else []
        self.report["load"] = {
            "n_ctx": event.n_ctx,
            "n_ctx_max": event.context_max,
            "seconds": round(event.load_seconds, 3),
            "settings": settings.to_dict(event.settings),
            # What llama.cpp really used (flash attention "auto" resolved), and where it
            # differs from what was asked.
            "applied": dataclasses.asdict(applied) if applied else None,
            "differences": differences,
            # Where llama.cpp's log put the layers and the KV cache (remote devices: RPC0...).
            "placement": {
                "layers": dict(event.placement),
                "kv": {k: v for k, v in event.buffers.kv.items()},
            },
        }
        ran = applied.summary() if applied else event.settings.summary()
        if event.n_ctx_max > event.n_ctx:
            ran += f" · grows up to {event.n_ctx_max}"
        print(
            f"Loaded {event.description} in {event.load_seconds:.2f} s: {ran}{_spec_words(event)}",
            file=sys.stderr,
        )
        for line in differences:
            print(f"note: {line}", file=sys.stderr)
        if event.settings.rpc:
            print(_placement_words(event), file=sys.stderr)
        if self.cancelled.is_set():  # Ctrl+C came as the load finished
            return self._end(Finished("", "cancelled"))
        if self.args.chat:
            messages = [ChatMessage("user", self.args.prompt)]
            self.request = await host.generate(self.args.file, messages, sampling=self.sampling)
        else:
            self.request = await host.generate(
                self.args.file, prompt=self.args.prompt, sampling=self.sampling
            )
        async for event in self.request.stream():
            self._on_event(event)
        return self._end(event)

    def _on_host_event(self, event) -> None:
        from app.engine.host_types import WorkerEvent

        if isinstance(event, WorkerEvent) and isinstance(event.event, LoadProgress):
            self._on_event(event.event)

    def _on_event(self, event) -> None:
        if isinstance(event, Token) and not self.args.json:
            sys.stdout.write(event.text)
            sys.stdout.flush()
        elif isinstance(event, LoadProgress) and self.tty:
            print(f"\rLoading… {event.fraction:4.0%}", end="", file=sys.stderr, flush=True)
        elif isinstance(event, ContextGrown):
            self.report.setdefault("context_growths", []).append({
                "from": event.n_ctx_from, "to": event.n_ctx, "seconds": round(event.seconds, 4),
                "carried": event.carried,
            })  # fmt: skip
            how = "" if event.carried else ", tokens re-read"
            print(
                f"\n[context grew {event.n_ctx_from} -> {event.n_ctx} tokens in "
                f"{event.seconds * 1000:.0f} ms{how}]",
                file=sys.stderr,
            )
        elif isinstance(event, ContextLimited):
            print(f"\n{event.message}", file=sys.stderr)
        elif isinstance(event, Error):
            print(f"error: {event.message}", file=sys.stderr)
            for line in event.details[1:]:
                print(f"  {line}", file=sys.stderr)

    def _end(self, event) -> int:
        if isinstance(event, Crashed):
            print(f"\n{event.message}", file=sys.stderr)
            for line in event.last_log_lines[-8:]:
                print(f"  | {line}", file=sys.stderr)
            self._emit_json(crashed=event.message)
            return EXIT_CRASH
        assert isinstance(event, Finished)
        if not self.args.json:
            print()
        if event.reason == "cancelled":
            print("Cancelled.", file=sys.stderr)
            self._emit_json(reason="cancelled", text=event.text)
            return EXIT_CANCELLED
        if event.reason == "error":
            self._emit_json(reason="error")
            return EXIT_FAIL
        t = event.timings
        if t is not None:
            print(
                f"TTFT {t.ttft_s * 1000:.0f} ms · prompt {t.prompt_tokens} tokens "
                f"({t.prompt_eval_tokens} evaluated) at {t.prompt_tps:.1f} tok/s · "
                f"{t.completion_tokens} tokens at {t.gen_tps:.1f} tok/s · stop: {event.reason}"
                + (" (context full)" if event.context_full else ""),
                file=sys.stderr,
            )
            if t.spec is not None:
                print(
                    f"Speculative decoding ({t.spec.kind}): {t.spec.accepted} of "
                    f"{t.spec.drafted} guessed tokens accepted ({t.spec.acceptance:.0%}) "
                    f"in {t.spec.steps} checks",
                    file=sys.stderr,
                )
        self._emit_json(
            reason=event.reason,
            context_full=event.context_full,
            text=event.text,
            timings=None
            if t is None
            else {
                "ttft_s": t.ttft_s,
                "prompt_tokens": t.prompt_tokens,
                "prompt_eval_tokens": t.prompt_eval_tokens,
                "prompt_tps": t.prompt_tps,
                "completion_tokens": t.completion_tokens,
                "gen_tps": t.gen_tps,
                "spec": t.spec.as_dict() if t.spec is not None else None,
            },
        )
        return EXIT_OK

    def _emit_json(self, **fields) -> None:
        if self.args.json:
            self.report.update(fields)
            print(json.dumps(self.report, ensure_ascii=False))


def _spec_words(loaded: Loaded) -> str:
    """', speculative decoding: lookup' / ', draft model llama 1B Q8_0' / ''."""
    spec = loaded.settings.spec
    if spec == "draft":
        return f", speculative decoding with the draft model {loaded.draft_description}"
    return f", speculative decoding: {spec}" if spec != "off" else ""


def _placement_words(loaded: Loaded) -> str:
    """'Layers: RPC0 2, CPU 1 · KV cache: RPC0[127.0.0.1:50052] 16.0 MiB' (from the log)."""
    from app.engine.gguf_info import human_bytes

    layers = ", ".join(f"{dev} {n}" for dev, n in loaded.placement) or "not logged"
    kv = ", ".join(f"{dev} {human_bytes(n)}" for dev, n in loaded.buffers.kv.items())
    return f"Layers: {layers} · KV cache: {kv or 'not logged'}"
