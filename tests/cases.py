"""One registry of differentiable cases: every gate, loss and model, and the oracles.

Each :class:`Case` pairs a jaxprop callable with a plain-``jnp`` reference written
independently of it (never calling a jaxprop gate), the inputs to try it at, and which inputs
are differentiable. Inputs are drawn away from the kinks (ReLU at 0, max ties, hinge margins of
0), so that finite differences are valid; the kinks are tested explicitly elsewhere.

Every case runs through ``jaxprop.check`` (:func:`check_battery`), the battery users run on
their own gates: its oracles are central finite differences and JAX's autodiff of the forward
code and of the reference. The CS231n-style NumPy loops :func:`svm_loss_naive` and
:func:`softmax_loss_naive` are oracles of their own for the losses.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Callable

import chex
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import jaxprop
from jaxprop import gates, losses, models, reference
from jaxprop.gate import Gate
from jaxprop.gates import arithmetic
from jaxprop.verify import CHECKS

# Central differences in float64 with step h: the truncation error is h^2 |f'''| / 6 and the
# rounding error about eps_64 |f| / h. At h = 1e-5 with |f| <= 10 and |f'''| <= 100 on these
# inputs (reciprocal at 0.5 is the worst: 6 / x^4 = 96), both are below 2e-9, so agreement to
# FD_ATOL = 1e-7 (on top of RTOL) leaves a margin of 50 and still catches any wrong rule.
FD_STEP = 1e-5
FD_ATOL = 1e-7
RTOL = 1e-6
ATOL = 1e-12  # exact-arithmetic agreement among AD results, up to float64 rounding


@dataclasses.dataclass(frozen=True)
class Case:
    """A function to differentiate, its reference, and where to differentiate it.

    Attributes:
      name: test id.
      fn: the jaxprop callable ``(*args) -> out`` (an array or a pytree).
      ref: plain ``jnp`` reference with the same signature and output structure.
      make_args: ``rng -> args``, drawn away from kinks.
      diff: positions of the differentiable arguments.
      gate: the gate whose rules the case exercises, when one can be swapped in.
      apply: ``(gate, *args) -> out``, ``fn`` with ``gate`` replaced; None if not swappable.
      kind: "gate", "loss" or "model".
      covers: the registry entry the case tests (a gate, loss or model name).
      order2: the case carries its gate's (or entry's) check_grads to order 2, the slowest
        check; every registry entry has at least one such case (a test says so).
      domain: where the property tests draw its inputs: "normal", "positive" (log, 1/x) or
        "grid" (kept off a kink).
      explicit: ``fn`` calls gates itself, so plain ``jax.jvp``/``jax.vjp`` of it run our
        rules too; False for plain ``jnp`` code, which only jaxprop's drivers (and
        ``jaxprop.gated``) trace into gates (the recurrent models).
    """

    name: str
    fn: Callable
    ref: Callable
    make_args: Callable[[np.random.Generator], tuple]
    diff: tuple[int, ...] = (0,)
    gate: Gate | None = None
    apply: Callable | None = None
    kind: str = "gate"
    covers: str = ""
    order2: bool = False
    domain: str = "normal"
    explicit: bool = True

    def args(self) -> tuple:
        """The case's inputs, the same on every call and in every process."""
        rng = np.random.default_rng(zlib.crc32(self.name.encode()))
        return tuple(jax.tree.map(jnp.asarray, a) for a in self.make_args(rng))

    def split(self, fn: Callable, args: tuple):
        """Returns ``(g, dyn)``: ``fn`` as a function of the differentiable inputs only."""

        def g(*dyn):
            full = list(args)
            for i, a in zip(self.diff, dyn, strict=True):
                full[i] = a
            return fn(*full)

        return g, tuple(args[i] for i in self.diff)


# ----------------------------------------------------------------------------- samplers


def normal(rng, shape):
    return rng.normal(size=shape)


def away_from_zero(rng, shape, gap=0.1):
    """Values with |x| >= gap: no ReLU kink within any finite-difference step."""
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(gap, 2.0, size=shape)


def positive(rng, shape):
    """Values in [0.5, 2]: inside the domain of log and 1/x, away from the pole."""
    return rng.uniform(0.5, 2.0, size=shape)


def near_pole(rng, shape):
    """Values in [-0.98, -0.8]: log1p's inputs near its pole at -1, where 1/(1 + x) is large
    (an error of 1e-7 in 1 + x shows), still far enough that a step of 1e-5 resolves it."""
    return rng.uniform(-0.98, -0.8, size=shape)


def untied_pair(rng, x_shape, y_shape, gap=0.1):
    """(x, y) whose broadcast elements differ by at least ``gap``: no max tie."""
    while True:
        x, y = normal(rng, x_shape), normal(rng, y_shape)
        if np.all(np.abs(np.subtract(x, y)) >= gap):
            return x, y


def labels_for(rng, n, c):
    return rng.integers(0, c, size=(n,)).astype(np.int32)


def hinge_scores(rng, n, c, gap=0.1):
    """Scores [N, C] and labels whose margins s_j - s_y + 1 (j != y) all have |.| >= gap."""
    while True:
        s, y = normal(rng, (n, c)), labels_for(rng, n, c)
        margins = s - s[np.arange(n), y][:, None] + 1
        margins[np.arange(n), y] = 1.0
        if np.all(np.abs(margins) >= gap):
            return s, y


# ----------------------------------------------------------------------- plain references


def bcast(*xs):
    """Broadcasts explicitly (the tests run with rank promotion set to "raise")."""
    shape = np.broadcast_shapes(*(np.shape(x) for x in xs))
    return tuple(jnp.broadcast_to(x, shape) for x in xs)


def ref_add(x, y):
    x, y = bcast(x, y)
    return x + y


def ref_mul(x, y):
    x, y = bcast(x, y)
    return x * y


def ref_maximum(x, y):
    x, y = bcast(x, y)
    return jnp.maximum(x, y)


def ref_matmul(x, w):
    return jnp.tensordot(x, w, axes=1)


def ref_sigmoid(x):
    return 1.0 / (1.0 + jnp.exp(-x))


def ref_relu(x):
    return jnp.maximum(x, 0.0)


def ref_norm(x, gamma, beta, axes, eps=1e-5):
    """Normalisation as a JAX user writes it: jnp.mean and jnp.var, unfused."""
    mu = jnp.mean(x, axis=axes, keepdims=True)
    var = jnp.var(x, axis=axes, keepdims=True)
    return gamma * (x - mu) / jnp.sqrt(var + eps) + beta


def ref_batch_norm(x, gamma, beta, eps=1e-5):
    return ref_norm(x, gamma[None, :], beta[None, :], (0,), eps)


def ref_spatial_batch_norm(x, gamma, beta, eps=1e-5):
    return ref_norm(x, gamma[None, :, None, None], beta[None, :, None, None], (0, 2, 3), eps)


def ref_layer_norm(x, gamma, beta, eps=1e-5):
    lead = (None,) * (x.ndim - 1)
    return ref_norm(x, gamma[lead], beta[lead], (x.ndim - 1,), eps)


KEEP = np.array([[1, 0, 1, 1], [0, 1, 1, 0], [1, 1, 0, 1]], bool)
"""A dropout mask: the kept units of a [3, 4] input."""


ref_svm = reference.svm_loss
ref_softmax = reference.softmax_loss
ref_l2 = reference.l2_penalty
ref_linear = reference.linear_scores
ref_two_layer = reference.two_layer_scores
ref_objective = reference.objective


# --------------------------------------------------------------------- NumPy lecture loops


def svm_loss_naive(scores, labels):
    """CS231n's ``svm_loss_naive``, on scores: returns (loss, dL/dscores), with loops."""
    scores = np.asarray(scores, np.float64)
    n, c = scores.shape
    loss, dscores = 0.0, np.zeros_like(scores)
    for i in range(n):
        y = int(labels[i])
        for j in range(c):
            if j == y:
                continue
            margin = scores[i, j] - scores[i, y] + 1  # note delta = 1
            if margin > 0:
                loss += margin
                dscores[i, j] += 1
                dscores[i, y] -= 1
    return loss / n, dscores / n


def softmax_loss_naive(scores, labels):
    """CS231n's ``softmax_loss_naive``, on scores: returns (loss, dL/dscores), with loops."""
    scores = np.asarray(scores, np.float64)
    n, c = scores.shape
    loss, dscores = 0.0, np.zeros_like(scores)
    for i in range(n):
        y = int(labels[i])
        f = scores[i] - np.max(scores[i])  # shift for numeric stability
        p = np.exp(f) / np.sum(np.exp(f))
        loss += -np.log(p[y])
        for j in range(c):
            dscores[i, j] += p[j] - (j == y)
    return loss / n, dscores / n


# ------------------------------------------------------------------------------ oracles


# ----------------------------------------------------------------------------- the registry


def _unary(name, gate, ref, sample, shape=(2, 3), **flags):
    return Case(name, gate, ref, lambda rng: (sample(rng, shape),), (0,), gate,
                lambda g, x: g(x), covers=gate.name, **flags)


def _binary(name, gate, ref, x_shape, y_shape, untie=False, **flags):
    def make(rng):
        if untie:
            return untied_pair(rng, x_shape, y_shape)
        return normal(rng, x_shape), normal(rng, y_shape)

    return Case(name, gate, ref, make, (0, 1), gate, lambda g, x, y: g(x, y), covers=gate.name,
                **flags)


def _const(name, gate, ref, c, const_first, **flags):
    """A gate with a Python-number constant on one side (no gradient flows to it)."""

    def make(rng):
        return (normal(rng, (2, 3)),)

    if const_first:
        return Case(name, lambda x: gate(c, x), lambda x: ref(c, x), make, (0,), gate,
                    lambda g, x: g(c, x), covers=gate.name, **flags)
    return Case(name, lambda x: gate(x, c), lambda x: ref(x, c), make, (0,), gate,
                lambda g, x: g(x, c), covers=gate.name, **flags)


def _maximum_const_sample(rng):
    x = away_from_zero(rng, (2, 3), gap=0.1) + 0.25  # |x - 0.25| >= 0.1: no tie with 0.25
    return (x,)


def _sum(name, axis, shape, **flags):
    """The sum gate over ``axis``; swapped in with its parameters spelled out."""
    axes = None if axis is None else tuple(sorted(
        a % len(shape) for a in ((axis,) if isinstance(axis, int) else axis)))
    return Case(name, lambda x: gates.sum(x, axis), lambda x: jnp.sum(x, axis=axis),
                lambda rng: (normal(rng, shape),), (0,), gates.GATES["sum"],
                lambda g, x: g(x, axes=axes, shape=shape), covers="sum", **flags)


def _param_case(name, gate, public, ref, make, params, diff=(0,), **flags):
    """A gate with static parameters: ``public`` is the library's function for it, and the
    swapped-in gate g is applied as ``g(*args, **params)``."""
    return Case(name, public, ref, make, diff, gate, lambda g, *a: g(*a, **params),
                covers=gate.name, **flags)


def _positive_pair_23(rng):
    return positive(rng, (2, 3)), normal(rng, (3,))


