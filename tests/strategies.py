"""Hypothesis strategies for the property tests: shapes, broadcasting pairs, and values on a
grid that keeps clear of every kink.

Values come from the grid 0.5 k + offset. With offset 0.25 for one input and 0 for the
other, two inputs are never equal (no max tie) and a 0.25-offset input is never 0 (no ReLU
kink), yet hypothesis can still shrink them.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

MAX_SIDE = 3


def shapes(min_rank: int = 0, max_rank: int = 3) -> st.SearchStrategy[tuple[int, ...]]:
    return hnp.array_shapes(min_dims=min_rank, max_dims=max_rank, min_side=1, max_side=MAX_SIDE)


@st.composite
def broadcast_pairs(draw) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Two shapes that broadcast together, NumPy's way: trailing axes aligned, and each axis
    equal or 1 in one of them; either may have fewer axes."""
    full = draw(shapes(0, 3))
    out = []
    for _ in range(2):
        rank = draw(st.integers(0, len(full)))
        tail = full[len(full) - rank:]
        out.append(tuple(1 if draw(st.booleans()) else n for n in tail))
    return out[0], out[1]


def grid_values(shape, offset: float = 0.0, low: int = -4, high: int = 4):
    """Arrays of 0.5 k + offset, k in [low, high]."""
    return hnp.arrays(np.float64, shape, elements=st.integers(low, high)).map(
        lambda k: 0.5 * k + offset)


def positive_values(shape):
    """Values in [0.5, 2.5]: inside the domain of log and 1/x, away from the pole."""
    return hnp.arrays(np.float64, shape, elements=st.floats(0.5, 2.5, allow_subnormal=False))


def unit_values(shape):
    """Values in [-0.9, 0.9]: inside the domain of asin, acos, atanh and erf_inv."""
    return hnp.arrays(np.float64, shape, elements=st.floats(-0.9, 0.9, allow_subnormal=False))


def above_one_values(shape):
    """Values in [1.5, 3]: inside the domain of acosh."""
    return hnp.arrays(np.float64, shape, elements=st.floats(1.5, 3.0, allow_subnormal=False))


def normal_values(shape):
    return hnp.arrays(np.float64, shape, elements=st.floats(-2.0, 2.0, allow_subnormal=False))


@st.composite
def scores_and_labels(draw):
    """Scores [N, C] on the grid and labels in [0, C). Hinge margins s_j - s_y + 1 are then
    multiples of 0.5 and are often exactly 0: the kink, which every mode must treat alike."""
    n, c = draw(st.integers(1, 4)), draw(st.integers(2, 4))
    scores = draw(grid_values((n, c)))
    labels = draw(hnp.arrays(np.int32, (n,), elements=st.integers(0, c - 1)))
    return scores, labels
