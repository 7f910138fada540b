"""The ``jaxprop`` command line: ``jaxprop train | sweep | compare | explain | check``.

Each command lives in its own module here, which adds its parser with
``register(subparsers)`` and sets ``func(args) -> int`` on it; arguments that several commands
share are in ``_common``. Nothing imports JAX until a command runs, so ``jaxprop --help``,
``jaxprop COMMAND --help`` and ``jaxprop --version`` answer at once. Errors in what the user
gave (a config key, a missing file, a shape) are printed as one line naming what was wrong,
never as a traceback; set ``JAXPROP_DEBUG=1`` to see the traceback anyway.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from jaxprop._version import __version__

COMMAND_MODULES = ("jaxprop.cli.train", "jaxprop.cli.sweep", "jaxprop.cli.compare",
                   "jaxprop.cli.explain", "jaxprop.cli.check")

USER_ERRORS = (ValueError, TypeError, FileNotFoundError, IsADirectoryError, NotADirectoryError,
               PermissionError, MemoryError)
"""Exceptions that report bad input (a config value, a shape, a missing file): shown as one
line. Anything else is a bug in jaxprop and is reported as an internal error."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxprop",
        description="Backpropagation the way the lecture teaches it, compiled by XLA.",
    )
    parser.add_argument("--version", action="version", version=f"jaxprop {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"jaxprop {args.command}: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as err:
        if os.environ.get("JAXPROP_DEBUG"):
            raise
        print(f"jaxprop {args.command}: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # noqa: BLE001 - the CLI never shows a bare traceback
        if os.environ.get("JAXPROP_DEBUG"):
            raise
        print(
            f"jaxprop {args.command}: internal error: {type(err).__name__}: {err}\n"
            "(rerun with JAXPROP_DEBUG=1 for the traceback, and please report it)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