def _select_args(rng, shape=(2, 3)):
    return rng.random(shape) > 0.5, normal(rng, shape), normal(rng, shape)


PICK = lax.GatherDimensionNumbers(offset_dims=(), collapsed_slice_dims=(0, 1),
                                  start_index_map=(0, 1), operand_batching_dims=(),
                                  start_indices_batching_dims=())
"""The gather of ``s[rows, cols]``, as JAX writes ``scores[jnp.arange(N), y]``."""
ROWS, COLS = np.array([0, 2, 2, 1]), np.array([1, 0, 0, 3])  # row 2, col 0 picked twice
OUT_COLS = np.array([1, 6, 0, 3])  # column 6 of 4 is out of bounds: filled, or clipped to 3
TAKE_ALONG = lax.GatherDimensionNumbers(offset_dims=(), collapsed_slice_dims=(1,),
                                        start_index_map=(1,), operand_batching_dims=(0,),
                                        start_indices_batching_dims=(0,))
"""The gather of ``jnp.take_along_axis(s, y[:, None], axis=1)``: a batch axis."""
_PICK_PARAMS = dict(dimension_numbers=PICK, slice_sizes=(1, 1),
                    mode=lax.GatherScatterMode.PROMISE_IN_BOUNDS, fill_value=None,
                    indices_are_sorted=False, unique_indices=False, in_shape=(3, 4))
_TAKE_PARAMS = dict(dimension_numbers=TAKE_ALONG, slice_sizes=(1, 1),
                    mode=lax.GatherScatterMode.FILL_OR_DROP, fill_value=None,
                    indices_are_sorted=False, unique_indices=False, in_shape=(3, 4))
WRITE = lax.ScatterDimensionNumbers(update_window_dims=(), inserted_window_dims=(0, 1),
                                    scatter_dims_to_operand_dims=(0, 1),
                                    operand_batching_dims=(), scatter_indices_batching_dims=())
"""The scatter of ``x.at[rows, cols].set(u)`` and ``.add(u)``."""
SET_AT = np.array([[0, 1], [1, 0], [2, 3]])  # each place once
ADD_AT = np.array([[0, 1], [2, 0], [2, 0]])  # (2, 0) twice: its updates add
DROP_AT = np.array([[0, 1], [3, 0], [2, -1]])  # (3, 0) and (2, -1) are out of bounds: dropped
_WRITE = dict(dimension_numbers=WRITE, indices_are_sorted=False, unique_indices=False,
              mode=lax.GatherScatterMode.FILL_OR_DROP, updates_shape=(3,), in_shape=(3, 4))
_BATCHED = (((2,), (1,)), ((0,), (0,)))  # einsum("bij,bjk->bik")
_ODD = (((0,), (1,)), ((), ()))  # x [4, 3] and w [2, 4] contract x's axis 0 with w's axis 1
_CYCLED = (((0,), (1,)), ((1,), (2,)))  # einsum("cbf,gcb->bfg"): each operand's gradient is
# computed in the order [b, f, c] (x) or [b, g, c] (w) and goes back by a 3-cycle, a
# permutation that is not its own inverse: forgetting to invert it is a wrong gradient here
_PERMUTED = (((0,), (1,)), ((1,), (0,)))  # einsum("cbf,bcg->bfg"): x's gradient comes out
# [b, f, c] and goes back to [c, b, f] by a permutation that is not its own inverse
_DOT = dict(precision=None, preferred_element_type=None)


def _gate_of(name):
    return gates.GATES[name]


# ------------------------------------------------------------------------------- pooling


def distinct(rng, shape, gap=0.1):
    """Values at least ``gap`` apart from each other: no max tie within any window, and a
    finite-difference step never changes a window's winner."""
    n = int(np.prod(shape))
    return ((rng.permutation(n) - n / 2) * gap).reshape(shape)


def ref_pool(op, x, window, strides, padding, base_dilation=None, window_dilation=None):
    """A pool written with jnp alone: x padded (and dilated) with the reduction's identity,
    one strided slice per position in the window, stacked, then ``op`` over them
    (``jnp.max``, ``jnp.min`` or ``jnp.sum``)."""
    nd = x.ndim
    base_dilation = base_dilation or (1,) * nd
    window_dilation = window_dilation or (1,) * nd
    fill = {jnp.max: -jnp.inf, jnp.min: jnp.inf, jnp.sum: 0.0}[op]
    xp = lax.pad(x, jnp.asarray(fill, x.dtype),
                 [(lo, hi, b - 1) for (lo, hi), b in zip(padding, base_dilation)])
    counts = [(xp.shape[d] - (window[d] - 1) * window_dilation[d] - 1) // strides[d] + 1
              for d in range(nd)]
    parts = []
    for offset in np.ndindex(*window):
        start = [k * r for k, r in zip(offset, window_dilation)]
        limit = [s + (n - 1) * t + 1 for s, n, t in zip(start, counts, strides)]
        parts.append(lax.slice(xp, start, limit, strides))
    return op(jnp.stack(parts), axis=0)


_POOL = dict(window_dimensions=(1, 1, 2, 2), window_strides=(1, 1, 2, 2),
             padding=((0, 0),) * 4, base_dilation=(1,) * 4, window_dilation=(1,) * 4,
             in_shape=(2, 3, 4, 4))
"""CS231n's 2x2 pool with stride 2 on an N, C, H, W batch, as the gates' params."""
_SAME = dict(window_dimensions=(1, 3, 3, 1), window_strides=(1, 2, 2, 1),
             padding=((0, 0), (1, 1), (1, 1), (0, 0)), base_dilation=(1,) * 4,
             window_dilation=(1,) * 4, in_shape=(2, 5, 5, 2))
"""flax's 3x3 pool with stride 2 and SAME padding on N, H, W, C: the windows overlap."""
_DILATED = dict(window_dimensions=(2, 3), window_strides=(2, 1),
                padding=((1, 1), (0, 3)), base_dilation=(2, 1), window_dilation=(1, 2),
                in_shape=(4, 5))
"""Every window parameter at once: padding, base dilation (holes) and window dilation; each
window still holds an element of x."""


def _pool_case(name, gate_name, op, params, **flags):
    p = {k: v for k, v in params.items() if k != "in_shape"}
    public = getattr(gates, gate_name)
    return _param_case(
        name, _gate_of(gate_name),
        lambda x: public(x, p["window_dimensions"], p["window_strides"], p["padding"],
                         p["base_dilation"], p["window_dilation"]),
        lambda x: ref_pool(op, x, p["window_dimensions"], p["window_strides"], p["padding"],
                           p["base_dilation"], p["window_dilation"]),
        lambda rng: (distinct(rng, params["in_shape"]),), params, **flags)


def _max_pool_vjp(source, operand):
    """JAX's own max-pool gradient (its select_and_scatter_add), as the reference."""
    return jax.vjp(lambda o: lax.reduce_window(o, -jnp.inf, lax.max, (1, 3, 3, 1),
                                               (1, 2, 2, 1), "SAME"), operand)[1](source)[0]


def _max_pool_jvp(tangents, operand):
    """JAX's own max-pool tangent (its select_and_gather_add), as the reference."""
    return jax.jvp(lambda o: lax.reduce_window(o, -jnp.inf, lax.max, (1, 3, 3, 1),
                                               (1, 2, 2, 1), "SAME"), (operand,), (tangents,))[1]


_SELECT = dict(select="max", **_SAME)

POOL_CASES = [
    _pool_case("max_pool_2x2", "max_pool", jnp.max, _POOL, order2=True),
    _pool_case("max_pool_same_overlapping", "max_pool", jnp.max, _SAME),
    _pool_case("min_pool_dilated", "min_pool", jnp.min, _DILATED, order2=True),
    _pool_case("sum_pool_same_overlapping", "sum_pool", jnp.sum, _SAME, order2=True),
    _pool_case("sum_pool_dilated", "sum_pool", jnp.sum, _DILATED),
    _param_case("avg_pool_2x2", _gate_of("avg_pool"),
                lambda x: gates.avg_pool(x, (1, 1, 2, 2), (1, 1, 2, 2)),
                lambda x: x.reshape(2, 3, 2, 2, 2, 2).mean(axis=(3, 5)),
                lambda rng: (normal(rng, (2, 3, 4, 4)),), _POOL, order2=True),
    _param_case("select_and_scatter_add", _gate_of("select_and_scatter_add"),
                lambda s, o: gates.select_and_scatter_add(s, o, (1, 3, 3, 1), (1, 2, 2, 1),
                                                          "SAME"),
                _max_pool_vjp, lambda rng: (normal(rng, (2, 3, 3, 2)),
                                            distinct(rng, (2, 5, 5, 2))),
                _SELECT, order2=True),
    _param_case("select_and_gather_add", _gate_of("select_and_gather_add"),
                lambda t, o: gates.select_and_gather_add(t, o, (1, 3, 3, 1), (1, 2, 2, 1),
                                                         "SAME"),
                _max_pool_jvp, lambda rng: (normal(rng, (2, 5, 5, 2)),
                                            distinct(rng, (2, 5, 5, 2))),
                _SELECT, order2=True),
]
"""The pooling gates (``jaxprop/gates/windows.py``), each against a pool written with jnp
slices (or JAX's own max-pool gradient for its two halves)."""
def _mT(a):
    return jnp.swapaxes(a, -1, -2)


def spd(rng, shape):
    """Symmetric positive definite matrices B B^T + n I [..., n, n]: eigenvalues >= n."""
    b = normal(rng, shape)
    return b @ np.swapaxes(b, -1, -2) + shape[-1] * np.eye(shape[-1])


def symmetric(a):
    """(A + A^T) / 2: a factorization of a symmetric matrix, differentiated in every direction."""
    return 0.5 * (a + _mT(a))


def triangular_ready(rng, shape):
    """Square matrices whose diagonal is 3 to 4 in size, the rest normal: each triangle is
    well-conditioned."""
    n = shape[-1]
    signs = rng.choice([-1.0, 1.0], size=shape[:-1])
    return normal(rng, shape) * 0.5 + np.eye(n) * (signs * rng.uniform(3.0, 4.0, shape[:-1]))[
        ..., None]


SHUFFLED = np.array([[[0.0, 0.0, 3.0], [-3.0, 0.0, 0.0], [0.0, 3.5, 0.0]]] * 2)
"""A diagonal matrix's rows, shuffled: plus a small matrix (or at the battery's probes, 0 or
0.75 everywhere), partial pivoting finds the shuffle, a permutation that is not the identity,
and no two pivot candidates are near a tie."""


def _solve_with(gate, a, b):
    """A x = b by the linear_solve gate, with ``lax.custom_linear_solve``'s arguments: the
    matvec x -> A x (A is its parameter) and its solvers, dense solves with A held constant."""
    held = lax.stop_gradient(a)
    return gate(lambda x: a @ x, b, lambda _, r: jnp.linalg.solve(held, r),
                lambda _, r: jnp.linalg.solve(held.T, r))


