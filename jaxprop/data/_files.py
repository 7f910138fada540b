"""Finding a dataset's files on disk, and the errors that say where to get them.

jaxprop never downloads anything: a missing file is a ``FileNotFoundError`` that names
the file, the directory searched and where the data comes from.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

__all__ = ["find_file", "locate_dir", "require_file"]


def _never_downloads(source: str) -> str:
    return f"jaxprop never downloads data: {source}"


def find_file(directory: Path, names: Sequence[str]) -> Path | None:
    """The first of ``names`` (alternative spellings of one file) present in ``directory``."""
    for candidate in names:
        path = directory / candidate
        if path.is_file():
            return path
    return None


def locate_dir(name: str, root: str | os.PathLike | None, subdirs: Sequence[str],
               first_file: Sequence[str], source: str) -> Path:
    """The directory holding a dataset's files: ``root`` itself or one of its ``subdirs``.

    Args:
      name: the dataset's name, for messages.
      root: the folder the user gave (``data.root``).
      subdirs: folders inside ``root`` that may hold the files instead (for example
        ``cifar-10-batches-py`` when ``root`` is the folder it was extracted into).
      first_file: the accepted spellings of one file that must be there.
      source: where the user gets the files, for the message.

    Returns:
      The first of ``root``, ``root/subdirs[0]``, ... that holds ``first_file``.

    Raises:
      FileNotFoundError: ``root`` is None or missing, or none of the folders holds the file.
    """
    if root is None:
        raise FileNotFoundError(
            f"{name}: no data directory given (data.root is not set); {_never_downloads(source)}"
        )
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(
            f"{name}: data directory '{root}' does not exist or is not a directory; "
            f"{_never_downloads(source)}"
        )
    searched = [root] + [root / sub for sub in subdirs]
    for directory in searched:
        if directory.is_dir() and find_file(directory, first_file) is not None:
            return directory
    where = ", ".join(f"'{d}'" for d in searched)
    raise FileNotFoundError(
        f"{name}: expected file '{first_file[0]}' not found in directory '{root}' "
        f"(searched {where}); {_never_downloads(source)}"
    )


def require_file(name: str, directory: Path, names: Sequence[str], source: str) -> Path:
    """The path of a required file (any of its accepted spellings ``names``) in ``directory``.

    Raises:
      FileNotFoundError: naming the file and the directory, when none of the spellings is there.
    """
    path = find_file(directory, names)
    if path is None:
        also = f" (or {', '.join(repr(n) for n in names[1:])})" if len(names) > 1 else ""
        raise FileNotFoundError(
            f"{name}: expected file '{names[0]}'{also} not found in directory '{directory}'; "
            f"{_never_downloads(source)}"
        )
    return path
