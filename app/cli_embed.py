"""`hearth embed FILE [TEXT ...]`: embedding vectors as JSON, through a model host.

Each TEXT is one input (none: one input per line of stdin). The model loads in embedding mode
in a supervised worker of this process's own host, as for an API client (the load settings
flags are `hearth run`'s). stdout gets one JSON object:
`{"model", "embeddings": [[...], ...], "tokens": [...], "truncated": N}`, the vectors in the
order of the inputs and normalized to length 1 unless --no-normalize.

Exit codes: 0 done, 1 unusable file or engine error, 2 invalid settings or no input, 3 the
engine crashed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from app.cli import EXIT_FAIL, EXIT_OK, EXIT_USAGE
from app.engine import gguf_info, settings
from app.engine.protocol import Crashed, Embeddings, Error

EXIT_CRASH = 3


def configure_embed(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="a .gguf model file")
    parser.add_argument("texts", nargs="*", metavar="TEXT", help="inputs (none: lines of stdin)")
    parser.add_argument(
        "--no-truncate",
        dest="truncate",
        action="store_false",
        help="refuse an input longer than the embedding context instead of cutting it",
    )
    parser.add_argument(
        "--no-normalize",
        dest="normalize",
        action="store_false",
        help="print the model's own vectors, not scaled to length 1",
    )
    settings.add_arguments(parser, settings.LoadSettings, "load settings")


def run_embed(args: argparse.Namespace) -> int:
    from app.cli_model import print_problems

    load = settings.from_args(settings.LoadSettings, args)
    texts = list(args.texts) or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    if not texts:
        print("Nothing to embed: give TEXT arguments or lines on stdin.", file=sys.stderr)
        return EXIT_USAGE
    result = gguf_info.inspect(args.file)
    if result.info is None or not result.usable:
        print_problems(result.problems)
        return EXIT_FAIL
    problems = settings.validate(load, result.info)
    print_problems([p for p in problems if p.is_error])
    if any(p.is_error for p in problems):
        return EXIT_USAGE
    return asyncio.run(_embed(args, load, texts))


async def _embed(args: argparse.Namespace, load: settings.LoadSettings, texts: list[str]) -> int:
    from app.engine.host import ModelHost
    from app.engine.host_types import HostError

    host = ModelHost()
    try:
        request = await host.embed(
            args.file,
            texts,
            truncate=args.truncate,
            normalize=args.normalize,
            settings=load,
            keep_alive=-1,  # until this command ends and closes the host
        )
        end = None
        async for event in request.stream():
            if isinstance(event, Error):
                print(f"error: {event.message}", file=sys.stderr)
            end = event
    except HostError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FAIL
    finally:
        await host.close()
    if isinstance(end, Crashed):
        print(end.message, file=sys.stderr)
        return EXIT_CRASH
    if not isinstance(end, Embeddings):
        return EXIT_FAIL
    if end.truncated:
        print(
            f"note: {end.truncated} input(s) cut to the embedding context of {end.limit:,} tokens.",
            file=sys.stderr,
        )
    report = {
        "model": args.file,
        "embeddings": [list(v) for v in end.vectors],
        "tokens": list(end.token_counts),
        "truncated": end.truncated,
    }
    print(json.dumps(report))
    return EXIT_OK