_TURN3 = np.linalg.qr(np.array([[2.0, -1.0, 0.5], [1.0, 1.5, -1.0], [0.5, 1.0, 2.0]]))[0]
_TURN4 = np.linalg.qr(np.array([[1.0, 2.0, 0.0, -1.0], [0.5, -1.0, 2.0, 0.0],
                                [-1.0, 0.5, 1.0, 2.0], [2.0, 0.0, -0.5, 1.0]]))[0]
SPREAD = (_TURN3 @ np.diag([1.0, 2.5, 4.0]) @ _TURN3.T)[None]
"""Added to a small matrix (or to the battery's probes, 0 or 0.75 everywhere, times a small
or large scale): eigenvalues and singular values at least about 1 apart, never degenerate and
never 0, and eigenvectors turned off the axes (on the axes, a vector's sign may flip under a
small change of A)."""
SPREAD_TALL = (_TURN4[:, :3] @ np.diag([1.0, 2.5, 4.0]) @ _TURN3.T)[None]


def _ref_eigh(a):
    """(V, w) of eigh's primitive, from jnp.linalg.eigh (which symmetrises A first)."""
    w, v = jnp.linalg.eigh(a + SPREAD)
    return v, w


def _ref_svd(a):
    """(s, U, V^T) in the order of svd's primitive."""
    u, s, vt = jnp.linalg.svd(a, full_matrices=False)
    return s, u, vt


def _ref_tridiagonal(dl, d, du, b):
    """The tridiagonal matrix built in full, and a dense solve."""
    a = (d[..., :, None] * np.eye(4)[None] + dl[..., :, None] * np.eye(4, k=-1)[None]
         + du[..., :, None] * np.eye(4, k=1)[None])
    return jnp.linalg.solve(a, b)


_TRI = dict(left_side=False, lower=False, transpose_a=False, conjugate_a=False,
            unit_diagonal=False)


