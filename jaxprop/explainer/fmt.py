"""How numbers look in the table and on the circuit: the lecture's two decimals.

Small arrays (a few elements) are written out; bigger ones are summarised by their shape and
their min / mean / max, so a [64, 100] weight matrix stays one short line.
"""

from __future__ import annotations

import numpy as np

SMALL = 6
"""Arrays with at most this many elements are written out in full."""

SHORT_CHARS = 30
"""On the circuit, a small array written out must also fit in this many characters."""


def number(v: float) -> str:
    """One number the way the slides write it: ``-4``, ``0.73``, ``-0.20``, ``1.2e-05``."""
    v = float(v)
    if not np.isfinite(v):
        return str(v)
    if v == int(v) and abs(v) < 1e6:
        return str(int(v))
    if 0.01 <= abs(v) < 1e4:
        return f"{v:.2f}"
    return f"{v:.2g}"


def shape(s: tuple[int, ...]) -> str:
    """A shape as the lecture writes it: ``[2, 4]``."""
    return "[" + ", ".join(str(n) for n in s) + "]"


def value(x, small: int = SMALL) -> str:
    """A scalar, a small array written out, or ``[N, D] min .. mean .. max ..``.

    ``None`` is written ``-`` (no gradient, or a symbolic-zero tangent); a tuple (the two
    outputs of a copy gate) is written as ``(a, b)``.
    """
    return _text(x, small, None, lambda a: f"{shape(a.shape)} min {number(a.min())} mean "
                                           f"{number(a.mean())} max {number(a.max())}")


def short(x, small: int = 6) -> str:
    """A shorter form for the picture: small arrays in full, others ``[N, D] lo..hi``."""
    return _text(x, small, SHORT_CHARS,
                 lambda a: f"{shape(a.shape)} {number(a.min())}..{number(a.max())}")


def _text(x, small: int, max_chars: int | None, summary) -> str:
    if x is None:
        return "-"
    if isinstance(x, tuple):
        return "(" + ", ".join(_text(e, small, max_chars, summary) for e in x) + ")"
    a = np.asarray(x)
    if a.dtype == bool:
        a = a.astype(np.int8)
    if a.ndim == 0:
        return number(a)
    if a.size <= small and (max_chars is None or len(_nested(a)) <= max_chars):
        return _nested(a)
    return summary(a)


def _nested(a: np.ndarray) -> str:
    if a.ndim == 0:
        return number(a)
    return "[" + ", ".join(_nested(e) for e in a) + "]"
