"""One jitted run of a pipeline that also hands back every value its gate rules saw.

``jaxprop.observe`` calls us at trace time with each gate application (``kind="forward"``)
and each rule application (``"vjp"`` or ``"jvp"``). Under ``jax.jit`` those are tracers, so
we return the arrays the rules saw as *extra outputs* of the jitted function. The explained
run therefore computes its output and gradients in the very program that the pipeline
compiles, and the numbers are exactly the pipeline's.

Reverse mode traces ``jax.vjp`` under the ``"vjp"`` pipeline and pulls back ``upstream``
(ones by default): the rules run in reverse order of the gates, and each one reports its
upstream gradient z_bar and its downstream gradients x_bar. Forward mode traces ``jax.jvp``
under the ``"jvp"`` pipeline: each rule reports its input tangents and its output tangent.
Without explicit tangents, forward mode pushes the whole standard basis of the inputs at
once (``jax.vmap``): one column of the Jacobian per input element, which is how forward mode
builds a gradient.

Gate applications are identified across events by object identity (``id``) of the tracers
within the one trace: a gate's output tracer is the very object the next gate receives.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jaxprop.gate import RuleEvent, observe, pipeline

MODES = ("reverse", "forward")
DEFAULT_MAX_BASIS = 256
"""Most input elements forward mode pushes a basis vector for, unless told otherwise."""


def is_constant(x) -> bool:
    """A Python number given to a gate is a constant (as in ``jaxprop.gate``)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool)


@dataclasses.dataclass
class Application:
    """One gate application with the values of its forward pass and of its rule.

    ``input_ids``/``output_ids`` identify values within the trace; ``consts`` holds, per
    input, the Python number it was or ``None``. ``upstream``/``downstream`` follow
    :class:`jaxprop.gate.RuleEvent`; both are ``None`` for a gate that no differentiated
    input reaches.
    """

    gate: Any
    input_ids: tuple[int, ...]
    output_ids: tuple[int, ...]
    consts: tuple
    inputs: tuple
    outputs: Any
    differentiated: bool
    upstream: Any = None
    downstream: Any = None


@dataclasses.dataclass
class Capture:
    """Everything one explained run gives back, as NumPy arrays."""

    mode: str
    basis: bool
    arg_leaf_ids: list[list[int]]
    out_leaf_ids: list[int]
    applications: list[Application]
    output: Any
    seed: Any
    arg_tangents: list[list[Any]] | None
    grads: tuple | None
    output_tangent: Any


def _is_inexact(arg) -> bool:
    leaves = jax.tree.leaves(arg)
    return bool(leaves) and all(jnp.issubdtype(jnp.result_type(x), jnp.inexact) for x in leaves)