GATE_CASES = [
    _binary("add", gates.add, ref_add, (2, 3), (2, 3)),
    _binary("add_bias", gates.add, ref_add, (2, 3), (3,), order2=True),
    _binary("add_outer", gates.add, ref_add, (2, 1), (1, 3)),
    _const("add_const_right", gates.add, ref_add, 2.5, const_first=False),
    _const("add_const_left", gates.add, ref_add, -1.5, const_first=True, order2=True),
    _binary("mul", gates.mul, ref_mul, (2, 3), (2, 3)),
    _binary("mul_bias", gates.mul, ref_mul, (2, 3), (3,), order2=True),
    _binary("mul_scalar_array", gates.mul, ref_mul, (), (2, 3)),
    _const("mul_const_left", gates.mul, ref_mul, 3.0, const_first=True),
    _const("mul_const_right", gates.mul, ref_mul, -0.5, const_first=False, order2=True),
    Case("copy", gates.copy, lambda x: (x, x), lambda rng: (normal(rng, (2, 3)),), (0,),
         gates.copy, lambda g, x: g(x), covers="copy", order2=True),
    _binary("maximum", gates.maximum, ref_maximum, (2, 3), (2, 3), untie=True),
    _binary("maximum_bias", gates.maximum, ref_maximum, (2, 3), (3,), untie=True, order2=True),
    Case("maximum_const", lambda x: gates.maximum(x, 0.25), lambda x: ref_maximum(x, 0.25),
         _maximum_const_sample, (0,), gates.maximum, lambda g, x: g(x, 0.25),
         covers="maximum", order2=True),
    _unary("neg", gates.neg, lambda x: -x, normal, order2=True),
    _unary("exp", gates.exp, jnp.exp, normal, order2=True),
    _unary("exp_rank0", gates.exp, jnp.exp, normal, shape=()),
    _unary("log", gates.log, jnp.log, positive, order2=True, domain="positive"),
    _unary("reciprocal", gates.reciprocal, lambda x: 1.0 / x, positive, order2=True,
           domain="positive"),
    _unary("sigmoid", gates.sigmoid, ref_sigmoid, normal, order2=True),
    _unary("relu", gates.relu, ref_relu, away_from_zero, order2=True, domain="grid"),
    _binary("matmul", gates.matmul, ref_matmul, (2, 3), (3, 4)),
    _binary("matmul_batched", gates.matmul, ref_matmul, (2, 2, 3), (3, 4), order2=True),
    _binary("matmul_vector", gates.matmul, ref_matmul, (3,), (3, 4)),
    _sum("sum_all", None, (2, 3, 2)),
    _sum("sum_axis1", 1, (2, 3)),
    _sum("sum_axes02", (0, 2), (2, 3, 2), order2=True),
    _sum("sum_axis_neg", -1, (2, 3)),
    _param_case("mean_axis0", gates.mean, lambda x: gates.mean(x, 0),
                lambda x: jnp.mean(x, axis=0), lambda rng: (normal(rng, (4, 3)),),
                dict(axes=(0,), shape=(4, 3)), order2=True),
    _param_case("mean_all", gates.mean, lambda x: gates.mean(x), jnp.mean,
                lambda rng: (normal(rng, (2, 3)),), dict(axes=None, shape=(2, 3))),
    _binary("sub", gates.sub, lambda x, y: ref_add(x, -y), (2, 3), (2, 3)),
    _binary("sub_bias", gates.sub, lambda x, y: ref_add(x, -y), (2, 3), (3,), order2=True),
    Case("div", gates.div, lambda x, y: ref_mul(x, 1.0 / y),
         lambda rng: (normal(rng, (2, 3)), positive(rng, (3,))), (0, 1), gates.div,
         lambda g, x, y: g(x, y), covers="div", order2=True, domain="positive"),
    Case("div_const_left", lambda y: gates.div(2.0, y), lambda y: 2.0 / y,
         lambda rng: (positive(rng, (2, 3)),), (0,), gates.div, lambda g, y: g(2.0, y),
         covers="div"),
    Case("pow", gates.pow, lambda x, y: bcast(x, y)[0] ** bcast(x, y)[1], _positive_pair_23,
         (0, 1), gates.pow, lambda g, x, y: g(x, y), covers="pow", order2=True,
         domain="positive"),
    Case("pow_const", lambda x: gates.pow(x, 1.5), lambda x: x**1.5,
         lambda rng: (positive(rng, (2, 3)),), (0,), gates.pow, lambda g, x: g(x, 1.5),
         covers="pow"),
    _param_case("integer_pow_3", _gate_of("integer_pow"), lambda x: gates.integer_pow(x, y=3),
                lambda x: x**3, lambda rng: (normal(rng, (2, 3)),), dict(y=3), order2=True),
    _param_case("integer_pow_neg2", _gate_of("integer_pow"),
                lambda x: gates.integer_pow(x, y=-2), lambda x: x**-2,
                lambda rng: (positive(rng, (2, 3)),), dict(y=-2)),
    _binary("minimum", gates.minimum, lambda x, y: jnp.minimum(*bcast(x, y)), (2, 3), (3,),
            untie=True, order2=True),
    _unary("abs", gates.abs, jnp.abs, away_from_zero, order2=True, domain="grid"),
    _unary("tanh", gates.tanh, jnp.tanh, normal, order2=True),
    _unary("sqrt", gates.sqrt, jnp.sqrt, positive, order2=True, domain="positive"),
    _unary("rsqrt", gates.rsqrt, lambda x: 1 / jnp.sqrt(x), positive, order2=True,
           domain="positive"),
    _unary("log1p", gates.log1p, jnp.log1p, positive, order2=True, domain="positive"),
    _unary("log1p_near_pole", gates.log1p, jnp.log1p, near_pole),
    _unary("expm1", gates.expm1, jnp.expm1, normal, order2=True),
    Case("select", gates.select, lambda c, f, t: jnp.where(c, t, f), _select_args, (1, 2),
         gates.select, lambda g, c, f, t: g(c, f, t), covers="select", order2=True),
    Case("where", gates.where, jnp.where, _select_args, (1, 2), gates.where,
         lambda g, c, x, y: g(c, x, y), covers="where", order2=True),
    Case("where_const", lambda c, x: gates.where(c, x, 0.0),
         lambda c, x: jnp.where(c, x, 0.0), lambda rng: _select_args(rng)[:2], (1,),
         gates.where, lambda g, c, x: g(c, x, 0.0), covers="where"),
    _param_case("max_axis1", _gate_of("max"), lambda x: gates.max(x, 1),
                lambda x: jnp.max(x, axis=1), lambda rng: (normal(rng, (3, 4)),),
                dict(axes=(1,), shape=(3, 4)), order2=True),
    _param_case("max_all", _gate_of("max"), lambda x: gates.max(x),
                lambda x: jnp.max(x), lambda rng: (normal(rng, (2, 3)),),
                dict(axes=None, shape=(2, 3))),
    _param_case("min_axes01", _gate_of("min"), lambda x: gates.min(x, (0, 1)),
                lambda x: jnp.min(x, axis=(0, 1)), lambda rng: (normal(rng, (2, 3, 2)),),
                dict(axes=(0, 1), shape=(2, 3, 2)), order2=True),
    _param_case("broadcast_rows", _gate_of("broadcast_to"), lambda x: gates.broadcast_to(x, (2, 3)),
                lambda x: jnp.broadcast_to(x, (2, 3)), lambda rng: (normal(rng, (3,)),),
                dict(shape=(2, 3), dims=(1,), in_shape=(3,)), order2=True),
    _param_case("broadcast_stretch", _gate_of("broadcast_to"),
                lambda x: gates.broadcast_to(x, (4, 2, 3)),
                lambda x: jnp.broadcast_to(x, (4, 2, 3)), lambda rng: (normal(rng, (2, 1)),),
                dict(shape=(4, 2, 3), dims=(1, 2), in_shape=(2, 1))),
    _param_case("reshape", _gate_of("reshape"), lambda x: gates.reshape(x, (3, -1)),
                lambda x: x.reshape(3, 2), lambda rng: (normal(rng, (2, 3)),),
                dict(shape=(3, 2), in_shape=(2, 3)), order2=True),
    _param_case("squeeze", _gate_of("squeeze"), lambda x: gates.squeeze(x, 1),
                lambda x: x[:, 0, :], lambda rng: (normal(rng, (2, 1, 3)),),
                dict(dims=(1,), in_shape=(2, 1, 3)), order2=True),
    _param_case("expand_dims", gates.expand_dims, lambda x: gates.expand_dims(x, (0, -1)),
                lambda x: jnp.expand_dims(x, (0, -1)), lambda rng: (normal(rng, (2, 3)),),
                dict(dims=(0, 3)), order2=True),
    _param_case("transpose", _gate_of("transpose"), lambda x: gates.transpose(x, (2, 0, 1)),
                lambda x: jnp.transpose(x, (2, 0, 1)), lambda rng: (normal(rng, (2, 3, 4)),),
                dict(perm=(2, 0, 1)), order2=True),
    _param_case("rev", _gate_of("rev"), lambda x: gates.rev(x, 1), lambda x: x[:, ::-1],
                lambda rng: (normal(rng, (2, 3)),), dict(dims=(1,)), order2=True),
    _param_case("cast", _gate_of("cast"), lambda x: gates.cast(x, jnp.float64),
                lambda x: x.astype(jnp.float64), lambda rng: (normal(rng, (2, 3)),),
                dict(dtype=np.dtype(np.float64)), order2=True),
    _param_case("slice", _gate_of("slice"), lambda x: gates.slice(x, (0, 1), (2, 4), (1, 2)),
                lambda x: x[0:2, 1:4:2], lambda rng: (normal(rng, (3, 4)),),
                dict(start=(0, 1), limit=(2, 4), strides=(1, 2), in_shape=(3, 4)), order2=True),
    Case("dynamic_slice", lambda x: gates.dynamic_slice(x, (1, 0), (2, 3)),
         lambda x: x[1:3, 0:3], lambda rng: (normal(rng, (3, 4)),), (0,),
         _gate_of("dynamic_slice"),
         lambda g, x: g(x, jnp.array([1, 0]), sizes=(2, 3), in_shape=(3, 4)),
         covers="dynamic_slice", order2=True),
    Case("gather_pick_twice",
         lambda x: gates.gather(x, jnp.stack([ROWS, COLS], 1), dimension_numbers=PICK,
                                slice_sizes=(1, 1), mode="promise_in_bounds"),
         lambda x: x[ROWS, COLS], lambda rng: (normal(rng, (3, 4)),), (0,),
         _gate_of("gather"), lambda g, x: g(x, jnp.stack([ROWS, COLS], 1), **_PICK_PARAMS),
         covers="gather", order2=True),
    Case("gather_take_along",
         lambda x: gates.gather(x, jnp.array([[[1]], [[3]], [[0]]]), dimension_numbers=TAKE_ALONG,
                                slice_sizes=(1, 1), mode="fill"),
         lambda x: jnp.take_along_axis(x, jnp.array([[1], [3], [0]]), axis=1),
         lambda rng: (normal(rng, (3, 4)),), (0,), _gate_of("gather"),
         lambda g, x: g(x, jnp.array([[[1]], [[3]], [[0]]]), **_TAKE_PARAMS), covers="gather"),
    Case("scatter_set", lambda x, u: gates.scatter(x, SET_AT, u, dimension_numbers=WRITE),
         lambda x, u: x.at[SET_AT[:, 0], SET_AT[:, 1]].set(u),
         lambda rng: (normal(rng, (3, 4)), normal(rng, (3,))), (0, 1), _gate_of("scatter"),
         lambda g, x, u: g(x, SET_AT, u, **_WRITE), covers="scatter", order2=True),
    Case("scatter_set_constant", lambda x: gates.scatter(x, SET_AT, 0.0,
                                                         dimension_numbers=WRITE),
         lambda x: x.at[SET_AT[:, 0], SET_AT[:, 1]].set(0.0),
         lambda rng: (normal(rng, (3, 4)),), (0,), _gate_of("scatter"),
         lambda g, x: g(x, SET_AT, jnp.zeros(3), **_WRITE), covers="scatter"),
    Case("scatter_add_twice",
         lambda x, u: gates.scatter_add(x, ADD_AT, u, dimension_numbers=WRITE),
         lambda x, u: x.at[ADD_AT[:, 0], ADD_AT[:, 1]].add(u),
         lambda rng: (normal(rng, (3, 4)), normal(rng, (3,))), (0, 1), _gate_of("scatter_add"),
         lambda g, x, u: g(x, ADD_AT, u, **_WRITE), covers="scatter_add", order2=True),
    Case("scatter_set_twice", lambda x, u: gates.scatter(x, ADD_AT, u, dimension_numbers=WRITE),
         lambda x, u: x.at[ADD_AT[:, 0], ADD_AT[:, 1]].set(u),
         lambda rng: (normal(rng, (3, 4)), normal(rng, (3,))), (0, 1), _gate_of("scatter"),
         lambda g, x, u: g(x, ADD_AT, u, **_WRITE), covers="scatter"),
    Case("scatter_add_dropped",
         lambda x, u: gates.scatter_add(x, DROP_AT, u, dimension_numbers=WRITE),
         lambda x, u: x + jnp.zeros_like(x).at[0, 1].set(u[0]),
         lambda rng: (normal(rng, (3, 4)), normal(rng, (3,))), (0, 1), _gate_of("scatter_add"),
         lambda g, x, u: g(x, DROP_AT, u, **_WRITE), covers="scatter_add"),
    Case("scatter_mul", lambda x, u: gates.scatter_mul(x, SET_AT, u, dimension_numbers=WRITE,
                                                       unique_indices=True),
         lambda x, u: x.at[SET_AT[:, 0], SET_AT[:, 1]].multiply(u, unique_indices=True),
         lambda rng: (normal(rng, (3, 4)), normal(rng, (3,))), (0, 1), _gate_of("scatter_mul"),
         lambda g, x, u: g(x, SET_AT, u, **{**_WRITE, "unique_indices": True}),
         covers="scatter_mul", order2=True),
    Case("scatter_max_twice",
         lambda x, u: gates.scatter_max(x, ADD_AT, u, dimension_numbers=WRITE),
         lambda x, u: x.at[ADD_AT[:, 0], ADD_AT[:, 1]].max(u),
         # + 1.5: the update at (0, 1) wins (else u's gradient is 0 and its rule goes unchecked)
         lambda rng: (normal(rng, (3, 4)), normal(rng, (3,)) + 1.5), (0, 1),
         _gate_of("scatter_max"),
         lambda g, x, u: g(x, ADD_AT, u, **_WRITE), covers="scatter_max", order2=True),
    Case("scatter_min_twice",
         lambda x, u: gates.scatter_min(x, ADD_AT, u, dimension_numbers=WRITE),
         lambda x, u: x.at[ADD_AT[:, 0], ADD_AT[:, 1]].min(u),
         lambda rng: (normal(rng, (3, 4)), normal(rng, (3,))), (0, 1), _gate_of("scatter_min"),
         lambda g, x, u: g(x, ADD_AT, u, **_WRITE), covers="scatter_min", order2=True),
    Case("gather_fill_out_of_bounds",
         lambda x: gates.gather(x, jnp.stack([ROWS, OUT_COLS], 1), dimension_numbers=PICK,
                                slice_sizes=(1, 1), mode="fill", fill_value=5.0),
         lambda x: jnp.where(OUT_COLS < 4, x[ROWS, np.minimum(OUT_COLS, 3)], 5.0),
         lambda rng: (normal(rng, (3, 4)),), (0,), _gate_of("gather"),
         lambda g, x: g(x, jnp.stack([ROWS, OUT_COLS], 1), **{
             **_PICK_PARAMS, "mode": lax.GatherScatterMode.FILL_OR_DROP, "fill_value": 5.0}),
         covers="gather"),
    Case("gather_clip_out_of_bounds",
         lambda x: gates.gather(x, jnp.stack([ROWS, OUT_COLS], 1), dimension_numbers=PICK,
                                slice_sizes=(1, 1), mode="clip"),
         lambda x: x[ROWS, np.minimum(OUT_COLS, 3)],
         lambda rng: (normal(rng, (3, 4)),), (0,), _gate_of("gather"),
         lambda g, x: g(x, jnp.stack([ROWS, OUT_COLS], 1), **{
             **_PICK_PARAMS, "mode": lax.GatherScatterMode.CLIP}), covers="gather"),
    _param_case("concatenate", _gate_of("concatenate"),
                lambda x, y: gates.concatenate([x, y], axis=1),
                lambda x, y: jnp.concatenate([x, y], axis=1),
                lambda rng: (normal(rng, (2, 3)), normal(rng, (2, 2))),
                dict(dimension=1, sizes=(3, 2)), diff=(0, 1), order2=True),
    Case("concatenate_three", lambda x, y, w: gates.concatenate([x, y, w]),
         lambda x, y, w: jnp.concatenate([x, y, w]),
         lambda rng: (normal(rng, (1, 3)), normal(rng, (2, 3)), normal(rng, (3, 3))),
         (0, 1, 2), covers="concatenate"),
    _param_case("split", _gate_of("split"), lambda x: gates.split(x, (2, 3), axis=1),
                lambda x: tuple(jnp.split(x, [2], axis=1)), lambda rng: (normal(rng, (2, 5)),),
                dict(sizes=(2, 3), axis=1), order2=True),
    _param_case("dot_general_batched", _gate_of("dot_general"),
                lambda x, w: gates.dot_general(x, w, _BATCHED),
                lambda x, w: jnp.einsum("bij,bjk->bik", x, w),
                lambda rng: (normal(rng, (2, 3, 4)), normal(rng, (2, 4, 5))),
                dict(dimension_numbers=_BATCHED, **_DOT), diff=(0, 1), order2=True),
    _param_case("dot_general_odd_axes", _gate_of("dot_general"),
                lambda x, w: gates.dot_general(x, w, _ODD),
                lambda x, w: jnp.einsum("dn,md->nm", x, w),
                lambda rng: (normal(rng, (4, 3)), normal(rng, (2, 4))),
                dict(dimension_numbers=_ODD, **_DOT), diff=(0, 1)),
    _param_case("dot_general_cycled_axes", _gate_of("dot_general"),
                lambda x, w: gates.dot_general(x, w, _CYCLED),
                lambda x, w: jnp.einsum("cbf,gcb->bfg", x, w),
                lambda rng: (normal(rng, (2, 3, 4)), normal(rng, (5, 2, 3))),
                dict(dimension_numbers=_CYCLED, **_DOT), diff=(0, 1)),
    _param_case("dot_general_permuted", _gate_of("dot_general"),
                lambda x, w: gates.dot_general(x, w, _PERMUTED),
                lambda x, w: jnp.einsum("cbf,bcg->bfg", x, w),
                lambda rng: (normal(rng, (2, 3, 4)), normal(rng, (3, 2, 5))),
                dict(dimension_numbers=_PERMUTED, **_DOT), diff=(0, 1)),
] + [  # linear algebra (gates/linalg.py): well-conditioned inputs, batch axes in front
    _param_case("triangular_solve_left_lower", _gate_of("triangular_solve"),
                lambda a, b: gates.triangular_solve(a, b, left_side=True, lower=True),
                lambda a, b: jnp.linalg.solve(jnp.tril(a), b),
                lambda rng: (triangular_ready(rng, (2, 3, 3)), normal(rng, (2, 3, 2))),
                dict(_TRI, left_side=True, lower=True), diff=(0, 1), order2=True),
    _param_case("triangular_solve_right_upper_transposed_unit", _gate_of("triangular_solve"),
                lambda a, b: gates.triangular_solve(a, b, lower=False, transpose_a=True,
                                                    unit_diagonal=True),
                lambda a, b: _mT(jnp.linalg.solve(jnp.triu(a, 1) + np.eye(3)[None], _mT(b))),
                lambda rng: (triangular_ready(rng, (2, 3, 3)), normal(rng, (2, 2, 3))),
                dict(_TRI, transpose_a=True, unit_diagonal=True), diff=(0, 1)),
    Case("cholesky", lambda a: gates.cholesky(symmetric(a)), jnp.linalg.cholesky,
         lambda rng: (spd(rng, (2, 3, 3)),), (0,), _gate_of("cholesky"),
         lambda g, a: g(symmetric(a)), covers="cholesky", order2=True),
    Case("lu_pivoted", lambda a: gates.lu(a + SHUFFLED), lambda a: lax.linalg.lu(a + SHUFFLED)[0],
         lambda rng: (0.2 * normal(rng, (2, 3, 3)),), (0,), _gate_of("lu"),
         lambda g, a: g(a + SHUFFLED), covers="lu", order2=True),
    Case("linear_solve", lambda a, b: _solve_with(gates.linear_solve, a, b), jnp.linalg.solve,
         lambda rng: (spd(rng, (3, 3)) + normal(rng, (3, 3)), normal(rng, (3,))), (0, 1),
         _gate_of("linear_solve"), _solve_with, covers="linear_solve", order2=True),
    Case("eigh", lambda a: gates.eigh(symmetric(a) + SPREAD), _ref_eigh,
         lambda rng: (normal(rng, (2, 3, 3)),), (0,), _gate_of("eigh"),
         lambda g, a: g(symmetric(a) + SPREAD), covers="eigh", order2=True),
    Case("svd_tall", lambda a: gates.svd(a + SPREAD_TALL, full_matrices=False),
         lambda a: _ref_svd(a + SPREAD_TALL), lambda rng: (normal(rng, (2, 4, 3)),), (0,),
         _gate_of("svd"), lambda g, a: g(a + SPREAD_TALL, full_matrices=False), covers="svd",
         order2=True),
    Case("svd_values_wide", lambda a: gates.svd(_mT(a + SPREAD_TALL), compute_uv=False),
         lambda a: (jnp.linalg.svd(_mT(a + SPREAD_TALL), compute_uv=False),),
         lambda rng: (normal(rng, (2, 4, 3)),), (0,), _gate_of("svd"),
         lambda g, a: g(_mT(a + SPREAD_TALL), compute_uv=False), covers="svd"),
    Case("qr_tall", lambda a: gates.qr(a + SPREAD_TALL),
         lambda a: tuple(jnp.linalg.qr(a + SPREAD_TALL)), lambda rng: (normal(rng, (2, 4, 3)),),
         (0,), _gate_of("qr"), lambda g, a: g(a + SPREAD_TALL), covers="qr", order2=True),
    Case("tridiagonal_solve",
         lambda dl, d, du, b: gates.tridiagonal_solve(dl, d + 4, du, b),
         lambda dl, d, du, b: _ref_tridiagonal(dl, d + 4, du, b),
         lambda rng: (normal(rng, (2, 4)), normal(rng, (2, 4)), normal(rng, (2, 4)),
                      normal(rng, (2, 4, 2))), (0, 1, 2, 3), _gate_of("tridiagonal_solve"),
         lambda g, dl, d, du, b: g(dl, d + 4, du, b), covers="tridiagonal_solve", order2=True),
] + [  # normalisation and dropout (jaxprop/gates/norm.py), against the layers in plain jnp
    # eps = 1e-3 where the battery probes x all equal (var = 0): there rstd = eps^-1/2 and a
    # finite difference at step h is off by h^2 / (2 eps) relative, 5e-6 at CS231n's eps of
    # 1e-5 and 5e-8 here (tests/gates/test_norm.py checks eps = 1e-5 against jax.grad)
    _param_case("batch_norm", _gate_of("batch_norm"),
                lambda x, g, b: gates.batch_norm(x, g, b, eps=1e-3),
                lambda x, g, b: ref_batch_norm(x, g, b, eps=1e-3),
                lambda rng: (normal(rng, (6, 3)), normal(rng, (3,)), normal(rng, (3,))),
                dict(axes=(0,), scale_axes=(1,), eps=1e-3), diff=(0, 1, 2), order2=True),
    _param_case("spatial_batch_norm", _gate_of("spatial_batch_norm"),
                lambda x, g, b: gates.spatial_batch_norm(x, g, b), ref_spatial_batch_norm,
                lambda rng: (normal(rng, (2, 3, 2, 2)), normal(rng, (3,)), normal(rng, (3,))),
                dict(axes=(0, 2, 3), scale_axes=(1,), eps=1e-5), diff=(0, 1, 2), order2=True),
    _param_case("layer_norm", _gate_of("layer_norm"),
                lambda x, g, b: gates.layer_norm(x, g, b, eps=1e-3),
                lambda x, g, b: ref_layer_norm(x, g, b, eps=1e-3),
                lambda rng: (normal(rng, (3, 5)), normal(rng, (5,)), normal(rng, (5,))),
                dict(axes=(1,), scale_axes=(1,), eps=1e-3), diff=(0, 1, 2), order2=True),
    _param_case("layer_norm_rank3", _gate_of("layer_norm"),
                lambda x, g, b: gates.layer_norm(x, g, b, eps=1e-3),
                lambda x, g, b: ref_layer_norm(x, g, b, eps=1e-3),
                lambda rng: (normal(rng, (2, 2, 4)), normal(rng, (4,)), normal(rng, (4,))),
                dict(axes=(2,), scale_axes=(2,), eps=1e-3), diff=(0, 1, 2)),
    Case("dropout", lambda x: gates.dropout(x, 0.6, mask=KEEP),
         lambda x: jnp.where(KEEP, x / 0.6, 0.0), lambda rng: (normal(rng, (3, 4)),), (0,),
         _gate_of("dropout"), lambda g, x: g(x, KEEP, p=0.6), covers="dropout", order2=True),
    Case("dropout_key", lambda x: gates.dropout(x, 0.8, jax.random.PRNGKey(3)),
         lambda x: jnp.where(jax.random.bernoulli(jax.random.PRNGKey(3), 0.8, (4, 5)),
                             x / 0.8, 0.0),
         lambda rng: (normal(rng, (4, 5)),), (0,), _gate_of("dropout"),
         lambda g, x: g(x, jax.random.bernoulli(jax.random.PRNGKey(3), 0.8, (4, 5)), p=0.8),
         covers="dropout"),
]
GATE_CASES += POOL_CASES



