"""What the commands share: the settings arguments, ``--keys``, warnings as one line, and
whose code an exception came from."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import sysconfig
import warnings
from pathlib import Path

__all__ = ["add_settings_arguments", "add_overwrite_argument", "out_folder", "print_keys",
           "warnings_as_lines", "user_code_error"]


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


def out_folder(args, default=None) -> Path | None:
    """``--out`` as a checked Path, or ``default`` when it was not given.

    An empty ``--out ''`` is given, not absent: it is an error naming ``--out``, never the
    default folder (as is a file there, or a NUL in it: ``rundir.check_out_path``).
    """
    if args.out is None:
        return default
    from jaxprop.train.rundir import check_out_path

    return check_out_path(args.out)


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


_JAXPROP_DIR = Path(__file__).resolve().parent.parent
_LIBRARY_DIRS = tuple(Path(p).resolve() for p in {
    sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")})


def _whose(filename: str) -> str:
    """``"jaxprop"``, ``"library"`` (Python's, or an installed package: JAX, numpy) or
    ``"user"`` for the file a frame runs."""
    if filename.startswith("<frozen "):
        return "library"
    if filename.startswith("<"):  # <string>, <stdin>: typed by the user
        return "user"
    path = Path(os.path.abspath(filename))
    if path.is_relative_to(_JAXPROP_DIR):
        return "jaxprop"
    if any(part in ("site-packages", "dist-packages") for part in path.parts) or any(
            path.is_relative_to(d) for d in _LIBRARY_DIRS):
        return "library"
    return "user"


def user_code_error(err: BaseException) -> str | None:
    """One line for an exception raised in the user's own code, or None if it was not.

    An exception is the user's when, of the frames it passed through from jaxprop's command
    inwards, the innermost one that is not a library's (Python's, JAX's) is in the user's
    code rather than in jaxprop: the user's function raised it, itself or through JAX. The
    line gives its type, its message and that frame: ``your code raised RuntimeError: boom
    (at funcs.py:5, in f)``. An exception raised in jaxprop, even on the user's behalf, is
    left to the caller (a user error or a bug of jaxprop's).
    """
    frames, tb = [], err.__traceback__
    while tb is not None:
        frames.append(tb)
        tb = tb.tb_next
    first = next((i for i, t in enumerate(frames)
                  if _whose(t.tb_frame.f_code.co_filename) == "jaxprop"), None)
    if first is None:
        return None
    ours_or_user = [t for t in frames[first:]
                    if _whose(t.tb_frame.f_code.co_filename) != "library"]
    last = ours_or_user[-1]
    code = last.tb_frame.f_code
    if _whose(code.co_filename) != "user":
        return None
    where = code.co_filename
    with contextlib.suppress(ValueError, OSError):
        where = os.path.relpath(where) if Path(where).is_relative_to(Path.cwd()) else where
    message = str(err).split("\n--------")[0]  # not JAX's note on filtered frames
    message = " ".join(message.split())
    text = f"{type(err).__name__}: {message}" if message else type(err).__name__
    return f"your code raised {text} (at {where}:{last.tb_lineno}, in {code.co_name})"
