"""``jaxprop.check``: the battery every rule of jaxprop passes, for any gate or function.

A hand-written derivative rule is easy to get wrong, and the obvious test can miss it:
``jax.test_util.check_grads`` on a gate, outside ``jaxprop.rule_set("vjp")``, never calls
its VJP rule (JAX transposes the JVP rule instead). ``check`` runs both of the gate's rules
itself, in float64, against independent oracles, and reports each check with its worst
error: absolute, relative, and at which element.

For example::

  report = jaxprop.check(my_tanh, jnp.array([0.3, -1.2, 2.0]))
  print(report)          # one row per check
  assert report.ok

  jaxprop.check(jaxprop.gates.maximum, x, y, kinks=[(x, x)])   # a tie, where max routes
  jaxprop.check(svm_loss, W, X, y)     # a function: plain JAX, gates, or both
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.test_util import check_grads

from jaxprop import forward as fwd_mode
from jaxprop import reverse as rev_mode
from jaxprop.events import observe
from jaxprop.gate import Gate, is_constant, run_forward, unbroadcast
from jaxprop.tracer import gated
from jaxprop.verify import oracles
from jaxprop.verify.report import ERROR, FAIL, NOT_APPLICABLE, PASS, CheckReport, CheckRow
from jaxprop.wiring import rule_set

__all__ = ["check", "CHECKS"]

CHECKS = {
    "shapes": "each rule's output has its input's (VJP) or the output's (JVP) shape and dtype",
    "fd_vjp": "the VJP rule against central finite differences of <u, f(x)>",
    "fd_jvp": "the JVP rule against central finite differences along v",
    "adjoint": "the two rules are transposes of each other: <u, J v> = <J^T u, v>",
    "autodiff_vjp": "the VJP rule against JAX's autodiff of the forward computation",
    "autodiff_jvp": "the JVP rule against JAX's autodiff of the forward computation",
    "check_grads_jvp": "jax.test_util.check_grads to order 2 under our JVP rules (fwd, rev)",
    "check_grads_vjp": "jax.test_util.check_grads to order 2 under our VJP rules (rev)",
    "rule_ran": "our rules ran: each gate's VJP rule in reverse mode, its JVP rule in forward "
                "mode, and no JAX rule",
    "linear": "the JVP rule is linear in its tangent: J(a v + b w) = a J v + b J w",
    "broadcast": "broadcast inputs: the rules' gradients are summed back over the copies",
    "kinks": "at the kinks given: both rules agree, and each entry is a one-sided derivative",
    "reference": "values and derivatives against the reference function given",
}
"""The checks, by key, in the order they run and are reported."""

_A, _B = 0.7, -1.3  # the linearity check's coefficients: a + b != 1 also catches an offset


@dataclasses.dataclass
class _Subject:
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


@dataclasses.dataclass
class _Options:
    rtol: float
    atol: float
    fd_atol: float
    fd_step: float
    order: int
    allow_jax_rules: bool
    max_fd_elements: int


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


def _gate_subject(gate: Gate, inputs: tuple, params: dict, diff) -> _Subject:
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

    return _Subject(
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


def _function_subject(f: Callable, inputs: tuple, diff) -> _Subject:
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
    return _Subject(f"function {name}", fn, oracles.forward_as_written(fn), leaves, names,
                    rebuild, diff=diff)


def _random_like(rng, tree):
    return jax.tree.map(lambda a: jnp.asarray(rng.normal(size=np.shape(a))), tree)


def _coords(rng, size: int, limit: int) -> np.ndarray:
    if size <= limit:
        return np.arange(size)
    return np.sort(rng.choice(size, limit, replace=False))


def _first_line(err: BaseException, limit: int = 400) -> str:
    text = f"{type(err).__name__}: {err}".split("\n--------")[0].strip()
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _attempt(fn: Callable, *args):
    """``(result, None)``, or ``(None, the error's first line)`` if ``fn`` raised."""
    try:
        return jax.block_until_ready(fn(*args)), None
    except Exception as err:  # noqa: BLE001  (a rule that raises fails its checks)
        return None, _first_line(err)


def _tol(atol: float, rtol: float) -> str:
    return f"|err| <= {atol:.1e} + {rtol:.1e} |expected|"


def _row(key: str, cmp: oracles.Comparison | None, atol: float, rtol: float, note: str = "",
         directions: dict | None = None, error: str | None = None) -> CheckRow:
    title = CHECKS[key]
    if error is not None:
        return CheckRow(key, title, ERROR, note=error)
    return CheckRow(key, title, PASS if cmp.ok else FAIL, cmp.abs_error, cmp.rel_error,
                    cmp.where, cmp.got, cmp.expected, _tol(atol, rtol), note, directions or {})


def _not_applicable(key: str, why: str) -> CheckRow:
    return CheckRow(key, CHECKS[key], NOT_APPLICABLE, note=why)


def _leaves(tree) -> list:
    return jax.tree.leaves(tree)


# ------------------------------------------------------------------------------- programs


def _tangent_batch(leaves, v, w):
    """Per leaf i and each of v_i, w_i, a v_i + b w_i: a tangent for every leaf, zero but
    for leaf i, stacked along a leading axis of 3 x (number of leaves), so one vmapped JVP
    pushes them all."""
    n = len(leaves)
    batch = []
    for k, x in enumerate(leaves):
        rows = []
        for i in range(n):
            for t in (v[i], w[i], _A * v[i] + _B * w[i]):
                rows.append(t if i == k else jnp.zeros_like(x))
        batch.append(jnp.stack(rows))
    return batch


def _unbatch(pushed, n: int) -> list:
    """A vmapped JVP's output leaves, as [leaf i][v, w or a v + b w][output leaf]."""
    pushed = _leaves(pushed)
    return [[[a[3 * i + j] for a in pushed] for j in range(3)] for i in range(n)]


def _parts(s: _Subject, o: _Options, coords, reference) -> dict[str, Callable]:
    """The numbers the checks compare, each a function of ``(leaves, u, v, w, tangents)``:
    our rules through the pipelines, finite differences, JAX's autodiff of the forward code
    and of the reference, and (for a gate) its rules called directly."""
    allow, h, n = o.allow_jax_rules, o.fd_step, len(s.leaves)

    def pushed(f, leaves, tangents):
        return jax.vmap(lambda *ts: _leaves(f(tuple(leaves), ts)))(*tangents)

    parts = {
        "value": lambda leaves, u, v, w, T: s.fn(*leaves),
        "vjp": lambda leaves, u, v, w, T: rev_mode.vjp(
            s.fn, *leaves, allow_jax_rules=allow)[1](u),
        "jvp": lambda leaves, u, v, w, T: pushed(
            lambda p, t: fwd_mode.jvp(s.fn, p, t, allow_jax_rules=allow)[1], leaves, T),
        "fd_vjp": lambda leaves, u, v, w, T: [
            oracles.central_coordinates(s.fn, leaves, i, u, coords[i], h) for i in range(n)],
        "fd_jvp": lambda leaves, u, v, w, T: [
            oracles.central_directional(s.fn, leaves, i, v[i], h) for i in range(n)],
        "plain_vjp": lambda leaves, u, v, w, T: jax.vjp(s.forward, *leaves)[1](u),
        "plain_jvp": lambda leaves, u, v, w, T: pushed(
            lambda p, t: jax.jvp(s.forward, p, t)[1], leaves, T),
    }
    if reference is not None:
        def ref_fn(*leaves):
            return reference(*s.rebuild(leaves))

        parts["reference"] = lambda leaves, u, v, w, T: (
            ref_fn(*leaves), jax.vjp(ref_fn, *leaves)[1](u),
            pushed(lambda p, t: jax.jvp(ref_fn, p, t)[1], leaves, T))
    if s.gate is not None:
        parts["direct"] = _direct_rules(s)
    return parts


def _evaluate(parts: dict[str, Callable], args) -> tuple[dict, dict]:
    """Every part in one jitted program; if that raises, each part alone, so that a rule
    that raises fails only the checks that need it. Returns ``(results, errors)``."""
    results, errors = {}, {k: None for k in parts}
    everything, error = _attempt(jax.jit(lambda *a: {k: f(*a) for k, f in parts.items()}),
                                 *args)
    if error is None:
        return everything, errors
    for key, part in parts.items():
        results[key], errors[key] = _attempt(jax.jit(part), *args)
    return results, errors


def _direct_rules(s: _Subject):
    """A gate's rules called directly on its residuals (no wiring, no rule set): per leaf,
    the VJP rule's x_bar (summed back over broadcast copies) and the JVP rule's z_dot for
    v, w and a v + b w. The numbers "our rule ran" and "linear" compare against."""
    gate, params, mask = s.gate, s.params, s.const_mask

    def program(leaves, u, v, w, T):
        xs = s.rebuild(leaves)
        z, res = run_forward(gate, xs, mask, params)
        out = {"vjp": [], "jvp": []}
        for k, i in enumerate(s.diff):
            x_bar = gate.vjp[i](res, u, **params)
            if gate.broadcast:
                x_bar = unbroadcast(x_bar, np.shape(xs[i]))
            out["vjp"].append(x_bar)
            parts = []
            for t in (v[k], w[k], _A * v[k] + _B * w[k]):
                t = jnp.broadcast_to(t, jnp.shape(z)) if gate.broadcast else t
                parts.append(_leaves(gate.jvp[i](res, t, **params)))
            out["jvp"].append(parts)
        return out

    return program


# --------------------------------------------------------------------------------- checks


def _shapes_row(s: _Subject, u, ours_vjp, ours_jvp, out_struct, errors) -> CheckRow:
    problems = []
    if s.gate is not None:
        gate, params = s.gate, s.params

        def rules(leaves):
            xs = s.rebuild(leaves)
            z, res = run_forward(gate, xs, s.const_mask, params)
            found = []
            for i in s.diff:
                x_bar = gate.vjp[i](res, u, **params)
                t = jnp.ones(jnp.shape(z) if gate.broadcast else jnp.shape(xs[i]),
                             jnp.result_type(xs[i]))
                found.append((x_bar, gate.jvp[i](res, t, **params)))
            return z, found

        try:
            z, found = jax.eval_shape(rules, s.leaves)
        except Exception as err:  # noqa: BLE001
            return _row("shapes", None, 0, 0, error=_first_line(err))
        for (x_bar, z_dot), name, x in zip(found, s.names, s.leaves):
            allowed = {np.shape(x)} | ({np.shape(z)} if gate.broadcast else set())
            if not hasattr(x_bar, "shape") or tuple(x_bar.shape) not in allowed or \
                    x_bar.dtype != x.dtype:
                problems.append((name, f"the VJP rule for {name} returns {_struct(x_bar)}, "
                                 f"expected {_struct(x)}"))
            if jax.tree.structure(z_dot) != jax.tree.structure(z) or any(
                    (a.shape, a.dtype) != (b.shape, b.dtype)
                    for a, b in zip(_leaves(z_dot), _leaves(z))):
                problems.append((name, f"the JVP rule for {name} returns {_struct(z_dot)}, "
                                 f"expected {_struct(z)}"))
    else:
        if errors.get("vjp") or errors.get("jvp"):
            return _row("shapes", None, 0, 0, error=errors.get("vjp") or errors.get("jvp"))
        for x_bar, name, x in zip(ours_vjp, s.names, s.leaves):
            if (x_bar.shape, x_bar.dtype) != (x.shape, x.dtype):
                problems.append((name, f"the gradient of {name} is {_struct(x_bar)}, expected "
                                 f"{_struct(x)}"))
        for pushes, name in zip(ours_jvp, s.names):
            got = [(a.shape, a.dtype) for a in _leaves(pushes[0])]
            want = [(a.shape, a.dtype) for a in _leaves(out_struct)]
            if got != want:
                problems.append((name, f"the tangent from {name} is {got}, expected {want}"))
    if problems:
        return CheckRow("shapes", CHECKS["shapes"], FAIL, where=problems[0][0],
                        note="; ".join(p[1] for p in problems))
    return CheckRow("shapes", CHECKS["shapes"], PASS, 0.0, 0.0,
                    note="every rule's output has the expected shape and dtype")


def _struct(x) -> str:
    leaves = _leaves(x)
    if isinstance(x, (tuple, list)) or len(leaves) != 1 or not hasattr(leaves[0], "shape"):
        return f"a {type(x).__name__} of {len(leaves)}" if isinstance(x, (tuple, list)) else \
            type(x).__name__
    return f"{leaves[0].dtype}{list(leaves[0].shape)}"


def _parse_check_grads(message: str) -> tuple[float | None, float | None]:
    def grab(label):
        m = re.search(rf"Max {label} difference[^:]*:\s*([-+0-9.eEinfa]+)", message)
        try:
            return float(m.group(1)) if m else None
        except ValueError:
            return None

    return grab("absolute"), grab("relative")


def _check_grads_row(key: str, s: _Subject, o: _Options, scale: float) -> CheckRow:
    fn = gated(s.fn, allow_jax_rules=o.allow_jax_rules)
    rules, modes = ("vjp", ("rev",)) if key == "check_grads_vjp" else ("jvp", ("fwd", "rev"))
    atol = o.fd_atol * scale
    try:
        with rule_set(rules):
            check_grads(jax.jit(fn), tuple(s.leaves), order=o.order, modes=modes, atol=atol,
                        rtol=o.rtol, eps=o.fd_step)
    except AssertionError as err:
        abs_err, rel_err = _parse_check_grads(str(err))
        return CheckRow(key, CHECKS[key], FAIL, abs_err, rel_err, "(check_grads' own "
                        "random directions)", tolerance=_tol(atol, o.rtol),
                        note=f"order {o.order}, modes {modes}: " + _first_line(err, 200))
    except Exception as err:  # noqa: BLE001
        return _row(key, None, 0, 0, error=_first_line(err))
    return CheckRow(key, CHECKS[key], PASS, tolerance=_tol(atol, o.rtol),
                    note=f"order {o.order}, modes {', '.join(modes)}, eps {o.fd_step:g}")


def _rule_ran_row(s: _Subject, o: _Options, u, v, ours, direct) -> CheckRow:
    allow = o.allow_jax_rules
    counts = {}
    for mode in ("reverse", "forward"):
        events: list = []
        try:
            with observe(events.append):
                if mode == "reverse":
                    jax.make_jaxpr(lambda ls, u: rev_mode.vjp(
                        s.fn, *ls, allow_jax_rules=allow)[1](u))(s.leaves, u)
                else:
                    jax.make_jaxpr(lambda ls, v: fwd_mode.jvp(
                        s.fn, tuple(ls), tuple(v), allow_jax_rules=allow)[1])(s.leaves, v)
        except Exception as err:  # noqa: BLE001
            return _row("rule_ran", None, 0, 0, error=_first_line(err))
        counts[mode] = (Counter(e.kind for e in events), events)
    problems = []
    for mode, rule in (("reverse", "vjp"), ("forward", "jvp")):
        kinds, events = counts[mode]
        other = "jvp" if rule == "vjp" else "vjp"
        applied = sorted(e.gate.name for e in events if e.kind == "forward")
        ran = sorted(e.gate.name for e in events if e.kind in (rule, "jax"))
        if kinds[other]:
            problems.append(f"{mode} mode ran {kinds[other]} {other.upper()} rule(s)")
        if kinds["jax"] and not allow:
            problems.append(f"{mode} mode used JAX's rule for {kinds['jax']} operation(s)")
        if not kinds[rule] and not kinds["custom_jvp"] + kinds["custom_vjp"]:
            problems.append(f"no {rule.upper()} rule ran in {mode} mode")
        elif applied != sorted(e.gate.name for e in events if e.kind == rule):
            problems.append(f"in {mode} mode the gates applied ({', '.join(applied)}) and the "
                            f"{rule.upper()} rules that ran ({', '.join(ran)}) differ")
        if s.gate is not None and not any(e.gate is s.gate for e in events if e.kind == rule):
            problems.append(f"gate {s.gate.name!r}'s own {rule.upper()} rule did not run in "
                            f"{mode} mode")
    rev, fwd = counts["reverse"][0], counts["forward"][0]
    note = (f"reverse mode: {rev['vjp']} VJP rule(s); forward mode: {fwd['jvp']} JVP rule(s)"
            + (f"; JAX's rule for {rev['jax']} operation(s) (allow_jax_rules=True)"
               if rev["jax"] else "")
            + (f"; the own rule of {rev['custom_jvp'] + rev['custom_vjp']} custom_jvp/custom_vjp "
               "function(s)" if rev["custom_jvp"] + rev["custom_vjp"] else ""))
    if problems:
        return CheckRow("rule_ran", CHECKS["rule_ran"], FAIL, where="-",
                        note="; ".join(problems))
    if direct is None or ours is None:
        return CheckRow("rule_ran", CHECKS["rule_ran"], PASS, note=note)
    # A gate: the pipelines' numbers are the rules' own, called directly on the residuals.
    got = [*ours[0], *[p[0] for p in ours[1]]]
    want = [*direct["vjp"], *[p[0] for p in direct["jvp"]]]
    names = [*(f"{n}{{}} (VJP)" for n in s.names), *(f"z{{}} (JVP, tangent of {n})"
                                                       for n in s.names)]
    got, want, names = _flatten_pairs(got, want, names)
    cmp = oracles.compare(got, want, names, atol=o.atol, rtol=o.rtol)
    return _row("rule_ran", cmp, o.atol, o.rtol, note + "; the pipelines give the numbers of "
                "the rules called directly")


def _flatten_pairs(got, want, names):
    g2, w2, n2 = [], [], []
    for g, w, n in zip(got, want, names):
        gl, wl = _leaves(g), _leaves(w)
        for k, (a, b) in enumerate(zip(gl, wl)):
            g2.append(a)
            w2.append(b)
            n2.append(n if len(gl) == 1 else n.replace("{}", f"[{k}]{{}}", 1))
    return g2, w2, n2


def _linear_rows(s: _Subject, o: _Options, ours, direct, errors, v, w) -> CheckRow:
    source, note = (direct, "the JVP rule called directly") if direct is not None else (
        ours, "forward mode")
    if source is None:
        return _row("linear", None, 0, 0, error=errors.get("direct") or errors.get("jvp"))
    pushes = source["jvp"] if direct is not None else source[1]
    got, want, names = [], [], []
    for name, (jv, jw, jcombo) in zip(s.names, pushes):
        for k, (a, b, c) in enumerate(zip(_leaves(jv), _leaves(jw), _leaves(jcombo))):
            got.append(c)
            want.append(_A * a + _B * b)
            names.append(f"z{k if len(_leaves(jv)) > 1 else ''}{{}} (tangent of {name})")
    scale = max([1.0, *(float(jnp.max(jnp.abs(x))) for x in want if np.size(x))])
    cmp = oracles.compare(got, want, names, atol=o.atol * scale, rtol=o.rtol)
    structural = None
    if s.gate is not None:
        structural = _structural_linearity(s, v)
    if structural:
        return CheckRow("linear", CHECKS["linear"], FAIL, cmp.abs_error, cmp.rel_error,
                        structural[0], cmp.got, cmp.expected, _tol(o.atol * scale, o.rtol),
                        structural[1], {"v": v, "w": w})
    return _row("linear", cmp, o.atol * scale, o.rtol,
                f"{note}: J({_A} v {_B:+} w) against {_A} J v {_B:+} J w", {"v": v, "w": w})


def _structural_linearity(s: _Subject, v):
    from jaxprop._linearity import nonlinear_use

    gate, params = s.gate, s.params
    xs = s.rebuild(s.leaves)
    z, res = run_forward(gate, xs, s.const_mask, params)
    for k, i in enumerate(s.diff):
        t = jnp.broadcast_to(v[k], jnp.shape(z)) if gate.broadcast else v[k]
        why = nonlinear_use(lambda t, i=i: gate.jvp[i](res, t, **params), t)
        if why:
            return s.names[k], f"the JVP rule for {s.names[k]} is not linear in its tangent: {why}"
    return None


def _broadcast_row(s: _Subject, o: _Options, seed: int) -> CheckRow:
    gate = s.gate
    if gate is None:
        return _not_applicable("broadcast", "applies to a gate that broadcasts its inputs")
    if not gate.broadcast:
        return _not_applicable("broadcast", f"gate {gate.name!r} does not broadcast "
                               "(broadcast=False)")
    variants = []
    for k, x in enumerate(s.leaves):
        if np.ndim(x) == 0:
            continue
        for small, label in ((x[:1], f"{s.names[k]}[:1]"), (x[0], f"{s.names[k]}[0]")):
            leaves = list(s.leaves)
            leaves[k] = small
            variants.append((label, k, leaves))
    if not variants:
        return _not_applicable("broadcast", "the example inputs are scalars: give arrays to "
                               "check broadcasting")
    rng = np.random.default_rng(seed + 7)
    out_shapes = [jax.eval_shape(s.fn, *leaves) for _, _, leaves in variants]
    us = [_random_like(rng, out) for out in out_shapes]
    vs = [jnp.asarray(rng.normal(size=np.shape(leaves[k]))) for _, k, leaves in variants]
    h = o.fd_step

    @jax.jit
    def program(all_leaves, us, vs):
        results = []
        for (_, k, _), leaves, u, v in zip(variants, all_leaves, us, vs):
            x_bar = rev_mode.vjp(s.fn, *leaves)[1](u)[k]

            def fk(xk, leaves=leaves, k=k):
                return s.fn(*[xk if j == k else x for j, x in enumerate(leaves)])

            jv = _leaves(fwd_mode.jvp(fk, (leaves[k],), (v,))[1])
            fd_bar = oracles.central_coordinates(s.fn, leaves, k, u, np.arange(np.size(
                leaves[k])), h)
            fd_v = oracles.central_directional(s.fn, leaves, k, v, h)
            results.append((x_bar, jv, fd_bar, fd_v))
        return results

    try:
        results = program([leaves for _, _, leaves in variants], us, vs)
    except Exception as err:  # noqa: BLE001
        return _row("broadcast", None, 0, 0, error=_first_line(err))
    got, want, names = [], [], []
    for (label, k, leaves), (x_bar, jv, fd_bar, fd_v) in zip(variants, results):
        if np.shape(x_bar) != np.shape(leaves[k]):
            return CheckRow("broadcast", CHECKS["broadcast"], FAIL, where=label,
                            note=f"the gradient of {label} has shape {np.shape(x_bar)}, "
                            f"expected {np.shape(leaves[k])}: not summed back over the copies")
        got.append(jnp.ravel(x_bar))
        want.append(fd_bar)
        names.append(f"{label} (VJP)")
        for j, (a, b) in enumerate(zip(jv, fd_v)):
            got.append(a)
            want.append(b)
            names.append(f"z_dot from {label}" + (f"[{j}]" if len(jv) > 1 else ""))
    scale = max([1.0, *(float(jnp.max(jnp.abs(x))) for x in want if np.size(x))])
    cmp = oracles.compare(got, want, names, atol=o.fd_atol * scale, rtol=o.rtol)
    return _row("broadcast", cmp, o.fd_atol * scale, o.rtol,
                f"{len(variants)} broadcast variants, both rules against finite differences")


def _kinks_row(s: _Subject, o: _Options, kinks, make_subject) -> CheckRow:
    if not kinks:
        return _not_applicable("kinks", "no kink points given: pass kinks=[(x, ...), ...], "
                               "inputs at which the function is not differentiable")
    h = o.fd_step
    got, want, names = [], [], []
    agree_got, agree_want, agree_names = [], [], []
    for p, point in enumerate(kinks):
        point = point if isinstance(point, tuple) else (point,)
        k_subject = make_subject(point)
        leaves = k_subject.leaves
        argnums = tuple(range(len(leaves)))
        n_in = sum(int(np.size(x)) for x in leaves)
        n_out = sum(int(np.prod(a.shape)) for a in _leaves(jax.eval_shape(k_subject.fn,
                                                                         *leaves)))
        if n_in * n_out > 10**6:
            return _row("kinks", None, 0, 0, error=f"kink point {p}: a {n_out} x {n_in} "
                        "Jacobian is too large to check entry by entry; give a smaller point")

        @jax.jit
        def program(leaves, k_subject=k_subject, argnums=argnums):
            j_rev = rev_mode.jacobian(k_subject.fn, argnums)(*leaves)
            j_fwd = fwd_mode.jacobian(k_subject.fn, argnums)(*leaves)
            sides = [oracles.one_sided(k_subject.fn, leaves, i, np.arange(np.size(x)), h)
                     for i, x in enumerate(leaves)]
            return j_rev, j_fwd, sides

        try:
            j_rev, j_fwd, sides = program(leaves)
        except Exception as err:  # noqa: BLE001
            return _row("kinks", None, 0, 0, error=f"kink point {p}: {_first_line(err)}")
        out = jax.eval_shape(k_subject.fn, *leaves)
        rev_m = _matrix(j_rev, out, leaves)
        fwd_m = _matrix(j_fwd, out, leaves)
        right = np.concatenate([np.asarray(r).T for r, _ in sides], axis=1)
        left = np.concatenate([np.asarray(lf).T for _, lf in sides], axis=1)
        nearer = np.where(np.abs(rev_m - right) <= np.abs(rev_m - left), right, left)
        got.append(rev_m)
        want.append(nearer)
        names.append(f"point {p}: J")
        agree_got.append(fwd_m)
        agree_want.append(rev_m)
        agree_names.append(f"point {p}: J by the JVP rules")
    scale = max([1.0, *(float(np.max(np.abs(x))) for x in want if np.size(x))])
    cmp_sides = oracles.compare(got, want, names, atol=o.fd_atol * scale, rtol=o.rtol)
    cmp_agree = oracles.compare(agree_got, agree_want, agree_names, atol=o.atol * scale,
                                rtol=o.rtol)
    if not cmp_agree.ok:
        return _row("kinks", cmp_agree, o.atol * scale, o.rtol,
                    "the VJP and JVP rules disagree at the kink: they use different "
                    "conventions there")
    return _row("kinks", cmp_sides, o.fd_atol * scale, o.rtol,
                f"{len(kinks)} point(s): the Jacobian by the VJP rules equals the JVP rules' "
                "and, entry by entry, a one-sided derivative (left or right)")


def _matrix(jac, out, leaves) -> np.ndarray:
    """A Jacobian in JAX's layout (out tree of a tuple over the leaves) as one [m, n] matrix."""
    out_leaves = _leaves(out)
    blocks = _leaves(jac)
    rows = []
    for k, o in enumerate(out_leaves):
        rows.append(np.concatenate([
            np.reshape(np.asarray(blocks[k * len(leaves) + j]),
                       (int(np.prod(o.shape)), int(np.size(a))))
            for j, a in enumerate(leaves)], axis=1))
    return np.concatenate(rows, axis=0)


# ---------------------------------------------------------------------------------- check


def check(target: Gate | Callable, *inputs, params: dict | None = None,
          diff: int | Sequence[int] | None = None, reference: Callable | None = None,
          kinks: Sequence[Any] = (), checks: Sequence[str] | None = None,
          rtol: float = 1e-6, atol: float = 1e-12, fd_atol: float = 1e-7,
          fd_step: float = 1e-5, order: int = 2, seed: int = 0,
          max_fd_elements: int = 256, allow_jax_rules: bool = False) -> CheckReport:
    """Runs jaxprop's verification battery on a gate or a function, in float64.

    Args:
      target: a :class:`jaxprop.Gate`, or a function of arrays (pytrees of them) built from
        gates, written in plain JAX (the gate tracer applies its operations as gates), or
        both.
      *inputs: example inputs, away from kinks (finite differences must be valid there).
        For a gate, a Python number is a constant input (no gradient), as in a gate call.
      params: a gate's static parameters (``{"axes": (0,), "shape": (2, 3)}`` for sum).
      diff: positions of the inputs to differentiate (default: every floating-point input
        with a rule).
      reference: optional plain-jnp function of the same inputs: values and derivatives are
        also checked against JAX's autodiff of it.
      kinks: points (tuples of inputs) where the function is not differentiable: there the
        VJP and JVP rules must agree and each Jacobian entry must be a one-sided derivative.
      checks: the keys of :data:`CHECKS` to run (default: all).
      rtol, atol: tolerance of the exact comparisons (autodiff, adjoint, linearity): an
        element passes when ``|got - expected| <= atol * scale + rtol |expected|``, scale
        being ``max(1, max |expected|)``.
      fd_atol: ``atol`` of the comparisons with finite differences (their error in float64
        at ``fd_step`` = 1e-5 is about 1e-10 times the third derivative).
      fd_step: the finite-difference step h, also check_grads' ``eps``.
      order: check_grads' order.
      seed: seeds the random directions u, v, w (reported with each row).
      max_fd_elements: at most this many elements per input get their own finite
        difference for the VJP check (a random choice of them for larger inputs).
      allow_jax_rules: for plain JAX code, let JAX differentiate operations no gate stands
        for (reported by "rule_ran").

    Returns:
      A :class:`jaxprop.verify.CheckReport`: ``.ok``, ``.rows`` (one per check with its worst
      error), ``report["fd_vjp"]`` for one row, and a table as ``str(report)``.

    Raises:
      TypeError, ValueError: the target or the inputs cannot be checked (wrong number of
        inputs, nothing differentiable, an unknown check); the message says which.
    """
    selected = tuple(CHECKS) if checks is None else tuple(checks)
    unknown = [k for k in selected if k not in CHECKS]
    if unknown:
        raise ValueError(f"check: unknown check(s) {unknown}; the checks are {list(CHECKS)}")
    if not isinstance(target, Gate) and not callable(target):
        raise TypeError(f"check: expected a jaxprop Gate or a function; got "
                        f"{type(target).__name__}")
    if not inputs:
        raise TypeError("check: give example inputs, e.g. jaxprop.check(gate, jnp.ones(3))")
    if isinstance(target, Gate) and params is None:
        params = {}
    elif not isinstance(target, Gate) and params:
        raise TypeError("check: params= is for a gate's static parameters; a function takes "
                        "its inputs as they are")
    o = _Options(rtol, atol, fd_atol, fd_step, order, allow_jax_rules, max_fd_elements)
    with jax.enable_x64(True):
        def make_subject(xs):
            if isinstance(target, Gate):
                return _gate_subject(target, tuple(xs), dict(params), diff)
            return _function_subject(target, tuple(xs), diff)

        s = make_subject(inputs)
        rows = _run(s, o, selected, seed, reference, kinks, make_subject)
    return CheckReport(s.label, tuple(s.names), tuple(rows))


def _run(s: _Subject, o: _Options, selected, seed, reference, kinks, make_subject):
    try:
        out_struct = jax.eval_shape(s.fn, *s.leaves)
    except Exception as err:  # noqa: BLE001
        return [_row(k, None, 0, 0, error=f"the forward computation raised: {_first_line(err)}")
                for k in selected]
    bad = [a for a in _leaves(out_struct) if not jnp.issubdtype(a.dtype, jnp.floating)]
    if bad:
        raise TypeError(f"check: {s.label} returns dtype {bad[0].dtype}; a derivative is "
                        "checked on a floating-point output")
    rng = np.random.default_rng(seed)
    u = _random_like(rng, out_struct)
    v = [jnp.asarray(rng.normal(size=np.shape(x))) for x in s.leaves]
    w = [jnp.asarray(rng.normal(size=np.shape(x))) for x in s.leaves]
    coords = [_coords(rng, int(np.size(x)), o.max_fd_elements) for x in s.leaves]
    directions = {"u": u, **{f"v[{n}]": t for n, t in zip(s.names, v)}}

    tangents = _tangent_batch(s.leaves, v, w)
    results, errors = _evaluate(_parts(s, o, coords, reference), (s.leaves, u, v, w, tangents))
    n = len(s.leaves)
    ours_vjp = results.get("vjp")
    ours_jvp = None if results.get("jvp") is None else _unbatch(results["jvp"], n)
    oracle = {"fd_vjp": results.get("fd_vjp"), "fd_jvp": results.get("fd_jvp")}
    for key in ("plain_jvp",):
        oracle[key] = None if results.get(key) is None else [
            p[0] for p in _unbatch(results[key], n)]
    oracle["plain_vjp"] = results.get("plain_vjp")
    if results.get("reference") is not None:
        ref_value, ref_vjp, ref_jvp = results["reference"]
        oracle["reference"] = (ref_value, ref_vjp, [p[0] for p in _unbatch(ref_jvp, n)])
    direct = results.get("direct")
    value = results.get("value")
    if value is None:
        value = jax.tree.map(jnp.zeros_like, out_struct)
    f_scale = max([1.0, *(float(jnp.max(jnp.abs(a))) for a in _leaves(value) if np.size(a))])

    def scale_of(arrays):
        return max([f_scale, *(float(jnp.max(jnp.abs(x))) for x in arrays if np.size(x))])

    out_names = _output_names(out_struct)
    rows = []
    for key in selected:
        if key == "shapes":
            rows.append(_shapes_row(s, u, ours_vjp, ours_jvp, out_struct, errors))
        elif key == "fd_vjp":
            if errors["vjp"] or errors["fd_vjp"]:
                rows.append(_row(key, None, 0, 0, error=errors["vjp"] or errors["fd_vjp"]))
                continue
            got = [jnp.ravel(g)[c] for g, c in zip(ours_vjp, coords)]
            want = list(oracle["fd_vjp"])
            cmp = oracles.compare(got, want, s.names, atol=o.fd_atol * scale_of(want),
                                  rtol=o.rtol)
            cmp = _relocate(cmp, s, coords)
            sampled = sum(len(c) for c in coords)
            rows.append(_row(key, cmp, o.fd_atol * scale_of(want), o.rtol,
                             f"J^T u at {sampled} input element(s), h = {o.fd_step:g}",
                             {"u": u}))
        elif key == "fd_jvp":
            if errors["jvp"] or errors["fd_jvp"]:
                rows.append(_row(key, None, 0, 0, error=errors["jvp"] or errors["fd_jvp"]))
                continue
            got, want, names = _per_leaf_outputs(ours_jvp, oracle["fd_jvp"], s.names,
                                                 out_names, 0)
            rows.append(_row(key, oracles.compare(got, want, names,
                                                  atol=o.fd_atol * scale_of(want), rtol=o.rtol),
                             o.fd_atol * scale_of(want), o.rtol,
                             f"J v for each input's v, h = {o.fd_step:g}", directions))
        elif key == "adjoint":
            if errors["vjp"] or errors["jvp"]:
                rows.append(_row(key, None, 0, 0, error=errors["vjp"] or errors["jvp"]))
                continue
            lhs, rhs = [], []
            for k in range(len(s.leaves)):
                jv = _leaves(ours_jvp[k][0])
                lhs.append(jnp.asarray(sum(jnp.vdot(a, b) for a, b in zip(_leaves(u), jv))))
                rhs.append(jnp.vdot(ours_vjp[k], v[k]))
            sizes = [abs(float(x)) for x in (*lhs, *rhs)]
            if max(sizes, default=0.0) <= o.atol:  # 0 = 0 would pass whatever the rules say
                rows.append(_not_applicable(
                    key, "both sides are 0 in the random directions (J v = 0 and J^T u = 0 at "
                    "these inputs), so the test cannot tell the rules apart; choose other "
                    "inputs (away from flat regions) to run it"))
                continue
            scale = max(1.0, *(abs(float(x)) for x in rhs))
            cmp = oracles.compare(lhs, rhs, [f"<u, J v> for {n}" for n in s.names],
                                  atol=o.atol * scale, rtol=o.rtol)
            rows.append(_row(key, cmp, o.atol * scale, o.rtol,
                             "got <u, J v> by the JVP rule, expected <J^T u, v> by the VJP rule",
                             directions))
        elif key in ("autodiff_vjp", "autodiff_jvp"):
            side = key.split("_")[1]
            plain = oracle[f"plain_{side}"]
            if errors[side]:
                rows.append(_row(key, None, 0, 0, error=errors[side]))
            elif errors[f"plain_{side}"]:
                rows.append(_not_applicable(key, "JAX cannot differentiate the forward "
                                            f"computation: {errors[f'plain_{side}']}"))
            elif side == "vjp":
                want = list(plain)
                cmp = oracles.compare(list(ours_vjp), want, s.names,
                                      atol=o.atol * scale_of(want), rtol=o.rtol)
                rows.append(_row(key, cmp, o.atol * scale_of(want), o.rtol,
                                 "J^T u: ours against jax.vjp of the forward code", {"u": u}))
            else:
                got, want, names = _per_leaf_outputs(ours_jvp, plain, s.names, out_names, 0)
                cmp = oracles.compare(got, want, names, atol=o.atol * scale_of(want),
                                      rtol=o.rtol)
                rows.append(_row(key, cmp, o.atol * scale_of(want), o.rtol,
                                 "J v: ours against jax.jvp of the forward code", directions))
        elif key in ("check_grads_jvp", "check_grads_vjp"):
            rows.append(_check_grads_row(key, s, o, f_scale))
        elif key == "rule_ran":
            ours = None if errors["vjp"] or errors["jvp"] else (ours_vjp, ours_jvp)
            rows.append(_rule_ran_row(s, o, u, v, ours, direct))
        elif key == "linear":
            ours = None if errors["jvp"] else (None, ours_jvp)
            rows.append(_linear_rows(s, o, ours, direct, errors, v, w))
        elif key == "broadcast":
            rows.append(_broadcast_row(s, o, seed))
        elif key == "kinks":
            rows.append(_kinks_row(s, o, kinks, make_subject))
        elif key == "reference":
            rows.append(_reference_row(s, o, reference, oracle.get("reference"),
                                       errors.get("reference"), value, ours_vjp, ours_jvp,
                                       errors, out_names, directions))
    return rows


def _reference_row(s, o, reference, result, error, value, ours_vjp, ours_jvp, errors,
                   out_names, directions) -> CheckRow:
    if reference is None:
        return _not_applicable("reference", "no reference function given (reference=)")
    if error or errors["vjp"] or errors["jvp"]:
        return _row("reference", None, 0, 0, error=error or errors["vjp"] or errors["jvp"])
    ref_value, ref_vjp, ref_jvp = result
    got = [*_leaves(value), *ours_vjp]
    want = [*_leaves(ref_value), *ref_vjp]
    names = [*(f"{n}{{}} (value)" for n in out_names), *(f"{n}{{}} (J^T u)" for n in s.names)]
    g2, w2, n2 = _per_leaf_outputs(ours_jvp, ref_jvp, s.names, out_names, 0)
    got, want, names = got + g2, want + w2, names + n2
    scale = max([1.0, *(float(jnp.max(jnp.abs(x))) for x in want if np.size(x))])
    cmp = oracles.compare(got, want, names, atol=o.atol * scale, rtol=o.rtol)
    return _row("reference", cmp, o.atol * scale, o.rtol,
                "value, J^T u and J v against JAX's autodiff of the reference", directions)


def _output_names(out_struct) -> list[str]:
    paths, _ = jax.tree_util.tree_flatten_with_path(out_struct)
    if len(paths) == 1 and not paths[0][0]:
        return ["z"]
    return ["z" + jax.tree_util.keystr(p) for p, _ in paths]


def _per_leaf_outputs(ours_jvp, other, names, out_names, which: int):
    """Our J v (per input leaf, per output leaf) against ``other`` in the same layout."""
    got, want, labels = [], [], []
    for name, pushes, theirs in zip(names, ours_jvp, other):
        for o_name, a, b in zip(out_names, _leaves(pushes[which]), _leaves(theirs)):
            got.append(a)
            want.append(b)
            labels.append(f"{o_name}{{}} (tangent of {name})")
    return got, want, labels


def _relocate(cmp: oracles.Comparison, s: _Subject, coords) -> oracles.Comparison:
    """``where`` of a comparison over sampled coordinates, as the element of the input."""
    m = re.match(r"^(.*)\[(\d+)\]$", cmp.where)
    name = cmp.where if m is None else m.group(1)
    if name not in s.names:
        return cmp
    k = s.names.index(name)
    flat = int(coords[k][int(m.group(2))]) if m is not None else 0
    where = oracles.index_text(name, np.shape(s.leaves[k]), flat)
    return dataclasses.replace(cmp, where=where)