# --------------------------------------------------------------- convolution (conv gate)


def _conv_case(name, x_shape, w_shape, strides, padding, order2=False, **kw):
    """The conv gate called as ``lax.conv_general_dilated`` is, against that very call."""
    params = gates.conv.prepare(np.zeros(x_shape), np.zeros(w_shape), strides, padding, **kw)[1]
    return _param_case(
        name, gates.conv, lambda x, w: gates.conv(x, w, strides, padding, **kw),
        lambda x, w: lax.conv_general_dilated(x, w, strides, padding, **kw),
        lambda rng: (normal(rng, x_shape), normal(rng, w_shape)), params, diff=(0, 1),
        order2=order2)


_NHWC = ("NHWC", "HWIO", "NHWC")

GATE_CASES += [  # small enough that explain forms each local Jacobian (<= 4096 entries)
    _conv_case("conv_nchw_oihw_same", (2, 2, 3, 3), (2, 2, 3, 3), (1, 1), "SAME"),
    _conv_case("conv_nhwc_hwio_valid", (2, 4, 3, 2), (2, 2, 2, 3), (2, 1), "VALID",
               dimension_numbers=_NHWC),
    _conv_case("conv_1d_explicit", (2, 3, 7), (2, 3, 3), (2,), ((1, 2),)),
    _conv_case("conv_3d_same", (1, 2, 4, 3, 3), (2, 2, 2, 2, 2), (1, 2, 1), "SAME"),
    _conv_case("conv_strided_uneven", (1, 2, 7, 6), (3, 2, 3, 2), (3, 2), ((2, 1), (0, 1))),
    _conv_case("conv_negative_padding", (1, 2, 6, 5), (2, 2, 3, 2), (2, 1), ((-1, 1), (0, -1))),
    _conv_case("conv_lhs_dilation", (1, 2, 4, 4), (3, 2, 3, 3), (1, 2), ((1, 1), (2, 0)),
               lhs_dilation=(2, 1)),
    _conv_case("conv_rhs_dilation", (1, 2, 6, 6), (3, 2, 2, 2), (1, 2), "VALID",
               rhs_dilation=(2, 2)),
    _conv_case("conv_depthwise", (1, 2, 4, 4), (4, 1, 3, 3), (2, 1), "SAME",
               feature_group_count=2, order2=True),
    _conv_case("conv_groups_nhwc_to_nchw", (1, 4, 3, 4), (2, 2, 2, 4), (2, 2),
               ((1, 1), (1, 0)), lhs_dilation=(1, 2), rhs_dilation=(2, 1), feature_group_count=2,
               dimension_numbers=("NHWC", "HWIO", "NCHW")),
]

# ------------------------------------------------ the elementwise gates of issue 19 (part A)
# Trigonometry, special functions and the piecewise gates, each drawn inside its domain and
# away from its poles, branch cuts and jumps. The references are JAX's own functions.


def unit(rng, shape):
    """Values in [-0.9, 0.9]: inside the domain of asin, acos, atanh and erf_inv, and away
    from tan's poles at +-pi/2."""
    return rng.uniform(-0.9, 0.9, size=shape)


def above_one(rng, shape):
    """Values in [1.5, 3]: inside the domain of acosh, away from its branch point at 1."""
    return rng.uniform(1.5, 3.0, size=shape)


def _rem_pair(rng, shape=(2, 3)):
    """(x, y) with x/y at least 0.1 from an integer: no jump of trunc(x/y) within reach."""
    while True:
        x, y = rng.uniform(-3, 3, size=shape), positive(rng, shape[-1:])
        frac = np.abs(x / y) % 1
        if np.all((frac > 0.1) & (frac < 0.9)):
            return x, y


def _clamp_args(rng):
    """(lo [3], x [2, 3], hi [3]): x at least 0.1 from lo and from hi, some of x below lo,
    some above hi and some between, so that every input takes a gradient."""
    lo, hi = np.array([-0.5, -1.0, 0.0]), np.array([0.5, 0.2, 1.0])
    x = np.array([[-1.0, 0.0, 1.5], [0.0, 1.0, 0.4]]) + rng.uniform(-0.05, 0.05, (2, 3))
    return lo, x, hi


def _ref_rem(x, y):
    return jnp.fmod(*bcast(x, y))


