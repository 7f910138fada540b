"""One jitted run of a pipeline that also hands back every value its gate rules saw.

``jaxprop.observe`` calls us at trace time with each gate application (``kind="forward"``)
and each rule application (``"vjp"`` or ``"jvp"``). Under ``jax.jit`` those are tracers, so
we return the arrays the rules saw as *extra outputs* of the jitted function. The explained
run therefore computes its output and gradients in the very program that the pipeline
compiles, and the numbers are exactly the pipeline's.

Both modes call the drivers' own core, ``jaxprop.core``. Reverse mode pulls back ``upstream``
(ones by default) through ``wiring.pullback``: the VJP rules run in reverse order of the
gates, and each one reports its upstream gradient z_bar and its downstream gradients x_bar.

Forward mode does what ``jaxprop.forward.value_and_grad`` does: f runs forward once under
``wiring.push_forward`` (our JVP rules), then ``core.push_basis`` pushes the standard basis of
the inputs through the linear map, ``jaxprop.forward.DEFAULT_CHUNK_SIZE`` vectors at a time:
one column of the Jacobian per input element. The pushed function also returns every gate's
inputs and outputs, so the same push gives each wire's tangent.

Gate applications are identified by object identity (``id``) of the tracers within the one
trace: a gate's output tracer is the very object the next gate receives. A rule is paired
with its gate by the primal value both saw (the rule's output is the primal of the gate's
output), so a gate whose rule never ran (its output unused, or under
``jax.lax.stop_gradient``) is simply a gate without a gradient.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np

from jaxprop import core, forward, wiring
from jaxprop.events import RuleEvent, observe
from jaxprop.gate import is_constant
from jaxprop.tracer import branch_path, gated, scan_step, unroll_for_explain

MODES = ("reverse", "forward")
APPLIED = ("forward", "jax", "custom_jvp", "custom_vjp")
"""The event kinds of one step of f: a gate, an operation JAX's own rule took, or a
``custom_jvp``/``custom_vjp`` function that kept its own rule."""
DEFAULT_MAX_BASIS = 256
"""Most input elements forward mode pushes a basis vector for, unless told otherwise."""

DEFAULT_SCAN_STEPS = 3
"""How many first steps of each lax.scan explain shows unrolled, unless told otherwise."""

LOCAL_MAX_ENTRIES = 4096
"""The largest local Jacobian (output size x input size) of a non-elementwise gate that
explain builds from the gate's rule applied to unit vectors; larger ones are not formed."""


