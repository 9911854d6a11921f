"""`hearth serve`: the library's models over OpenAI- and Ollama-compatible HTTP.

    hearth serve [--host 127.0.0.1] [--port 11435] [--token T] [--allow-origin ORIGIN ...]
                 [--keep-alive 5m] [--max-loaded N] [--max-queue N]

Models load on the first request that names them (the names `hearth list` shows) and
unload after keep_alive idle. Ctrl+C or SIGTERM stops cleanly: the listening socket closes,
open replies are cancelled, the workers shut down. Exit codes: 0 stopped, 1 could not
listen, 2 invalid options.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

from app.cli import EXIT_FAIL, EXIT_OK, EXIT_USAGE


def configure_serve(parser: argparse.ArgumentParser) -> None:
    from app.api.security import DEFAULT_HOST, DEFAULT_PORT
    from app.api.server import DEFAULT_MAX_QUEUE

    parser.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help=f"address to listen on [default: {DEFAULT_HOST}, this machine only]; 0.0.0.0 "
        "lets other machines connect (use --token then)",
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"[default: {DEFAULT_PORT}]")
    parser.add_argument(
        "--token",
        default=os.environ.get("HEARTH_API_TOKEN") or None,
        help="require 'Authorization: Bearer TOKEN' on every request [default: "
        "$HEARTH_API_TOKEN, else none]",
    )
    parser.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="let web pages from ORIGIN call the API (repeatable; patterns like "
        "'http://localhost:*'; '*' allows every page)",
    )
    parser.add_argument(
        "--keep-alive",
        default="5m",
        help="how long an idle model stays loaded: '5m', '1h', '0' (unload after each "
        "request), '-1' (forever) [default: 5m]",
    )
    parser.add_argument(
        "--max-loaded", type=int, help="most models loaded at once [default: as many as fit]"
    )
    parser.add_argument(
        "--max-queue",
        type=int,
        default=DEFAULT_MAX_QUEUE,
        help=f"requests running or waiting before new ones get 503 [default: {DEFAULT_MAX_QUEUE}]",
    )
    parser.add_argument(
        "--engine-in-process",
        action="store_true",
        help="run llama.cpp in this process (no crash protection; for debugging)",
    )


def run_serve(args: argparse.Namespace) -> int:
    from app.api.errors import ApiError
    from app.api.params_ollama import parse_duration

    try:
        keep_alive = parse_duration(args.keep_alive, "--keep-alive")
    except ApiError as e:
        print(f"hearth serve: {e.message}", file=sys.stderr)
        return EXIT_USAGE
    if not 0 <= args.port <= 65535:
        print(f"hearth serve: --port must be 0-65535, not {args.port}.", file=sys.stderr)
        return EXIT_USAGE
    for name in ("max_loaded", "max_queue"):
        value = getattr(args, name)
        if value is not None and value < 1:
            print(f"hearth serve: --{name.replace('_', '-')} must be at least 1.", file=sys.stderr)
            return EXIT_USAGE
    return asyncio.run(_serve(args, keep_alive))


async def _serve(args: argparse.Namespace, keep_alive: float) -> int:
    from app.api.security import AccessPolicy
    from app.api.server import ApiServer
    from app.engine.host import ModelHost

    policy = AccessPolicy(
        host=args.host, port=args.port, token=args.token, allow_origins=tuple(args.allow_origin)
    )
    host = ModelHost(
        max_loaded=args.max_loaded, default_keep_alive=keep_alive, in_process=args.engine_in_process
    )
    server = ApiServer(host, policy, max_queue=args.max_queue)
    try:
        await server.start()
    except OSError as e:
        from app.api.switch import listen_error

        print(f"error: {listen_error(e, args.host, args.port)}", file=sys.stderr)
        await host.close()
        return EXIT_FAIL
    if not policy.loopback_only:
        print(
            f"Warning: listening on {args.host}: other machines on the network can use your "
            "models" + ("." if policy.token else ", and no --token is set."),
            file=sys.stderr,
        )
    from app.api.control_socket import ControlSocket

    control = ControlSocket(host, server.url)  # `hearth ps` asks here
    await control.start()
    print(
        f"Hearth API listening on {server.url} (OpenAI: {server.url}/v1, Ollama: {server.url}). "
        "Ctrl+C stops.",
        file=sys.stderr,
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        print("Stopping…", file=sys.stderr, flush=True)
        # The host's shutdown ends the open replies; the server stops listening meanwhile.
        await asyncio.gather(server.stop(), host.close(), control.close())
    print("Stopped.", file=sys.stderr, flush=True)
    return EXIT_OK
