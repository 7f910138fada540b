"""JAX's persistent compilation cache, so that a second run of a config skips compiling."""

from __future__ import annotations

import os
from pathlib import Path

import jax

__all__ = ["enable_compilation_cache"]


def enable_compilation_cache(path: str | os.PathLike | None = None) -> str | None:
    """Turns on JAX's persistent compilation cache, so a rerun skips compiling.

    The folder is ``path``, else ``$JAXPROP_CACHE_DIR``, else ``~/.cache/jaxprop/xla``;
    ``JAXPROP_CACHE_DIR=off`` leaves the cache off. Every compiled program is cached, however
    fast it compiled or small it is. If a cache folder is already set (by the user or an
    earlier call) it is kept.

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
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    # JAX decides once per process whether the cache is on: make it look again.
    from jax.experimental.compilation_cache import compilation_cache

    compilation_cache.reset_cache()
    return str(folder)