ELEMENTWISE_CASES = [
    _unary("sin", gates.sin, jnp.sin, normal, order2=True),
    _unary("cos", gates.cos, jnp.cos, normal, order2=True),
    _unary("tan", gates.tan, jnp.tan, unit, order2=True, domain="unit"),
    _unary("asin", gates.asin, jnp.arcsin, unit, order2=True, domain="unit"),
    _unary("acos", gates.acos, jnp.arccos, unit, order2=True, domain="unit"),
    _unary("atan", gates.atan, jnp.arctan, normal, order2=True),
    _binary("atan2", gates.atan2, lambda x, y: jnp.arctan2(*bcast(x, y)), (2, 3), (3,),
            order2=True),
    _unary("sinh", gates.sinh, jnp.sinh, normal, order2=True),
    _unary("cosh", gates.cosh, jnp.cosh, normal, order2=True),
    _unary("asinh", gates.asinh, jnp.arcsinh, normal, order2=True),
    _unary("acosh", gates.acosh, jnp.arccosh, above_one, order2=True, domain="above_one"),
    _unary("atanh", gates.atanh, jnp.arctanh, unit, order2=True, domain="unit"),
    _unary("erf", gates.erf, jax.scipy.special.erf, normal, order2=True),
    _unary("erfc", gates.erfc, jax.scipy.special.erfc, normal, order2=True),
    _unary("erf_inv", gates.erf_inv, jax.scipy.special.erfinv, unit, order2=True,
           domain="unit"),
    _unary("exp2", gates.exp2, jnp.exp2, normal, order2=True),
    _unary("cbrt", gates.cbrt, jnp.cbrt, away_from_zero, order2=True, domain="grid"),
    _unary("lgamma", gates.lgamma, jax.scipy.special.gammaln, positive, order2=True,
           domain="positive"),
    _unary("digamma", gates.digamma, jax.scipy.special.digamma, positive, order2=True,
           domain="positive"),
    Case("polygamma", gates.polygamma,
         lambda n, x: jax.scipy.special.polygamma(*bcast(n.astype(jnp.int32), x)),
         lambda rng: (np.array([0.0, 1.0, 2.0]), positive(rng, (2, 3))), (1,), gates.polygamma,
         lambda g, n, x: g(n, x), covers="polygamma", order2=True, domain="positive"),
    # igamma's derivative in a is JAX's igamma_grad_a, which has no derivative: the second
    # order checks run on x alone (igamma_x, igammac).
    Case("igamma", gates.igamma, lambda a, x: jax.scipy.special.gammainc(*bcast(a, x)),
         lambda rng: (positive(rng, (3,)), positive(rng, (2, 3))), (0, 1), gates.igamma,
         lambda g, a, x: g(a, x), covers="igamma", domain="positive"),
    Case("igamma_x", lambda x: gates.igamma(0.8, x),
         lambda x: jax.scipy.special.gammainc(0.8, x), lambda rng: (positive(rng, (2, 3)),),
         (0,), gates.igamma, lambda g, x: g(0.8, x), covers="igamma", order2=True),
    # igammac one input at a time, the other a constant: with both at 1e-8 times their size
    # (the battery's scales check), lax.igammac's own value has the wrong slope (-1.182 for
    # scipy's -1.167 at a = 0.7e-8, x = 0.6e-8), which no rule can match.
    Case("igammac", lambda x: gates.igammac(1.5, x),
         lambda x: jax.scipy.special.gammaincc(1.5, x),
         lambda rng: (positive(rng, (2, 3)),), (0,), gates.igammac,
         lambda g, x: g(1.5, x), covers="igammac", order2=True, domain="positive"),
    Case("igammac_a", lambda a: gates.igammac(a, 1.2),
         lambda a: jax.scipy.special.gammaincc(a, 1.2),
         lambda rng: (positive(rng, (2, 3)),), (0,), gates.igammac,
         lambda g, a: g(a, 1.2), covers="igammac", domain="positive"),
    _unary("bessel_i0e", gates.bessel_i0e, jax.scipy.special.i0e, away_from_zero,
           order2=True, domain="grid"),
    _unary("bessel_i1e", gates.bessel_i1e, jax.scipy.special.i1e, away_from_zero,
           order2=True, domain="grid"),
    Case("rem", gates.rem, _ref_rem, _rem_pair, (0, 1), gates.rem, lambda g, x, y: g(x, y),
         covers="rem", order2=True, domain="positive"),
    Case("clamp", gates.clamp, lambda lo, x, hi: lax.clamp(*bcast(lo, x, hi)), _clamp_args,
         (0, 1, 2), gates.clamp, lambda g, lo, x, hi: g(lo, x, hi), covers="clamp",
         order2=True),
    Case("clamp_const", lambda x: gates.clamp(-0.5, x, 0.5), lambda x: jnp.clip(x, -0.5, 0.5),
         lambda rng: (_clamp_args(rng)[1],), (0,), gates.clamp,
         lambda g, x: g(-0.5, x, 0.5), covers="clamp"),
    # 45 mantissa bits: the value is rounded (by up to 2^-46 of itself), finely enough for a
    # finite difference at h = 1e-5 to see the slope 1 to 1e-9.
    _param_case("reduce_precision", _gate_of("reduce_precision"),
                lambda x: gates.reduce_precision(x, exponent_bits=11, mantissa_bits=45),
                lambda x: lax.reduce_precision(x, 11, 45), lambda rng: (normal(rng, (2, 3)),),
                dict(exponent_bits=11, mantissa_bits=45), order2=True),
]
GATE_CASES += ELEMENTWISE_CASES
GATE_CASES += [
    _param_case("unstack", _gate_of("unstack"), lambda x: gates.unstack(x, axis=1),
                lambda x: tuple(jnp.unstack(x, axis=1)), lambda rng: (normal(rng, (2, 3)),),
                dict(axis=1), order2=True),
    Case("approx_top_k", lambda x: gates.approx_top_k(x, 2),
         lambda x: lax.approx_max_k(x, 2)[0], lambda rng: (normal(rng, (3, 5)),), (0,),
         _gate_of("approx_top_k"),
         lambda g, x: g(x, k=2, reduction_dimension=-1, recall_target=0.95, is_max_k=True,
                        reduction_input_size_override=-1, aggregate_to_topk=True),
         covers="approx_top_k", order2=True),
]


# ---------------------------------------------- scans, sorting, prod, updates, tiles (issue 19)


def spread_out(rng, shape, gap=0.1):
    """Normal values, every two at least ``gap`` apart: no tie in a sort, a running max or a
    top-k within a finite-difference step."""
    while True:
        x = normal(rng, shape)
        d = np.abs(x.reshape(-1)[:, None] - x.reshape(-1)[None, :])
        if np.all(d + np.eye(x.size) * gap >= gap):
            return x


def _with_zeros(rng):
    """Factors [3, 4]: row 0 has no zero, row 1 one zero, row 2 two zeros."""
    x = normal(rng, (3, 4))
    x[1, 2] = 0.0
    x[2, 0] = x[2, 3] = 0.0
    return (x,)


def _scan_case(name, gate_name, ref, axis, reverse, sample=normal, shape=(3, 5), **flags):
    gate = _gate_of(gate_name)
    return _param_case(name, gate, lambda x: gate(x, axis, reverse), ref,
                       lambda rng: (sample(rng, shape),),
                       dict(axis=axis % len(shape), reverse=reverse), **flags)


def _flipped(scan, axis):
    """A running ``scan`` taken from the end: flip, scan, flip back."""
    return lambda x: jnp.flip(scan(jnp.flip(x, axis), axis=axis), axis)


_SORT_ORDER = lambda x: jnp.argsort(x, axis=1)  # noqa: E731 - the sort gate's order input
_TOP2 = lambda x: lax.top_k(x, 2)[1]  # noqa: E731

GATE_CASES += [
    _scan_case("cumsum_axis1", "cumsum", lambda x: jnp.cumsum(x, axis=1), 1, False,
               order2=True),
    _scan_case("cumsum_reverse", "cumsum", _flipped(jnp.cumsum, 0), 0, True),
    _scan_case("cumprod_axis1", "cumprod", lambda x: jnp.cumprod(x, axis=1), 1, False,
               order2=True),
    _param_case("cumprod_zeros_reverse", _gate_of("cumprod"),
                lambda x: gates.cumprod(x, 1, reverse=True), _flipped(jnp.cumprod, 1),
                _with_zeros, dict(axis=1, reverse=True), order2=True),
    _scan_case("cumlogsumexp_axis1", "cumlogsumexp",
               lambda x: jnp.logaddexp.accumulate(x, axis=1), 1, False, order2=True),
    _scan_case("cumlogsumexp_reverse", "cumlogsumexp",
               _flipped(jnp.logaddexp.accumulate, 0), 0, True),
    _scan_case("cummax_axis1", "cummax", lambda x: jnp.maximum.accumulate(x, axis=1), 1,
               False, sample=spread_out, order2=True),
    _scan_case("cummax_reverse", "cummax", _flipped(jnp.maximum.accumulate, 1), -1, True,
               sample=spread_out),
    _scan_case("cummin_axis0", "cummin", lambda x: jnp.minimum.accumulate(x, axis=0), 0,
               False, sample=spread_out, order2=True),
    Case("sort_axis1", lambda x: gates.sort(x, 1), lambda x: jnp.sort(x, axis=1),
         lambda rng: (spread_out(rng, (3, 4)),), (0,), _gate_of("sort"),
         lambda g, x: g(x, _SORT_ORDER(x), dimension=1), covers="sort", order2=True),
    Case("top_k_2", lambda x: gates.top_k(x, 2), lambda x: -jnp.sort(-x, axis=1)[:, :2],
         lambda rng: (spread_out(rng, (3, 4)),), (0,), _gate_of("top_k"),
         lambda g, x: g(x, _TOP2(x), axis=1, in_shape=(3, 4)), covers="top_k", order2=True),
    _param_case("prod_axis1", _gate_of("prod"), lambda x: gates.prod(x, 1),
                lambda x: jnp.prod(x, axis=1), lambda rng: (normal(rng, (3, 4)),),
                dict(axes=(1,), shape=(3, 4)), order2=True),
    _param_case("prod_zeros", _gate_of("prod"), lambda x: gates.prod(x, 1),
                lambda x: jnp.prod(x, axis=1), _with_zeros, dict(axes=(1,), shape=(3, 4)),
                order2=True),
    _param_case("prod_all", _gate_of("prod"), lambda x: gates.prod(x),
                lambda x: jnp.prod(x), lambda rng: (positive(rng, (2, 3)),),
                dict(axes=None, shape=(2, 3))),
    Case("dynamic_update_slice",
         lambda x, u: gates.dynamic_update_slice(x, u, (1, 2)),
         lambda x, u: x.at[1:3, 2:4].set(u),
         lambda rng: (normal(rng, (3, 5)), normal(rng, (2, 2))), (0, 1),
         _gate_of("dynamic_update_slice"),
         lambda g, x, u: g(x, u, jnp.array([1, 2]), sizes=(2, 2), in_shape=(3, 5)),
         covers="dynamic_update_slice", order2=True),
    Case("dynamic_update_slice_clamped",  # start (2, 4) is clamped to (1, 3): the window fits
         lambda x, u: gates.dynamic_update_slice(x, u, (2, 4)),
         lambda x, u: x.at[1:3, 3:5].set(u),
         lambda rng: (normal(rng, (3, 5)), normal(rng, (2, 2))), (0, 1),
         _gate_of("dynamic_update_slice"),
         lambda g, x, u: g(x, u, jnp.array([2, 4]), sizes=(2, 2), in_shape=(3, 5)),
         covers="dynamic_update_slice"),
    _param_case("tile", _gate_of("tile"), lambda x: gates.tile(x, (2, 3)),
                lambda x: jnp.tile(x, (2, 3)), lambda rng: (normal(rng, (2, 3)),),
                dict(reps=(2, 3)), order2=True),
    Case("select_n_three", arithmetic.select_n,
         lambda c, a, b, d: jnp.where(c == 0, a, jnp.where(c == 1, b, d)),
         lambda rng: (rng.integers(0, 3, (2, 3)).astype(np.int32), normal(rng, (2, 3)),
                      normal(rng, (2, 3)), normal(rng, (2, 3))), (1, 2, 3),
         covers="select", order2=True),
]


