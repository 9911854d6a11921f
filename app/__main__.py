"""Entry point: `python -m app`, the `hearth` command and the windowed launcher."""

import sys


def main(argv: list[str] | None = None) -> int:
    """Run Hearth: a CLI subcommand, or the window when given none (or a model path)."""
    if getattr(sys, "frozen", False):  # the engine worker must start inside a frozen bundle
        import multiprocessing

        multiprocessing.freeze_support()
    from app import earlyinit

    earlyinit.init()
    from app import cli

    return cli.main(sys.argv[1:] if argv is None else argv)


def main_gui() -> int:
    """The windowed launcher the installers use: same as `hearth`, never a console."""
    return main()


if __name__ == "__main__":
    sys.exit(main())
