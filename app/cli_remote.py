"""`hearth remote add|list|remove`: remote servers whose models Hearth uses as its own.

    hearth remote add URL [--name NAME] [--token TOKEN] [--flavour openai|ollama]
    hearth remote list [--json]
    hearth remote remove NAME

`add` contacts the server first (its models listed, the flavour detected when not given)
and saves nothing if that fails. Their models are `MODEL@NAME` in `hearth list`, the
window and the local API (app.engine.remote).
"""

from __future__ import annotations

import argparse
import json
import sys

from app.cli import EXIT_FAIL, EXIT_OK
from app.engine import remote
from app.engine.remote import FLAVOURS, RemoteError, RemoteStore


def configure_remote(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = sub.add_parser("add", help="add a remote server (another Hearth, Ollama, vLLM, ...)")
    add.add_argument("url", help="its base URL, e.g. http://gpu-box:11434")
    add.add_argument("--name", help="what its models are suffixed with (default: HOST:PORT)")
    add.add_argument("--token", help="a bearer token it needs (kept in the OS keyring)")
    add.add_argument(
        "--flavour", choices=FLAVOURS, help="its API (default: detected; Ollama's is tried first)"
    )
    listed = sub.add_parser("list", help="list the remote servers and their models")
    listed.add_argument("--json", action="store_true", help="print JSON instead of a table")
    remove = sub.add_parser("remove", help="remove a remote server (and its token)")
    remove.add_argument("name", help="the server's name, as `hearth remote list` shows it")


def run_remote(args: argparse.Namespace) -> int:
    store = RemoteStore()
    try:
        if args.action == "add":
            return _add(store, args)
        if args.action == "list":
            return _list(store, args.json)
        return _remove(store, args.name)
    except RemoteError as e:
        print(str(e), file=sys.stderr)
        return EXIT_FAIL


def _add(store: RemoteStore, args: argparse.Namespace) -> int:
    server, models = remote.add_server(args.url, args.name, args.token, args.flavour, store)
    names = ", ".join(remote.api_name(server.name, m.name) for m in models) or "no models yet"
    print(f"Added {server.name} ({server.flavour} server at {server.url}): {names}.")
    return EXIT_OK


def _list(store: RemoteStore, as_json: bool) -> int:
    servers = store.servers()
    models = remote.library_models(store)
    if as_json:
        print(json.dumps({
            "servers": [s.to_dict() for s in servers],
            "models": [m.to_dict() for m in models],
        }, indent=2, ensure_ascii=False))  # fmt: skip
        return EXIT_OK
    if not servers:
        print("No remote servers. Add one with `hearth remote add URL`.")
        return EXIT_OK
    width = max(len(s.name) for s in servers)
    for s in servers:
        print(f"{s.name:<{width}}  {s.flavour:<6}  {s.url}")
        for m in models:
            if remote.server_of(m.path) == s.name:
                print(f"  ! {m.problem}" if m.problem else f"  {m.name}")
    return EXIT_OK


def _remove(store: RemoteStore, name: str) -> int:
    if not store.remove(name):
        names = ", ".join(s.name for s in store.servers()) or "none"
        print(f"There is no remote server named {name} (servers: {names}).", file=sys.stderr)
        return EXIT_FAIL
    print(f"Removed {name}; its models are no longer listed.")
    return EXIT_OK
