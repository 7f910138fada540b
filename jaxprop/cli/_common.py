"""What the commands share: the settings arguments, ``--keys``, and warnings as one line."""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings

__all__ = ["add_settings_arguments", "add_overwrite_argument", "print_keys",
           "warnings_as_lines"]


def add_settings_arguments(p: argparse.ArgumentParser, config_help: str, out_help: str) -> None:
    """``--config``, ``--set KEY=VALUE`` (repeatable), ``--out`` and ``--keys``."""
    p.add_argument("--config", metavar="PATH", help=config_help)
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="KEY=VALUE",
                   help="override a setting by its dotted name, e.g. optimizer.lr=1e-3: a TOML "
                        "literal (bare words are strings; a list key also takes a,b,c). "
                        "Repeatable.")
    p.add_argument("--out", metavar="DIR", help=out_help)
    p.add_argument("--keys", action="store_true",
                   help="list every setting with its default, choices and meaning, and exit")


def add_overwrite_argument(p, what: str = "run") -> None:
    """``--overwrite``: start afresh in an ``--out`` that holds something, moved aside first."""
    p.add_argument("--overwrite", action="store_true",
                   help=f"start afresh even if --out holds a {what} or other files: they are "
                        "moved to a sibling folder <out>.old-N first (nothing is deleted)")


def print_keys(schema) -> int:
    """Prints every key of a settings schema (``--keys``); returns exit code 0."""
    from jaxprop import _settings

    print(_settings.describe(schema))
    return 0


@contextlib.contextmanager
def warnings_as_lines(command: str):
    """Shows each Python warning as one ``jaxprop COMMAND: warning: ...`` line."""

    def show(message, category, filename, lineno, file=None, line=None):
        print(f"jaxprop {command}: warning: {message}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = show
        yield