@dataclasses.dataclass
class Application:
    """One gate application with the values of its forward pass and of its rule.

    ``input_ids``/``output_ids`` identify values within the trace; ``consts`` holds, per
    input, the Python number it was or ``None``. ``upstream``/``downstream`` follow
    :class:`jaxprop.events.RuleEvent` (forward mode: the input tangents and the output
    tangent); both are ``None`` for a gate whose rule never ran: no differentiated input
    reaches it, or its output reaches nothing that is differentiated.
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
    local: tuple = ()
    params: dict = dataclasses.field(default_factory=dict)
    jax_rule: bool = False
    own_rule: bool = False  # a custom_jvp/custom_vjp function, differentiated by its rule
    step: str | None = None  # the loop step it ran in (``"t=0"``), for an unrolled scan
    branches: tuple = ()  # the (cond, branch) pairs it is inside


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


def _primal(x):
    """The primal value under an AD tracer (the value itself otherwise).

    Under ``jax.vjp``/``jax.linearize`` a gate sees AD tracers, while its rules see their
    primals; ``primal`` is the attribute JAX's JVP and linearize tracers hold it in.
    """
    return getattr(x, "primal", x)


def run(f: Callable, args: tuple, mode: str, upstream=None, tangents=None,
        max_basis: int | None = DEFAULT_MAX_BASIS, allow_jax_rules: bool = False,
        scan_steps: int = DEFAULT_SCAN_STEPS) -> Capture:
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
    n_basis = sum(int(np.size(x)) for i in diff for x in jax.tree.leaves(args[i]))
    if basis and max_basis is not None and n_basis > max_basis:
        raise ValueError(
            f"explain: forward mode pushes one basis vector per input element, and the "
            f"inputs have {n_basis} > max_basis={max_basis}; pass tangents=(...) for one "
            "direction, raise max_basis, or use mode='reverse'"
        )
    scalar_out = jax.tree_util.treedef_is_leaf(jax.tree.structure(out_struct)) and \
        jax.tree.leaves(out_struct)[0].shape == ()

    if isinstance(scan_steps, bool) or not isinstance(scan_steps, int) or scan_steps < 1:
        raise ValueError(f"explain: scan_steps must be a positive int; got {scan_steps!r}")
    events: list[RuleEvent] = []
    steps: list[tuple] = []  # per event: its loop step's label, the branches it is in
    meta: dict[str, Any] = {}
    f_gated = gated(f, allow_jax_rules=allow_jax_rules)  # plain JAX code meets the gates too
    if mode == "forward":
        f_gated.refuse_forward("explain", *args)

    def f_of_diff(fixed, *dyn):
        full = list(fixed)
        for i, a in zip(diff, dyn, strict=False):
            full[i] = a
        meta["arg_leaves"] = [jax.tree.leaves(a) for a in full]
        out = f_gated(*full)  # the gates see these very leaves, so their names follow
        meta["out_leaves"] = jax.tree.leaves(out)
        return out

    def traced(fixed, dyn, seed_or_tangents):
        events.clear()
        steps.clear()
        fun = lambda *d: f_of_diff(fixed, *d)  # noqa: E731

        def record(e):
            events.append(e)
            steps.append((scan_step(), branch_path()))

        with observe(record), unroll_for_explain(scan_steps):
            if mode == "reverse":
                out, pull, _ = wiring.pullback(fun, *dyn)
                seed = (jax.tree.map(jnp.ones_like, out) if seed_or_tangents is None
                        else seed_or_tangents)
                return out, seed, pull(seed), _export(events), None

            def fun_and_wires(*d):  # f, and every gate input and output whose tangent we show
                out = fun(*d)
                wires = _wires(events)
                meta["wire_ids"] = [id(w) for w in wires]
                return out, wires

            (out, _), push, _ = wiring.push_forward(fun_and_wires, *dyn)
            exported = _export(events)
        if not basis:
            out_dot, wire_dots = push(*seed_or_tangents)
            return out, None, out_dot, exported, wire_dots
        out_dot, wire_dots = core.push_basis(push, dyn, forward.DEFAULT_CHUNK_SIZE)
        grads = core.unravel_like(out_dot, dyn) if scalar_out else None
        return out, grads, out_dot, exported, wire_dots

    fixed = tuple(None if i in diff else a for i, a in enumerate(args))
    dyn = tuple(args[i] for i in diff)
    try:
        out, extra, result, exported, wire_dots = jax.jit(traced)(
            fixed, dyn, upstream if mode == "reverse" else tangents)
    except jax.errors.UnexpectedTracerError as err:
        raise ValueError(
            "explain: f applies a gate inside a JAX transformation that explain does not "
            "open, so the gate's values cannot be shown (explain opens jax.jit, lax.scan, "
            "fori_loop with static bounds, cond, switch and jax.checkpoint)"
        ) from err
    to_np = lambda t: jax.tree.map(np.asarray, t)  # noqa: E731
    exported = to_np(exported)
    wire_tangent = None
    if mode == "forward":
        wire_tangent = dict(zip(meta["wire_ids"], to_np(wire_dots), strict=True))
    applications = _applications(events, exported, mode, wire_tangent, steps)
    applications, out_leaf_ids = _branches_taken(
        applications, events, exported, [id(x) for x in meta["out_leaves"]])
    if not applications:
        raise ValueError(
            "explain: f applied no jaxprop gate (build it from jaxprop.gates; a function "
            "already wrapped in jax.jit is traced only once, so pass the plain function)"
        )
    arg_leaf_ids = [[id(x) for x in leaves] for leaves in meta["arg_leaves"]]
    arg_tangents = None
    grads = output_tangent = None
    if mode == "reverse":
        grads = _per_arg(to_np(result), diff, len(args))
        seed = to_np(extra)
    else:
        seed = None
        output_tangent = to_np(result)
        tangent_per_diff = _basis_tangents(dyn) if basis else to_np(tangents)
        arg_tangents = [None] * len(args)
        for i, t in zip(diff, tangent_per_diff, strict=False):
            arg_tangents[i] = jax.tree.leaves(t)
        if basis and upstream is None and scalar_out:
            grads = _per_arg(to_np(extra), diff, len(args))  # exactly forward.value_and_grad's
        elif basis:
            grads = _forward_grads(output_tangent, upstream, dyn, diff, len(args))
    return Capture(mode, basis, arg_leaf_ids, out_leaf_ids, applications, to_np(out), seed,
                   arg_tangents, grads, output_tangent)


def _wires(events: list[RuleEvent]) -> list:
    """Every floating-point gate input and output, once each, in order of appearance."""
    seen, wires = set(), []
    for e in events:
        if e.kind not in APPLIED:
            continue
        for x in (*jax.tree.leaves(e.inputs), *jax.tree.leaves(e.outputs)):
            if is_constant(x) or id(x) in seen:
                continue
            if jnp.issubdtype(jnp.result_type(x), jnp.inexact):
                seen.add(id(x))
                wires.append(x)
    return wires


def _basis_tangents(dyn) -> list:
    """The standard basis, split like ``dyn``: per leaf an array [n, *leaf.shape]."""
    leaves, treedef = jax.tree.flatten(dyn)
    sizes = [int(np.size(x)) for x in leaves]
    dtype = jnp.result_type(*leaves)
    eye = np.eye(sum(sizes), dtype=dtype)
    cols = np.split(eye, np.cumsum(sizes)[:-1], axis=1)
    parts = [c.reshape((eye.shape[0],) + np.shape(x)).astype(jnp.result_type(x))
             for c, x in zip(cols, leaves, strict=True)]
    return list(jax.tree.unflatten(treedef, parts))


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

    Used for a non-scalar f or a given upstream; a scalar f with the default upstream 1
    takes column j itself, exactly as ``jaxprop.forward.value_and_grad`` assembles it.
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


def _key(outputs) -> int:
    """Identifies a gate application by the primal of its first output."""
    return id(_primal(jax.tree.leaves(outputs)[0]))


def _local(e: RuleEvent) -> tuple:
    """Per input, the local gradient that the rule of ``e`` computes (None for a constant).

    An elementwise gate's local Jacobian is diagonal: its diagonal is the rule applied to
    ones. A small other gate's local Jacobian [output size, input size] is built one unit
    vector at a time: rows from the VJP rule, columns from the JVP rule.
    """
    if e.rule is None:  # a summary of loop steps: no one rule to apply
        return (None,) * len(e.inputs)
    gate, z = e.gate, e.outputs
    flat_z, unravel_z = jax.flatten_util.ravel_pytree(z)
    local = []
    for i, x in enumerate(e.inputs):
        if is_constant(x) or gate.vjp[i] is None:
            local.append(None)
            continue
        if gate.elementwise:
            local.append(e.rule(i, jnp.ones(jnp.shape(z), jnp.result_type(z))))
            continue
        n_x = int(np.size(x))
        if flat_z.size * n_x > LOCAL_MAX_ENTRIES:
            local.append(None)
        elif e.kind == "vjp":
            rows = jax.vmap(lambda u, i=i: jnp.ravel(e.rule(i, unravel_z(u))))(
                jnp.eye(flat_z.size, dtype=flat_z.dtype))
            local.append(rows)
        else:
            shape = jnp.shape(x)
            cols = jax.vmap(lambda v, i=i, shape=shape: jax.flatten_util.ravel_pytree(
                e.rule(i, v.reshape(shape)))[0])(jnp.eye(n_x, dtype=jnp.result_type(x)))
            local.append(cols.T)
    return tuple(local)


def _export(events: list[RuleEvent]) -> list:
    """The arrays each event saw, as a pytree the jitted function can return.

    A gate's own event gives the primal values of its inputs and output; a VJP rule's event
    its upstream and downstream gradients (the JVP rules' tangents come from the pushed
    linear map instead); every rule's event the local gradients its rule computes.
    """
    exported = []
    for e in events:
        if e.kind in APPLIED:  # a gate, or a step that JAX's or the user's own rule took
            exported.append({
                "inputs": tuple(None if is_constant(x) else jax.tree.map(_primal, x)
                                for x in e.inputs),
                "outputs": jax.tree.map(_primal, e.outputs),
            })
        elif e.kind == "branch":  # which branch of a cond ran
            exported.append({"index": _primal(e.inputs[0])})
        elif e.kind == "vjp":
            exported.append({"upstream": e.upstream, "downstream": e.downstream,
                             "local": _local(e)})
        else:
            exported.append({"local": _local(e)})
    return exported


def _applications(events, exported, mode, wire_tangent, steps) -> list[Application]:
    """Pairs each gate application with its rule, by the primal value both saw."""
    # keyed by the gate too: a cast to the dtype its input already has returns that very
    # input, so its output is the previous gate's output
    rules = {(_key(e.outputs), id(e.gate)): (e, x) for e, x in zip(events, exported, strict=True)
             if e.kind in ("vjp", "jvp")}
    apps = []
    for event, values, (step, branches) in zip(events, exported, steps, strict=True):
        if event.kind not in APPLIED:
            continue
        rule_event, rule_values = rules.get((_key(event.outputs), id(event.gate)),
                                            (None, None))
        differentiated = rule_event is not None and rule_event.gate is event.gate
        upstream = downstream = None
        if differentiated and mode == "reverse":  # the rule reports x_bars for arrays only
            upstream = rule_values["upstream"]
            downstream = _per_input(event.inputs, rule_values["downstream"])
        elif differentiated:  # a None input tangent is a symbolic zero: nothing flows
            flows = _per_input(event.inputs, rule_event.upstream)
            upstream = tuple(None if t is None else wire_tangent.get(id(x))
                             for x, t in zip(event.inputs, flows, strict=True))
            downstream = jax.tree.map(lambda z: wire_tangent.get(id(z)), event.outputs)
        local = rule_values["local"] if differentiated else (None,) * len(event.inputs)
        apps.append(Application(
            gate=event.gate,
            input_ids=tuple(id(x) for x in event.inputs),
            output_ids=tuple(id(x) for x in jax.tree.leaves(event.outputs)),
            consts=tuple(x if is_constant(x) else None for x in event.inputs),
            inputs=tuple(c if is_constant(c) else v
                         for c, v in zip(event.inputs, values["inputs"], strict=True)),
            outputs=values["outputs"],
            differentiated=differentiated,
            upstream=upstream,
            downstream=downstream,
            local=local,
            params=dict(event.params),
            jax_rule=event.kind == "jax",
            own_rule=event.kind in ("custom_jvp", "custom_vjp"),
            step=step,
            branches=branches,
        ))
    return apps


def _branches_taken(apps, events, exported, out_leaf_ids):
    """Keeps the rows of the branch of each cond that ran; a value the cond chose is named
    as that branch's output, so the wires run from the branch's gates to their users."""
    taken, alias = {}, {}
    for e, values in zip(events, exported, strict=True):
        if e.kind != "branch":
            continue
        index = int(values["index"])
        taken[e.gate.cond] = index
        for picked, ran in zip(e.outputs, e.upstream[index], strict=True):
            alias[id(picked)] = id(ran)
        for fed in e.downstream:  # the operands as a branch received them: the operands
            for given, operand in zip(fed, e.inputs[1:], strict=True):
                if given is not operand:
                    alias[id(given)] = id(operand)
    if not taken:
        return apps, out_leaf_ids

    def named(vid):
        while vid in alias:
            vid = alias[vid]
        return vid

    kept = [dataclasses.replace(a, input_ids=tuple(named(v) for v in a.input_ids))
            for a in apps if all(taken.get(c, i) == i for c, i in a.branches)]
    return kept, [named(v) for v in out_leaf_ids]


def _per_input(inputs: tuple, per_array: tuple) -> tuple:
    """Spreads one entry per array input over all inputs, ``None`` at each constant."""
    it = iter(per_array)
    return tuple(None if is_constant(x) else next(it) for x in inputs)
