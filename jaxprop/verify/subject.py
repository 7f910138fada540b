"""The subject under test of ``jaxprop.check``: a gate or a function, made a function of
its differentiated leaves, with the inputs' checks.

A gate is checked at its inputs and static params, a Python number being a constant input
(no gradient), as in a gate call; a function at pytrees of arrays, each floating-point leaf
differentiated. Either becomes a :class:`Subject`: ``fn`` of the leaves through our rules,
``forward``, the same computation as plain JAX code (JAX's autodiff of it is an oracle), and
how to rebuild the full inputs from the leaves.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxprop.gate import Gate, is_constant, run_forward
from jaxprop.verify import oracles

__all__ = ["Subject", "gate_subject", "function_subject", "check_tolerances", "check_arity",
           "check_finite"]


@dataclasses.dataclass
class Subject:
    """What is checked: ``fn`` of the differentiated leaves, and how to rebuild the inputs."""

    label: str
    fn: Callable  # (*leaves) -> output: gates, explicit or traced
    forward: Callable  # (*leaves) -> output, every gate inlined as its forward code
    leaves: list
    names: list[str]
    rebuild: Callable  # (leaves) -> the full positional inputs
    gate: Gate | None = None
    params: dict | None = None
    const_mask: tuple = ()
    diff: tuple = ()


def _float64(x):
    """An input in float64 (the battery's precision); integer and boolean arrays as they are."""
    if is_constant(x):
        return x
    a = jnp.asarray(x)
    if jnp.issubdtype(a.dtype, jnp.complexfloating):
        raise TypeError(f"check: an input has dtype {a.dtype}; the rules are checked on real "
                        "floating-point inputs")
    return a.astype(jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a


def _is_float_array(x) -> bool:
    return not is_constant(x) and jnp.issubdtype(jnp.result_type(x), jnp.floating)


def gate_subject(gate: Gate, inputs: tuple, params: dict, diff) -> Subject:
    if len(inputs) != gate.arity:
        raise TypeError(f"check: gate {gate.name!r} takes {gate.arity} inputs "
                        f"({', '.join(gate.input_names)}); got {len(inputs)}")
    if set(params) != set(gate.params):
        raise TypeError(f"check: gate {gate.name!r} takes the parameters {gate.params} "
                        f"(params={{...}}); got {tuple(sorted(params))}")
    inputs = tuple(_float64(x) for x in inputs)
    mask = tuple(is_constant(x) for x in inputs)
    usable = [i for i in range(gate.arity)
              if gate.vjp[i] is not None and _is_float_array(inputs[i])]
    diff = tuple(usable) if diff is None else _positions(diff, gate.arity)
    for i in diff:
        if i not in usable:
            why = ("has no rule (None)" if gate.vjp[i] is None else
                   "is not a floating-point array")
            raise ValueError(f"check: input {i} ({gate.input_names[i]}) of gate "
                             f"{gate.name!r} cannot be differentiated: it {why}")
    if not diff:
        raise ValueError(f"check: gate {gate.name!r} has no floating-point array input with "
                         "a rule to differentiate; pass arrays, not Python numbers")

    def rebuild(leaves):
        xs = list(inputs)
        for i, x in zip(diff, leaves):
            xs[i] = x
        return tuple(xs)

    return Subject(
        f"gate {gate.name!r}",
        lambda *leaves: gate(*rebuild(leaves), **params),
        lambda *leaves: run_forward(gate, rebuild(leaves), mask, params)[0],
        [inputs[i] for i in diff], [gate.input_names[i] for i in diff], rebuild, gate,
        params, mask, diff)


def _positions(diff, n: int) -> tuple[int, ...]:
    diff = (diff,) if isinstance(diff, int) else tuple(diff)
    if not diff or not all(isinstance(i, int) and -n <= i < n for i in diff):
        raise ValueError(f"check: diff must name input positions 0..{n - 1}; got {diff!r}")
    return tuple(sorted({i % n for i in diff}))


def check_tolerances(**tolerances) -> None:
    for name, value in tolerances.items():
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or \
                not math.isfinite(value) or value <= 0:
            raise ValueError(f"check: {name} must be a positive finite number; got {value!r}")


def check_arity(f: Callable, n: int) -> None:
    """A function's signature against the number of inputs given, as one error."""
    try:
        sig = inspect.signature(f)
    except (TypeError, ValueError):
        return
    try:
        sig.bind(*([None] * n))
    except TypeError as err:
        name = getattr(f, "__name__", None) or type(f).__name__
        raise TypeError(f"check: {name}{sig} cannot take {n} input(s): {err}") from None


def check_finite(inputs, what: str) -> None:
    """Finite differences mean nothing at an infinite or NaN input: refused, naming it."""
    for i, x in enumerate(inputs):
        for path, leaf in jax.tree_util.tree_flatten_with_path(x)[0]:
            if is_constant(leaf) and not isinstance(leaf, (float, np.floating)):
                continue
            a = np.asarray(leaf)
            if not np.issubdtype(a.dtype, np.floating) or np.all(np.isfinite(a)):
                continue
            k = int(np.flatnonzero(~np.isfinite(a))[0])
            at = oracles.index_text("", a.shape, k)
            raise ValueError(f"check: {what} {i}{jax.tree_util.keystr(path)} holds {a.flat[k]}"
                             f"{' at ' + at if at else ''}; finite differences need finite "
                             "inputs")


def function_subject(f: Callable, inputs: tuple, diff) -> Subject:
    inputs = tuple(jnp.asarray(float(x), jnp.float64) if is_constant(x) else
                   jax.tree.map(_float64, x) for x in inputs)
    try:
        params = list(inspect.signature(f).parameters.values())
        arg_names = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY,
                                                          p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        arg_names = []
    arg_names = (arg_names + [f"arg{i}" for i in range(len(arg_names), len(inputs))])
    usable = [i for i, x in enumerate(inputs)
              if jax.tree.leaves(x) and all(_is_float_array(a) for a in jax.tree.leaves(x))]
    diff = tuple(usable) if diff is None else _positions(diff, len(inputs))
    for i in diff:
        if i not in usable:
            raise ValueError(f"check: input {i} ({arg_names[i]}) is not made of floating-point "
                             "arrays and cannot be differentiated")
    if not diff:
        raise ValueError("check: no floating-point input to differentiate; the example "
                         "inputs are integers or booleans")
    leaves, names, trees = [], [], []
    for i in diff:
        paths, tree = jax.tree_util.tree_flatten_with_path(inputs[i])
        trees.append((tree, len(paths)))
        for path, leaf in paths:
            leaves.append(leaf)
            names.append(arg_names[i] + jax.tree_util.keystr(path))

    def rebuild(new_leaves):
        xs, k = list(inputs), 0
        for i, (tree, n) in zip(diff, trees):
            xs[i] = jax.tree.unflatten(tree, list(new_leaves[k:k + n]))
            k += n
        return tuple(xs)

    def fn(*new_leaves):
        return f(*rebuild(new_leaves))

    name = getattr(f, "__name__", None) or type(f).__name__
    return Subject(f"function {name}", fn, oracles.forward_as_written(fn), leaves, names,
                    rebuild, diff=diff)
