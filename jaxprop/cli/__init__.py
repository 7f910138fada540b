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

USER_ERRORS = (ValueError, TypeError, OSError, MemoryError)
"""Exceptions that report bad input or a bad environment (a config value, a shape, a missing,
unwritable or full file, a folder in use): shown as one line, exit code 2. ``OSError`` covers
``FileNotFoundError``, ``FileExistsError``, ``PermissionError``, ``NotADirectoryError`` and a
full disk. An exception of any type raised in the user's own code (a function given to
``explain`` or ``check``, a model named as ``module:attr``) is the user's too: one line with
its type, message and the user's line, exit code 2 (``_common.user_code_error``). Anything
else is a bug in jaxprop and is reported as an internal error, exit code 1."""

EXIT_USER_ERROR = 2


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


def describe_error(err: BaseException) -> str:
    """One line for a user error: the message, with an OSError's file but not its errno."""
    if isinstance(err, OSError) and err.strerror:
        text = err.strerror + (f": {err.filename!r}" if err.filename else "")
    else:
        text = str(err) or type(err).__name__
    return " ".join(text.split())  # one line, whatever the message held


def main(argv: list[str] | None = None) -> int:
    """Runs ``jaxprop COMMAND ...`` (``argv``, default ``sys.argv[1:]``); returns the exit code.

    SIGINT and SIGTERM are handled from the first line here to the last
    (``jaxprop._signals``): before JAX is imported, they stop the process with one line and
    exit code 130 or 143; during training the epoch in flight is finished and saved first.
    Called with ``argv`` (from Python) the previous handlers are put back on return; as the
    console script (no ``argv``) the signals are ignored from the return on, so that the
    process exits with the code returned, not killed while the interpreter shuts down.
    """
    from jaxprop._signals import GUARD, Stop

    ours = not GUARD.installed and GUARD.install()  # first: before argparse, before JAX
    command = None
    try:
        try:
            parser = build_parser()
            args = parser.parse_args(argv)
            command = args.command
            code = int(args.func(args) or 0)
            GUARD.check()  # a Stop that Python swallowed (a gc callback) is raised here
            return code
        finally:
            GUARD.mute()
    except Stop as stop:
        if os.environ.get("JAXPROP_DEBUG"):
            import traceback

            traceback.print_exc()
        if command is None and not stop.detail:
            stop.detail = "nothing was written"  # still parsing the arguments
        print(f"{_prog(command)}: {stop}", file=sys.stderr)
        return stop.exit_code
    except KeyboardInterrupt:
        print(f"{_prog(command)}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - the CLI never shows a bare traceback
        if os.environ.get("JAXPROP_DEBUG"):
            raise
        from jaxprop.cli._common import user_code_error

        users = user_code_error(err)
        if users is not None or isinstance(err, USER_ERRORS):
            print(f"{_prog(command)}: error: {users or describe_error(err)}", file=sys.stderr)
            return EXIT_USER_ERROR
        print(
            f"{_prog(command)}: internal error: {type(err).__name__}: {err}\n"
            "(rerun with JAXPROP_DEBUG=1 for the traceback, and please report it)",
            file=sys.stderr,
        )
        return 1
    finally:
        if ours and argv is not None:
            GUARD.uninstall()  # called from Python: the caller's handlers again
        elif ours:
            GUARD.ignore()  # the console script: exit with this code, whatever arrives now


def _prog(command: str | None) -> str:
    return f"jaxprop {command}" if command else "jaxprop"


if __name__ == "__main__":
    sys.exit(main())