def ref_pad(x, v, config):
    """``lax.pad`` built from jnp: x spread out with ``interior`` cells of v between its
    elements, then blocks of v added at the ends (or cells cut off, for a negative count)."""
    for axis, (lo, hi, interior) in enumerate(config):
        n = x.shape[axis]
        shape = list(x.shape)
        shape[axis] = n + max(n - 1, 0) * interior
        at = [np.s_[:]] * x.ndim
        at[axis] = np.s_[::interior + 1]
        x = jnp.full(shape, v, x.dtype).at[tuple(at)].set(x)
        for count, end in ((lo, 0), (hi, 1)):
            if count > 0:
                shape = list(x.shape)
                shape[axis] = count
                block = jnp.full(shape, v, x.dtype)
                x = jnp.concatenate([block, x] if end == 0 else [x, block], axis=axis)
            elif count < 0:
                x = lax.slice_in_dim(x, -count, None, axis=axis) if end == 0 else \
                    lax.slice_in_dim(x, 0, x.shape[axis] + count, axis=axis)
    return x


_PAD_MIXED = ((1, -1, 1), (-1, 2, 2))  # low, high, interior: padding, cutting and spreading
_PAD_CONV = ((0, 0, 0), (2, 1, 0), (1, 1, 0))  # jnp.pad's zeros around an image's edges

GATE_CASES += [
    _param_case("pad", _gate_of("pad"), lambda x, v: gates.pad(x, v, _PAD_MIXED),
                lambda x, v: ref_pad(x, v, _PAD_MIXED),
                lambda rng: (normal(rng, (3, 4)), normal(rng, ())), dict(config=_PAD_MIXED),
                diff=(0, 1), order2=True),
    Case("pad_zeros", lambda x: gates.pad(x, 0.0, _PAD_CONV),
         lambda x: ref_pad(x, 0.0, _PAD_CONV), lambda rng: (normal(rng, (2, 3, 2)),), (0,),
         _gate_of("pad"), lambda g, x: g(x, 0.0, config=_PAD_CONV), covers="pad"),
]
def _loss_case(name):
    entry = losses.LOSSES[name]

    def make(rng):
        if name == "svm":
            return hinge_scores(rng, 4, 3)
        return normal(rng, (4, 3)), labels_for(rng, 4, 3)

    def apply(g, scores, labels):
        # The public loss's checks, then the fused gate g in place of the loss's own.
        return g(scores, losses.check_scores_labels(entry.gate.name, scores, labels))

    return Case(entry.gate.name, entry.fn, entry.reference, make, (0,), entry.gate, apply,
                "loss", covers=name, order2=True)


def _two_layer_params(rng, d=3, h=4, c=3, n=5):
    """Two-layer params and x whose hidden pre-activations are all >= 0.05 away from 0."""
    while True:
        p = {"W1": normal(rng, (d, h)), "b1": normal(rng, (h,)) * 0.5,
             "W2": normal(rng, (h, c)), "b2": normal(rng, (c,)) * 0.5}
        x = normal(rng, (n, d))
        if np.all(np.abs(x @ p["W1"] + p["b1"]) >= 0.05):
            return p, x


def _linear_params(rng, d=3, c=4, n=5):
    return {"W": normal(rng, (d, c)), "b": normal(rng, (c,))}, normal(rng, (n, d))


def _objective_args(param_fn, loss_name):
    def make(rng):
        while True:
            p, x = param_fn(rng)
            if param_fn is _two_layer_params:
                s = np.asarray(ref_two_layer(p, x))
            else:
                s = np.asarray(ref_linear(p, x))
            y = labels_for(rng, *s.shape)
            if loss_name == "softmax":
                return p, x, y
            m = s - s[np.arange(len(y)), y][:, None] + 1
            m[np.arange(len(y)), y] = 1.0
            if np.all(np.abs(m) >= 0.05):  # no hinge margin within reach of 0
                return p, x, y

    return make


LOSS_CASES = [_loss_case(name) for name in losses.LOSSES] + [
    Case("l2_penalty", losses.l2_penalty, ref_l2,
         lambda rng: (_two_layer_params(rng)[0],), (0,), kind="loss", covers="l2_penalty",
         order2=True),
]