def run(f: Callable, args: tuple, mode: str, upstream=None, tangents=None,
        max_basis: int | None = DEFAULT_MAX_BASIS) -> Capture:
    """Runs f once in the jitted pipeline for ``mode`` and collects every rule's values."""
    if mode not in MODES:
        raise ValueError(f"explain: unknown mode {mode!r}; expected one of {MODES}")
    diff = tuple(i for i, a in enumerate(args) if _is_inexact(a))
    if not diff:
        raise TypeError(
            "explain: no argument is floating-point, so there is nothing to differentiate; "
            f"got dtypes {[jax.tree.map(jnp.result_type, a) for a in args]}"
        )
    out_struct = jax.eval_shape(f, *args)
    basis = mode == "forward" and tangents is None
    if mode == "forward" and not basis and upstream is not None:
        raise ValueError("explain: upstream applies to reverse mode and to forward mode with "
                         "the basis pushed, not together with tangents")
    if upstream is not None:
        upstream = _check_like("upstream", upstream, out_struct, "f's output")
    if mode == "forward" and tangents is not None:
        tangents = tuple(tangents)
        if len(tangents) != len(diff):
            raise ValueError(
                f"explain: tangents must hold one entry per floating-point argument "
                f"({len(diff)}: positions {list(diff)}); got {len(tangents)}"
            )
        tangents = tuple(
            _check_like(f"tangents[{k}]", t, jax.eval_shape(lambda a=args[i]: a), f"argument {i}")
            for k, (t, i) in enumerate(zip(tangents, diff, strict=True)))
    if basis:
        n = sum(int(np.size(x)) for i in diff for x in jax.tree.leaves(args[i]))
        if max_basis is not None and n > max_basis:
            raise ValueError(
                f"explain: forward mode pushes one basis vector per input element, and the "
                f"inputs have {n} > max_basis={max_basis}; pass tangents=(...) for one "
                "direction, raise max_basis, or use mode='reverse'"
            )

    events: list[RuleEvent] = []
    meta: dict[str, Any] = {}

    def f_of_diff(fixed, *dyn):
        full = list(fixed)
        for i, a in zip(diff, dyn, strict=False):
            full[i] = a
        meta["arg_leaves"] = [jax.tree.leaves(a) for a in full]
        meta["ad_trace"] = getattr(jax.tree.leaves(dyn)[0], "_trace", None)
        out = f(*full)
        meta["out_leaves"] = jax.tree.leaves(out)
        return out

    def traced(fixed, dyn, seed_or_tangents):
        events.clear()
        fun = lambda *d: f_of_diff(fixed, *d)  # noqa: E731
        with observe(events.append):
            if mode == "reverse":
                with pipeline("vjp"):
                    out, pullback = jax.vjp(fun, *dyn)
                    seed = (jax.tree.map(jnp.ones_like, out) if seed_or_tangents is None
                            else seed_or_tangents)
                    grads = pullback(seed)
                return out, seed, grads, _export(events, meta)
            with pipeline("jvp"):
                if not basis:
                    out, out_dot = jax.jvp(fun, dyn, seed_or_tangents)
                    return out, None, out_dot, _export(events, meta)
                flat, unravel = ravel_pytree(dyn)

                def push(e):
                    events.clear()
                    t = unravel(e)
                    out, out_dot = jax.jvp(fun, dyn, t)
                    return out, out_dot, _export(events, meta), t

                eye = jnp.eye(flat.size, dtype=flat.dtype)
                out, out_dot, exported, arg_t = jax.vmap(push)(eye)
                out = jax.tree.map(lambda a: a[0], out)
                return out, arg_t, out_dot, exported

    fixed = tuple(None if i in diff else a for i, a in enumerate(args))
    dyn = tuple(args[i] for i in diff)
    try:
        out, extra, result, exported = jax.jit(traced)(
            fixed, dyn, upstream if mode == "reverse" else tangents)
    except jax.errors.UnexpectedTracerError as err:
        raise ValueError(
            "explain: a gate value escaped its trace; pass the plain function, not one "
            "wrapped in jax.jit (explain jits it itself)"
        ) from err
    exported = jax.tree.map(np.asarray, exported)
    applications = _applications(events, meta, exported, mode, basis)
    if not applications:
        raise ValueError(
            "explain: f applied no jaxprop gate (build it from jaxprop.gates; a function "
            "already wrapped in jax.jit is traced only once, so pass the plain function)"
        )
    to_np = lambda t: jax.tree.map(np.asarray, t)  # noqa: E731
    arg_leaf_ids = [[id(x) for x in leaves] for leaves in meta["arg_leaves"]]
    arg_tangents = None
    grads = output_tangent = None
    if mode == "reverse":
        grads = _per_arg(to_np(result), diff, len(args))
        seed = to_np(extra)
    else:
        seed = None
        output_tangent = to_np(result)
        tangent_per_diff = to_np(extra) if basis else to_np(tangents)
        arg_tangents = [None] * len(args)
        for i, t in zip(diff, tangent_per_diff, strict=False):
            arg_tangents[i] = jax.tree.leaves(t)
        if basis:
            grads = _forward_grads(output_tangent, upstream, dyn, diff, len(args))
    return Capture(mode, basis, arg_leaf_ids, [id(x) for x in meta["out_leaves"]],
                   applications, to_np(out), seed, arg_tangents, grads, output_tangent)


def _check_like(what: str, given, struct, of: str):
    """Returns ``given`` as arrays after checking it has the structure and shapes of struct."""
    given = jax.tree.map(jnp.asarray, given)
    want = jax.tree.structure(struct)
    if jax.tree.structure(given) != want:
        raise ValueError(f"explain: {what} must have the structure of {of}, {want}; "
                         f"got {jax.tree.structure(given)}")
    for g, s in zip(jax.tree.leaves(given), jax.tree.leaves(struct), strict=False):
        if g.shape != s.shape:
            raise ValueError(f"explain: {what} must have the shape of {of}, {s.shape}; "
                             f"got {g.shape}")
    return jax.tree.map(lambda g, s: g.astype(s.dtype), given, struct)


