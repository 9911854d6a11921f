"""The `hearth` command: headless subcommands, or the window when given none.

    hearth                      open the window
    hearth MODEL.gguf           open the window with that model's card
    hearth inspect FILE         what a GGUF file is, and whether it is usable
    hearth estimate FILE ...    what loading it costs in memory, and what fits
    hearth bench FILE ...       KV cache types x flash attention measured here; a recommendation
    hearth embed FILE TEXT ...  embedding vectors of the texts (or of stdin's lines), as JSON
    hearth rpc-serve            offer this machine's devices to other Hearths (llama.cpp RPC)

The subcommands use the same engine code as the window and never import Qt.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2

# name -> (module, help); each module has configure(parser) and run(args) -> int.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "inspect": ("app.cli_model", "show a GGUF model's metadata and any problems"),
    "estimate": ("app.cli_model", "estimate the memory a model needs, and what fits"),
    "run": ("app.cli_run", "load a model and stream a reply to a prompt"),
    "embed": ("app.cli_embed", "print embedding vectors of texts as JSON"),
    "ps": ("app.cli_ps", "list the models a running Hearth has loaded"),
    "search": ("app.cli_hub", "search Hugging Face for GGUF models"),
    "pull": ("app.cli_hub", "download a GGUF model from Hugging Face"),
    "list": ("app.cli_library", "list the models in the local library"),
    "serve": (
        "app.cli_serve",
        "serve the library's models over an OpenAI- and Ollama-compatible API",
    ),
    "bench": ("app.cli_bench", "measure KV cache types x flash attention here, and recommend"),
    "remote": ("app.cli_remote", "add, list or remove remote servers whose models Hearth uses"),
    "rpc-serve": ("app.cli_rpc", "offer this machine's devices to other Hearths (llama.cpp RPC)"),
}


def _module(name: str):
    import importlib

    return importlib.import_module(SUBCOMMANDS[name][0])


def build_parser(
    command: str,
) -> tuple[argparse.ArgumentParser, Callable[[argparse.Namespace], int]]:
    """The parser and handler for one subcommand (modules load only for the one used)."""
    module = _module(command)
    parser = argparse.ArgumentParser(prog=f"hearth {command}", description=SUBCOMMANDS[command][1])
    name = command.replace("-", "_")
    configure = getattr(module, f"configure_{name}")
    configure(parser)
    return parser, getattr(module, f"run_{name}")


def gui_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hearth",
        description="Hearth: run large language models on your own machine.",
        epilog="subcommands: "
        + "; ".join(f"{n}: {h}" for n, (_, h) in SUBCOMMANDS.items())
        + ". Run `hearth SUBCOMMAND --help` for each.",
    )
    parser.add_argument("files", nargs="*", help="GGUF model files to open")
    parser.add_argument(
        "--engine-in-process",
        action="store_true",
        help="run the engine in a thread of the window's process (no crash protection)",
    )
    parser.add_argument(
        "--self-test",
        action="store_true",
        help="open the window offscreen, load a tiny generated model, stream a reply, report",
    )
    parser.add_argument("--version", action="version", version=_version())
    return parser


def _version() -> str:
    from app import __version__

    return f"Hearth {__version__}"


def main(argv: list[str]) -> int:
    """Dispatch to a subcommand, or open the window."""
    if argv and argv[0] in SUBCOMMANDS:
        parser, handler = build_parser(argv[0])
        args = parser.parse_args(argv[1:])
        try:
            return handler(args)
        except KeyboardInterrupt:
            print("\nInterrupted.", file=sys.stderr)
            return 130
        except BrokenPipeError:
            # `hearth list | head`: the reader left; not an error. Point stdout at devnull so
            # the interpreter's final flush does not raise again.
            import os

            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
    args = gui_parser().parse_args(argv)
    if args.self_test:
        from app.selftest import run_self_test

        return run_self_test(args)
    from app.ui.application import run_gui

    return run_gui(args)
