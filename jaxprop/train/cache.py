"""JAX's persistent compilation cache, so that a second run of a config skips compiling."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import jax

__all__ = ["enable_compilation_cache", "remove_torn_entries"]

CHECKED = ".jaxprop-checked"
"""A file in the cache folder whose time is when ``remove_torn_entries`` last looked: only
entries written since then are read again."""


def enable_compilation_cache(path: str | os.PathLike | None = None) -> str | None:
    """Turns on JAX's persistent compilation cache, so a rerun skips compiling.

    The folder is ``path``, else ``$JAXPROP_CACHE_DIR``, else ``~/.cache/jaxprop/xla``;
    ``JAXPROP_CACHE_DIR=off`` leaves the cache off. Every compiled program is cached, however
    fast it compiled or small it is. If a cache folder is already set (by the user or an
    earlier call) it is kept. Entries that an earlier run left truncated are removed first,
    quietly (``remove_torn_entries``): JAX would warn about each at every run.

    Returns:
      The cache folder in use, or None.
    """
    current = jax.config.jax_compilation_cache_dir
    if current:
        return current
    path = path or os.environ.get("JAXPROP_CACHE_DIR") or "~/.cache/jaxprop/xla"
    if str(path).lower() == "off":
        return None
    folder = Path(path).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None  # a read-only home: run without the cache
    remove_torn_entries(folder)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    # JAX decides once per process whether the cache is on: make it look again.
    from jax.experimental.compilation_cache import compilation_cache

    compilation_cache.reset_cache()
    return str(folder)


def remove_torn_entries(folder: str | os.PathLike) -> list[str]:
    """Removes the cache entries written since the last look that cannot be read back.

    JAX writes an entry in place, so a run stopped mid-write, a full disk or a file size
    limit (``ulimit -f``) leaves it truncated; JAX then warns at every later run that it
    cannot read it, and never replaces it. Such an entry is removed here (with its ``-atime``
    file), and the program is compiled and cached again. Only entries newer than the last
    look (the time of the file ``CHECKED``, less 2 s for coarse file times) are read.

    Returns:
      The names of the entries removed.
    """
    try:
        from jax._src.compilation_cache import decompress_executable
    except ImportError:  # another JAX: its entries are its own business
        return []
    folder = Path(folder)
    stamp = folder / CHECKED
    try:
        since = stamp.stat().st_mtime - 2.0
    except OSError:
        since = float("-inf")
    started = time.time()
    removed = []
    for entry in folder.glob("*-cache"):
        try:
            if entry.stat().st_mtime < since:
                continue
            data = entry.read_bytes()
        except OSError:
            continue
        try:
            decompress_executable(data)
        except Exception:  # noqa: BLE001 - zlib's or zstd's error: truncated or damaged
            with contextlib.suppress(OSError):
                entry.unlink()
                removed.append(entry.name)
            with contextlib.suppress(OSError):
                (folder / (entry.name.removesuffix("-cache") + "-atime")).unlink()
    with contextlib.suppress(OSError):
        stamp.touch()
        os.utime(stamp, (started, started))
    return removed