def _per_arg(per_diff, diff, nargs) -> tuple:
    full = [None] * nargs
    for i, g in zip(diff, per_diff, strict=False):
        full[i] = g
    return tuple(full)


def _forward_grads(columns, upstream, dyn, diff, nargs) -> tuple:
    """dL/dx_j = <upstream, J e_j>: the gradient from the pushed columns, one per element.

    For a scalar f with the default upstream 1 this is column j itself, exactly as
    ``jaxprop.forward.grad`` assembles it.
    """
    cols = jax.tree.leaves(columns)
    ups = ([None] * len(cols) if upstream is None
           else [np.asarray(u) for u in jax.tree.leaves(upstream)])
    flat = None
    for col, up in zip(cols, ups, strict=True):
        part = col if up is None else up * col
        part = part.sum(axis=tuple(range(1, part.ndim))) if part.ndim > 1 else part
        flat = part if flat is None else flat + part
    leaves, treedef = jax.tree.flatten(dyn)  # unravel in NumPy: no eager XLA compiles
    parts = np.split(flat, np.cumsum([np.size(x) for x in leaves])[:-1])
    grads = [p.reshape(np.shape(x)).astype(jnp.result_type(x)) for p, x in
             zip(parts, leaves, strict=True)]
    return _per_arg(jax.tree.unflatten(treedef, grads), diff, nargs)


def _export(events: list[RuleEvent], meta: dict) -> list:
    """The arrays each event saw, as a pytree the jitted function can return."""
    ad_trace = meta["ad_trace"]
    exported = []
    for e in events:
        arrays = lambda xs: tuple(None if is_constant(x) else x for x in xs)  # noqa: E731
        if e.kind == "forward":
            if _differentiated(e, ad_trace):
                exported.append(None)
            else:
                exported.append({"inputs": arrays(e.inputs), "outputs": e.outputs})
        else:
            exported.append({"inputs": arrays(e.inputs), "outputs": e.outputs,
                             "upstream": e.upstream, "downstream": e.downstream})
    return exported


def _differentiated(event: RuleEvent, ad_trace) -> bool:
    return any(getattr(x, "_trace", None) is ad_trace for x in jax.tree.leaves(event.outputs))


def _applications(events, meta, exported, mode, basis) -> list[Application]:
    """Pairs each gate application with the values of its rule (reverse: rules run backward)."""
    ad_trace = meta["ad_trace"]
    forward = [(e, x) for e, x in zip(events, exported, strict=False) if e.kind == "forward"]
    rules = [(e, x) for e, x in zip(events, exported, strict=False) if e.kind != "forward"]
    if mode == "reverse":
        rules = rules[::-1]
    rules_iter = iter(rules)
    primal = (lambda a: a[0]) if basis else (lambda a: a)
    apps = []
    for event, values in forward:
        diffd = _differentiated(event, ad_trace)
        if diffd:
            rule_event, values = next(rules_iter, (None, None))
            if rule_event is None or rule_event.gate is not event.gate:
                raise RuntimeError(
                    "explain: could not pair the gate applications with their rules "
                    f"(at gate {event.gate.name!r}); please report this"
                )
        inputs = tuple(c if is_constant(c) else primal(v)
                       for c, v in zip(event.inputs, values["inputs"], strict=False))
        upstream, downstream = values.get("upstream"), values.get("downstream")
        if diffd and mode == "reverse":  # the rule reports x_bars for its array inputs only
            downstream = _per_input(event.inputs, downstream)
        elif diffd:
            upstream = _per_input(event.inputs, upstream)
        apps.append(Application(
            gate=event.gate,
            input_ids=tuple(id(x) for x in event.inputs),
            output_ids=tuple(id(x) for x in jax.tree.leaves(event.outputs)),
            consts=tuple(x if is_constant(x) else None for x in event.inputs),
            inputs=inputs,
            outputs=jax.tree.map(primal, values["outputs"]),
            differentiated=diffd,
            upstream=upstream,
            downstream=downstream,
        ))
    return apps


def _per_input(inputs: tuple, per_array: tuple) -> tuple:
    """Spreads one entry per array input over all inputs, ``None`` at each constant."""
    it = iter(per_array)
    return tuple(None if is_constant(x) else next(it) for x in inputs)