def _convnet_params(rng, n=4, c=1, side=4, f=2, k=3, h=3, classes=3, norm=True, gap=0.01):
    """ConvNet params (batch norm on) and images x [N, side*side*c] whose conv and hidden
    pre-activations are all >= gap away from ReLU's kink and whose pooling windows have no
    two positive values within gap (no max tie in reach of a finite difference)."""
    while True:
        p = {"W1": normal(rng, (f, c, k, k)), "b1": normal(rng, (f,)) * 0.5,
             "W2": normal(rng, (f * (side // 2) ** 2, h)), "b2": normal(rng, (h,)) * 0.5,
             "W3": normal(rng, (h, classes)), "b3": normal(rng, (classes,)) * 0.5}
        if norm:
            p.update(gamma1=1 + 0.3 * normal(rng, (f,)), beta1=0.3 * normal(rng, (f,)),
                     gamma2=1 + 0.3 * normal(rng, (h,)), beta2=0.3 * normal(rng, (h,)))
        x = normal(rng, (n, side * side * c))
        conv, hidden = _convnet_preactivations(p, x)
        windows = np.sort(np.maximum(conv, 0).reshape(n, f, side // 2, 2, side // 2, 2)
                          .transpose(0, 1, 2, 4, 3, 5).reshape(-1, 4), axis=1)
        tie = (windows[:, 3] > 0) & (windows[:, 3] - windows[:, 2] < gap)
        if np.all(np.abs(conv) >= gap) and np.all(np.abs(hidden) >= gap) and not tie.any():
            return p, x


def _convnet_preactivations(p, x):
    """The reference ConvNet's values before each ReLU: conv (+ norm) [N, F, H, W] and
    hidden (+ norm) [N, H]."""
    seen = []
    relu = jax.nn.relu
    try:
        jax.nn.relu = lambda a: (seen.append(np.asarray(a)), relu(a))[1]
        reference.convnet_scores(jax.tree.map(jnp.asarray, p), jnp.asarray(x))
    finally:
        jax.nn.relu = relu
    return seen


def _recurrent_params(rng, cell, n=3, steps=4, d=3, hidden=4, classes=3):
    """A sequence classifier's params (biases drawn too) and x [N, T*D]."""
    width = 4 * hidden if cell == "lstm" else hidden
    p = {"Wx": 0.5 * normal(rng, (d, width)), "Wh": 0.5 * normal(rng, (hidden, width)),
         "b": 0.3 * normal(rng, (width,)), "W_out": normal(rng, (hidden, classes)),
         "b_out": 0.3 * normal(rng, (classes,))}
    return p, normal(rng, (n, steps * d))


_PARAMS = {"linear": _linear_params, "two_layer": _two_layer_params,
           # without batch norm: the battery probes x all equal, where var = 0 (see the
           # batch_norm case); the objective case below has it, at inputs of spread-out values
           "convnet": lambda rng: _convnet_params(rng, norm=False),
           "rnn": lambda rng: _recurrent_params(rng, "rnn"),
           "lstm": lambda rng: _recurrent_params(rng, "lstm")}
DROPOUT_KEY = np.array([0, 42], np.uint32)
"""The dropout key of the ConvNet's training-mode cases (a raw ``jax.random.PRNGKey``)."""

MODEL_CASES = [
    Case(f"{name}_scores", entry.scores, entry.reference, lambda rng, name=name:
         _PARAMS[name](rng), (0, 1), kind="model", covers=name,
         order2=name in ("rnn", "lstm"),  # a scan's check_grads to order 2: here, once
         explicit=name not in ("rnn", "lstm"))  # plain jnp code with lax.scan
    for name, entry in models.MODELS.items()
] + [
    Case(f"objective_{model}_{loss}_reg{reg}",
         jaxprop.objective(models.MODELS[model].scores, losses.LOSSES[loss].fn, reg),
         ref_objective(models.MODELS[model].reference, losses.LOSSES[loss].reference, reg),
         _objective_args(_PARAMS[model], loss), (0, 1), kind="model", covers=model,
         order2=order2)
    for model, loss, reg, order2 in [("linear", "svm", 0.1, True), ("linear", "softmax", 0, False),
                                     ("two_layer", "softmax", 0.01, True),
                                     ("two_layer", "svm", 0.05, False)]
] + [  # the ConvNet in training mode: batch norm and dropout, masks from DROPOUT_KEY
    Case("objective_convnet_dropout_softmax_reg0.01",
         jaxprop.objective(lambda p, x: models.convnet_scores(p, x, key=DROPOUT_KEY,
                                                              dropout_keep=0.6),
                           losses.softmax_loss, 0.01),
         ref_objective(lambda p, x: reference.convnet_scores(p, x, key=DROPOUT_KEY,
                                                             dropout_keep=0.6),
                       reference.softmax_loss, 0.01),
         lambda rng: (*_convnet_params(rng), labels_for(rng, 4, 3)), (0, 1), kind="model",
         covers="convnet", order2=True),
    Case("convnet_scores_rgb", models.convnet_scores, reference.convnet_scores,
         lambda rng: _convnet_params(rng, norm=False, c=3, side=2, f=3, k=1), (0, 1),
         kind="model", covers="convnet"),
]

CASES = GATE_CASES + LOSS_CASES + MODEL_CASES
SWAPPABLE = [c for c in CASES if c.apply is not None]

LECTURE_GATES = frozenset({
    "add", "sub", "neg", "mul", "div", "reciprocal", "pow", "integer_pow", "maximum",
    "minimum", "abs", "select", "where", "exp", "log", "log1p", "expm1", "sigmoid", "tanh",
    "sqrt", "rsqrt", "relu", "sum", "mean", "max", "min", "copy", "broadcast_to", "reshape",
    "squeeze", "expand_dims", "transpose", "rev", "cast", "slice", "dynamic_slice", "gather",
    "scatter", "scatter_add", "scatter_mul", "scatter_max", "scatter_min", "concatenate",
    "split", "matmul", "dot_general",
})
"""The lecture's gates: every per-case test runs on all their cases in the normal suite."""

SAMPLED_GATES = frozenset({
    "conv", "max_pool", "sum_pool", "pad", "batch_norm", "dropout", "cumsum", "sort", "sin",
    "erf", "clamp", "cholesky", "triangular_solve", "prod",
})
"""Later gates (the CNN lecture's, the rest of JAX's) whose first case also runs every
per-case test in the normal suite."""


FAST_MODELS = frozenset({"linear", "two_layer", "svm", "softmax", "l2_penalty"})
"""The lecture's models and losses: every per-case test runs on them in the normal suite."""


def split(cases) -> list:
    """``cases`` as pytest params, marked slow unless the case is of one of the lecture's
    gates, models or losses, or the first case of a gate of :data:`SAMPLED_GATES`. The
    normal suite thus runs every per-case test (the battery, drivers, observed and swapped
    rules, order 2, explain, flat code) on the lecture's slice and a sample of the rest; the
    slow job (``-m slow``, the second step of ``.ci/run``) runs them on every other case."""
    seen: set[str] = set()
    params = []
    for c in cases:
        fast = ((c.kind != "gate" and c.covers in FAST_MODELS) or c.covers in LECTURE_GATES
                or (c.covers in SAMPLED_GATES and c.covers not in seen))
        seen.add(c.covers)
        params.append(pytest.param(c, id=c.name, marks=() if fast else pytest.mark.slow))
    return params


def missing_cases(gates_by_name: dict[str, Gate], cases=GATE_CASES) -> dict[str, list[str]]:
    """What each gate of ``gates_by_name`` lacks among the cases every gate needs: a case (run
    through the battery), one marked ``order2``, one that swaps its rules in (``apply``)."""
    needs = {"a case": lambda c: True, "an order2 case": lambda c: c.order2,
             "a case with its rules swapped in": lambda c: c.apply is not None}
    missing = {name: [need for need, has in needs.items()
                      if not any(c.covers == name and has(c) for c in cases)]
               for name in gates_by_name}
    return {name: lacks for name, lacks in missing.items() if lacks}


# ------------------------------------------------------------------------------ the battery
# Every case in the registry runs through these checks (test_gates, test_losses, test_models).
# Each check traces everything it compares into one jax.jit: one compilation per case and
# check, instead of dozens of op-by-op dispatches. The pipelines' own jits nest inside it.


def random_like(tree, seed: int):
    """A pytree of standard-normal float64 arrays shaped like ``tree``."""
    leaves, treedef = jax.tree.flatten(tree)
    rng = np.random.default_rng(seed)
    return treedef.unflatten([jnp.asarray(rng.normal(size=np.shape(x))) for x in leaves])


def vdot(a, b):
    """<a, b> summed over the leaves of two pytrees of the same structure."""
    return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def flat(tree):
    return jax.flatten_util.ravel_pytree(tree)[0]


def scale(k: float, tree):
    return jax.tree.map(lambda a: k * a, tree)


def is_scalar(out) -> bool:
    return not isinstance(out, tuple) and np.shape(out) == ()


def _directions(case: Case, args: tuple):
    g, dyn = case.split(case.fn, args)
    out = jax.eval_shape(g, *dyn)
    return random_like(dyn, 1), random_like(out, 2)


def check_battery(case: Case, order2: bool = False) -> None:
    """The case through ``jaxprop.check``, the battery users run on their own gates: finite
    differences for each rule, the adjoint test, JAX autodiff of the forward code and of the
    reference, linearity, shapes and dtypes, and our rules observed in each mode. check_grads
    to order 2 under both rule sets when ``order2`` (the slowest check)."""
    skip = () if order2 else ("check_grads_jvp", "check_grads_vjp")
    report = jaxprop.check(case.fn, *case.args(), diff=case.diff, reference=case.ref,
                           checks=[k for k in CHECKS if k not in skip], rtol=RTOL, atol=ATOL,
                           fd_atol=FD_ATOL, fd_step=FD_STEP)
    assert report.ok, str(report)
    assert report["reference"].status == "pass", str(report)
    assert report["adjoint"].status == "pass", str(report)  # never the vacuous 0 = 0


def check_second_order(case: Case) -> None:
    """check_grads to order 2 alone, through ``jaxprop.check``: both modes under our JVP rules,
    reverse-over-reverse under our VJP rules."""
    report = jaxprop.check(case.fn, *case.args(), diff=case.diff,
                           checks=("check_grads_jvp", "check_grads_vjp"), rtol=RTOL,
                           fd_atol=FD_ATOL, fd_step=FD_STEP)
    assert report.ok, str(report)


def check_drivers(case: Case) -> None:
    """The drivers on the full signature (labels included) agree with each other and with JAX
    autodiff of the reference: value_and_grad for a scalar output, else jacobian, in both
    modes, and forward.jvp_from_vjp (forward mode from two reverse passes)."""
    args = case.args()
    v, _ = _directions(case, args)
    scalar = is_scalar(jax.eval_shape(case.fn, *args))

    @jax.jit
    def derivatives(args, v):
        g, dyn = case.split(case.fn, args)
        r = {}
        if scalar:
            r["grad_ref"] = jax.grad(case.ref, case.diff)(*args)
            r["vg_rev"] = jaxprop.reverse.value_and_grad(case.fn, case.diff)(*args)
            r["vg_fwd"] = jaxprop.forward.value_and_grad(case.fn, case.diff)(*args)
            r["out"] = case.ref(*args)
        else:
            r["jac_rev"] = jaxprop.reverse.jacobian(case.fn, case.diff)(*args)
            r["jac_fwd"] = jaxprop.forward.jacobian(case.fn, case.diff)(*args)
            r["jac_ref"] = jax.jacrev(case.ref, case.diff)(*args)
        r["jvp_fwd"] = jaxprop.forward.jvp(g, dyn, v)[1]
        r["jvp_j2v"] = jaxprop.forward.jvp_from_vjp(g, dyn, v)[1]
        return r

    r = derivatives(args, v)
    close = dict(rtol=RTOL, atol=ATOL)
    if scalar:
        for name in ("vg_rev", "vg_fwd"):
            value, grads = r[name]
            chex.assert_trees_all_close(value, r["out"], **close)
            chex.assert_trees_all_close(grads, r["grad_ref"], **close)
    else:
        chex.assert_trees_all_close(r["jac_rev"], r["jac_fwd"], r["jac_ref"], **close)
    chex.assert_trees_all_close(r["jvp_fwd"], r["jvp_j2v"], **close)


def rule_events(run: Callable[[], object]) -> tuple[list[str], list[str]]:
    """Traces ``run()`` (nothing is compiled) under jaxprop.observe. Returns the names of the
    gates applied and the rules traced, the latter as "gate:kind"."""
    events = []
    with jaxprop.observe(events.append):
        jax.make_jaxpr(run)()
    applied = [e.gate.name for e in events if e.kind == "forward"]
    rules = [f"{e.gate.name}:{e.kind}" for e in events if e.kind != "forward"]
    return applied, rules


def check_observed_rules(case: Case) -> None:
    """Reverse mode traces only our VJP rules and forward mode only our JVP rules, and every
    gate applied gets its rule exactly once."""
    args = case.args()
    g, dyn = case.split(case.fn, args)
    v, u = _directions(case, args)
    runs = {
        "vjp": [lambda: jaxprop.reverse.vjp(g, *dyn)[1](u),
                lambda: jaxprop.forward.jvp_from_vjp(g, dyn, v),
                lambda: jaxprop.reverse.jacobian(case.fn, case.diff)(*args)],
        "jvp": [lambda: jaxprop.forward.jvp(g, dyn, v),
                lambda: jaxprop.forward.jacobian(case.fn, case.diff)(*args),
                lambda: jax.jvp(g, dyn, v),  # plain JAX runs our JVP rules by default,
                lambda: jax.vjp(g, *dyn)[1](u)][:None if case.explicit else 2],  # transposed
    }
    if is_scalar(jax.eval_shape(g, *dyn)):
        runs["vjp"].append(lambda: jaxprop.reverse.grad(case.fn, case.diff)(*args))
        runs["jvp"].append(lambda: jaxprop.forward.grad(case.fn, case.diff)(*args))
    for kind, fns in runs.items():
        for k, run in enumerate(fns):
            applied, rules = rule_events(run)
            where = (case.name, kind, k, applied, rules)
            assert applied, where
            assert {r.split(":")[1] for r in rules} == {kind}, where
            # Every gate application ran its rule exactly once: none skipped, none twice.
            assert sorted(r.split(":")[0] for r in rules) == sorted(applied), where
            if case.gate is not None:
                assert f"{case.gate.name}:{kind}" in rules, where


def scaled_rules(gate: Gate, which: str, factor: float, inputs=None) -> Gate:
    """A fresh gate like ``gate`` whose ``which`` ("vjp" or "jvp") rules, for ``inputs``
    (default: all), return ``factor`` times the hand-written ones: a rule that shows itself
    when it runs."""
    rules = list(getattr(gate, which))
    for i, rule in enumerate(rules):
        if rule is not None and (inputs is None or i in inputs):
            rules[i] = lambda res, t, rule=rule, **params: jax.tree.map(
                lambda a: factor * a, rule(res, t, **params))
    return dataclasses.replace(gate, **{which: tuple(rules)})


def check_swapped_rules(case: Case) -> None:
    """A gate whose VJP rules are scaled by 2 doubles reverse mode (and jvp_from_vjp, built on
    it) and leaves forward mode alone; one whose JVP rules are scaled by 3 triples forward
    mode (and plain jax.vjp, which transposes the JVP rules) and leaves our reverse mode
    alone. So the rule that ran is the hand-written one, in every mode."""
    args = case.args()
    v, u = _directions(case, args)
    variants = {"orig": case.gate, "vjp2": scaled_rules(case.gate, "vjp", 2.0),
                "jvp3": scaled_rules(case.gate, "jvp", 3.0)}

    @jax.jit
    def results(args, v, u):
        r = {}
        for name, gate in variants.items():
            g, dyn = case.split(lambda *a, gate=gate: case.apply(gate, *a), args)
            r[name] = {"rev": jaxprop.reverse.vjp(g, *dyn)[1](u),
                       "fwd": jaxprop.forward.jvp(g, dyn, v)[1],
                       "j2v": jaxprop.forward.jvp_from_vjp(g, dyn, v)[1],
                       "jax_vjp": jax.vjp(g, *dyn)[1](u)}
        return r

    r = results(args, v, u)
    orig, vjp2, jvp3 = r["orig"], r["vjp2"], r["jvp3"]
    assert vdot(orig["rev"], orig["rev"]) > 1e-6 and vdot(orig["fwd"], orig["fwd"]) > 1e-6
    close = dict(rtol=RTOL, atol=ATOL)
    chex.assert_trees_all_close(orig["rev"], orig["jax_vjp"], **close)
    chex.assert_trees_all_close(vjp2["rev"], scale(2.0, orig["rev"]), **close)
    chex.assert_trees_all_close(vjp2["j2v"], scale(2.0, orig["fwd"]), **close)
    chex.assert_trees_all_close(vjp2["fwd"], orig["fwd"], **close)
    chex.assert_trees_all_close(vjp2["jax_vjp"], orig["rev"], **close)
    chex.assert_trees_all_close(jvp3["fwd"], scale(3.0, orig["fwd"]), **close)
    chex.assert_trees_all_close(jvp3["jax_vjp"], scale(3.0, orig["rev"]), **close)
    chex.assert_trees_all_close(jvp3["rev"], orig["rev"], **close)
    chex.assert_trees_all_close(jvp3["j2v"], orig["fwd"], **close)
