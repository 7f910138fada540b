"""The checks of ``jaxprop.check``, one :class:`Check` entry each in :data:`CHECKS`: its key,
what it compares (the report's words) and the function that judges it.

Every number the checks compare is measured once (:func:`measure`): our rules through the
drivers, central finite differences, JAX's autodiff of the forward code and of a reference,
a gate's rules called directly, the kink points and the scaled inputs, all of them one
compiled program. Each check then reads that :class:`Evidence` and returns its
:class:`~jaxprop.verify.report.CheckRow`. Adding a check is one entry in :data:`CHECKS` and
its function.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.test_util import check_grads

from jaxprop import forward as fwd_mode
from jaxprop import reverse as rev_mode
from jaxprop.events import observe
from jaxprop.gate import is_constant, run_forward, unbroadcast
from jaxprop.tracer import gated
from jaxprop.verify import oracles
from jaxprop.verify.report import ERROR, FAIL, NOT_APPLICABLE, PASS, CheckRow
from jaxprop.verify.subject import Subject
from jaxprop.wiring import rule_set

__all__ = ["Check", "CHECKS", "SCALES", "Options", "Evidence", "measure", "error_row", "first_line"]


@dataclasses.dataclass(frozen=True)
class Check:
    """One check of the battery.

    Attributes:
      key: its short name (``"fd_vjp"``), as ``checks=`` and the report name it.
      compares: what it compares, in words: the report's title of its row.
      run: ``(evidence) -> CheckRow``, its verdict from the numbers :func:`measure` took.
    """

    key: str
    compares: str
    run: Callable[[Evidence], CheckRow]


_A, _B = 0.7, -1.3  # the linearity check's coefficients: a + b != 1 also catches an offset
SCALES = (1e-8, 1e-4, 1e-2, 1e2, 1e4)
"""The factors the "scales" check multiplies the inputs by: a rule wrong only for small (or
large) inputs, such as an epsilon in a denominator, fails there."""
_TIE = 0.75  # the value every input takes at the tie probe (inside log's and sqrt's domain)
_ROUNDING = 32  # a central difference's rounding error: this many ulps of f, over the step
_PROBE_SIZE = 4096  # the largest Jacobian (outputs x inputs) the probes check entry by entry


@dataclasses.dataclass
class Options:
    """The tolerances and settings ``check`` was given (see its arguments)."""

    rtol: float
    atol: float
    fd_atol: float
    fd_step: float
    order: int
    allow_jax_rules: bool
    max_fd_elements: int
    probes: bool = True
    steps: tuple = ()  # the finite-difference step of each leaf (set by measure)
    eps: float = float(np.finfo(np.float64).eps)  # the function's lowest working precision


def _random_like(rng, tree):
    return jax.tree.map(lambda a: jnp.asarray(rng.normal(size=np.shape(a))), tree)


def _coords(rng, size: int, limit: int) -> np.ndarray:
    if size <= limit:
        return np.arange(size)
    return np.sort(rng.choice(size, limit, replace=False))


def first_line(err: BaseException, limit: int = 400) -> str:
    text = f"{type(err).__name__}: {err}".split("\n--------")[0].strip()
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _attempt(fn: Callable, *args):
    """``(result, None)``, or ``(None, the error's first line)`` if ``fn`` raised."""
    try:
        return jax.block_until_ready(fn(*args)), None
    except Exception as err:  # noqa: BLE001  (a rule that raises fails its checks)
        return None, first_line(err)


def _tol(atol: float, rtol: float) -> str:
    return f"|err| <= {atol:.1e} + {rtol:.1e} |expected|"


def _row(key: str, cmp: oracles.Comparison | None, atol: float, rtol: float, note: str = "",
         directions: dict | None = None, error: str | None = None) -> CheckRow:
    title = CHECKS[key].compares
    if error is not None:
        return CheckRow(key, title, ERROR, note=error)
    return CheckRow(key, title, PASS if cmp.ok else FAIL, cmp.abs_error, cmp.rel_error,
                    cmp.where, cmp.got, cmp.expected, _tol(atol, rtol), note, directions or {})


def _not_applicable(key: str, why: str) -> CheckRow:
    return CheckRow(key, CHECKS[key].compares, NOT_APPLICABLE, note=why)


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
            for t in (v[i], w[i], _A * np.asarray(v[i]) + _B * np.asarray(w[i])):
                rows.append(np.asarray(t) if i == k else np.zeros(np.shape(x)))
        batch.append(np.stack(rows))
    return batch


def _unbatch(pushed, n: int) -> list:
    """A vmapped JVP's output leaves, as [leaf i][v, w or a v + b w][output leaf]."""
    pushed = _leaves(pushed)
    return [[[a[3 * i + j] for a in pushed] for j in range(3)] for i in range(n)]


def _parts(s: Subject, o: Options, coords, reference, points, selected
           ) -> dict[str, Callable]:
    """The numbers the checks compare, each a function of ``(leaves, u, v, w, tangents)``:
    our rules through the pipelines, finite differences, JAX's autodiff of the forward code
    and of the reference, (for a gate) its rules called directly, the kink ``points`` and
    the scaled inputs: all of them one compiled program."""
    allow, h, n = o.allow_jax_rules, o.steps, len(s.leaves)

    def pushed(f, leaves, tangents):
        return jax.vmap(lambda *ts: _leaves(f(tuple(leaves), ts)))(*tangents)

    parts = {
        "value": lambda leaves, u, v, w, T: s.fn(*leaves),
        "vjp": lambda leaves, u, v, w, T: rev_mode.vjp(
            s.fn, *leaves, allow_jax_rules=allow)[1](u),
        "jvp": lambda leaves, u, v, w, T: pushed(
            lambda p, t: fwd_mode.jvp(s.fn, p, t, allow_jax_rules=allow)[1], leaves, T),
        "fd_vjp": lambda leaves, u, v, w, T: [
            oracles.central_coordinates(s.fn, leaves, i, u, coords[i], h[i]) for i in range(n)],
        "fd_jvp": lambda leaves, u, v, w, T: [
            oracles.central_directional(s.fn, leaves, i, v[i], h[i]) for i in range(n)],
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
    if "kinks" in selected and points:
        parts["probes"] = lambda leaves, u, v, w, T: _probe_program(o, points)
    if "scales" in selected:
        parts["scales"] = lambda leaves, u, v, w, T: _scaled_program(s, o, leaves, u, v, coords)
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


def _direct_rules(s: Subject):
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


def _shapes_row(s: Subject, u, ours_vjp, ours_jvp, out_struct, errors) -> CheckRow:
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
            return _row("shapes", None, 0, 0, error=first_line(err))
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
        return CheckRow("shapes", CHECKS["shapes"].compares, FAIL, where=problems[0][0],
                        note="; ".join(p[1] for p in problems))
    return CheckRow("shapes", CHECKS["shapes"].compares, PASS, 0.0, 0.0,
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


def _check_grads_row(key: str, s: Subject, o: Options, scale: float) -> CheckRow:
    fn = gated(s.fn, allow_jax_rules=o.allow_jax_rules)
    rules, modes = ("vjp", ("rev",)) if key == "check_grads_vjp" else ("jvp", ("fwd", "rev"))
    atol = o.fd_atol * scale + _ROUNDING * o.eps * scale / min(o.steps)
    try:
        with rule_set(rules):
            check_grads(jax.jit(fn), tuple(s.leaves), order=o.order, modes=modes, atol=atol,
                        rtol=o.rtol, eps=min(o.steps))
    except AssertionError as err:
        abs_err, rel_err = _parse_check_grads(str(err))
        return CheckRow(key, CHECKS[key].compares, FAIL, abs_err, rel_err, "(check_grads' own "
                        "random directions)", tolerance=_tol(atol, o.rtol),
                        note=f"order {o.order}, modes {modes}: " + first_line(err, 200))
    except Exception as err:  # noqa: BLE001
        return _row(key, None, 0, 0, error=first_line(err))
    return CheckRow(key, CHECKS[key].compares, PASS, tolerance=_tol(atol, o.rtol),
                    note=f"order {o.order}, modes {', '.join(modes)}, eps {min(o.steps):.2g}")


def _rule_ran_row(s: Subject, o: Options, u, v, ours, direct) -> CheckRow:
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
            return _row("rule_ran", None, 0, 0, error=first_line(err))
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
        return CheckRow("rule_ran", CHECKS["rule_ran"].compares, FAIL, where="-",
                        note="; ".join(problems))
    if direct is None or ours is None:
        return CheckRow("rule_ran", CHECKS["rule_ran"].compares, PASS, note=note)
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


def _linear_rows(s: Subject, o: Options, ours, direct, errors, v, w) -> CheckRow:
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
    scale = max([1.0, *(float(np.max(np.abs(np.asarray(x)))) for x in want if np.size(x))])
    cmp = oracles.compare(got, want, names, atol=o.atol * scale, rtol=o.rtol)
    structural = None
    if s.gate is not None:
        structural = _structural_linearity(s, v)
    if structural:
        return CheckRow("linear", CHECKS["linear"].compares, FAIL, cmp.abs_error, cmp.rel_error,
                        structural[0], cmp.got, cmp.expected, _tol(o.atol * scale, o.rtol),
                        structural[1], {"v": v, "w": w})
    return _row("linear", cmp, o.atol * scale, o.rtol,
                f"{note}: J({_A} v {_B:+} w) against {_A} J v {_B:+} J w", {"v": v, "w": w})


def _structural_linearity(s: Subject, v):
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


def _broadcast_row(s: Subject, o: Options, seed: int) -> CheckRow:
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
    us = [jax.tree.map(lambda a, like: jnp.asarray(np.asarray(a), like.dtype),
                       _random_like(rng, out), out) for out in out_shapes]
    vs = [jnp.asarray(rng.normal(size=np.shape(leaves[k]))) for _, k, leaves in variants]
    steps = [_step(o, leaves[k]) for _, k, leaves in variants]

    @jax.jit
    def program(all_leaves, us, vs):
        results = []
        for (_, k, _), leaves, u, v, h in zip(variants, all_leaves, us, vs, steps):
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
        return _row("broadcast", None, 0, 0, error=first_line(err))
    got, want, names = [], [], []
    for (label, k, leaves), (x_bar, jv, fd_bar, fd_v) in zip(variants, results):
        if np.shape(x_bar) != np.shape(leaves[k]):
            return CheckRow("broadcast", CHECKS["broadcast"].compares, FAIL, where=label,
                            note=f"the gradient of {label} has shape {np.shape(x_bar)}, "
                            f"expected {np.shape(leaves[k])}: not summed back over the copies")
        got.append(jnp.ravel(x_bar))
        want.append(fd_bar)
        names.append(f"{label} (VJP)")
        for j, (a, b) in enumerate(zip(jv, fd_v)):
            got.append(a)
            want.append(b)
            names.append(f"z_dot from {label}" + (f"[{j}]" if len(jv) > 1 else ""))
    scale = max([1.0, *(float(np.max(np.abs(np.asarray(x)))) for x in want if np.size(x))])
    cmp = oracles.compare(got, want, names, atol=o.fd_atol * scale, rtol=o.rtol)
    return _row("broadcast", cmp, o.fd_atol * scale, o.rtol,
                f"{len(variants)} broadcast variants, both rules against finite differences")


def _step(o: Options, x) -> float:
    """The finite-difference step for an input x: fd_step times its size (its root mean
    square, at least 1), so that x + h never rounds back to x; larger by (eps / eps64)^(1/3)
    where the function computes in a lower precision (the step that balances truncation and
    rounding there)."""
    size = float(np.sqrt(np.mean(np.square(np.asarray(x))))) if np.size(x) else 0.0
    widen = (o.eps / float(np.finfo(np.float64).eps)) ** (1 / 3)
    return o.fd_step * widen * max(1.0, size)


def _working_eps(fn: Callable, leaves) -> float:
    """The machine epsilon of the lowest floating-point precision the function computes in
    (float64 unless it casts down): finite differences are only as exact as that."""
    eps = float(np.finfo(np.float64).eps)

    def visit(jaxpr):
        nonlocal eps
        for eqn in jaxpr.eqns:
            for var in eqn.outvars:
                dtype = getattr(getattr(var, "aval", None), "dtype", None)
                if dtype is not None and jnp.issubdtype(dtype, jnp.floating):
                    eps = max(eps, float(jnp.finfo(dtype).eps))
            for param in eqn.params.values():
                for sub in param if isinstance(param, (tuple, list)) else (param,):
                    inner = getattr(sub, "jaxpr", sub)
                    if hasattr(inner, "eqns"):
                        visit(inner)

    try:
        visit(jax.make_jaxpr(fn)(*leaves).jaxpr)
    except Exception:  # noqa: BLE001  (the forward computation's error is reported elsewhere)
        pass
    return eps


@dataclasses.dataclass
class _Points:
    """Kink points that share a function and shapes, stacked along a leading axis."""

    labels: list[str]
    fn: Callable
    leaves: list  # each [points, *shape]
    steps: np.ndarray  # [points, leaves]


def _probe_points(s: Subject, o: Options, kinks, make_subject) -> tuple[list, list[str]]:
    """The points the kinks check runs at: each kink given alone; then, with probes on, every
    input 0, every input equal, and (a gate) every input equal to each number it is given.
    Returns the groups and notes on what was left out."""
    groups, notes = [], []
    for p, point in enumerate(kinks):
        k = make_subject(point, f"kink point {p}, input")
        n_in = sum(int(np.size(x)) for x in k.leaves)
        n_out = sum(int(np.prod(a.shape)) for a in _leaves(jax.eval_shape(k.fn, *k.leaves)))
        if n_in * n_out > 10**6:
            raise ValueError(f"check: kink point {p}: a {n_out} x {n_in} Jacobian is too large "
                             "to check entry by entry; give a smaller point")
        groups.append(_Points([f"point {p}"], k.fn, [x[None] for x in k.leaves],
                              np.array([[_step(o, x) for x in k.leaves]])))
    if not o.probes:
        return groups, notes
    if o.allow_jax_rules:  # a tie is theirs to route: jnp.sort's middle entry is neither side
        notes.append("0 and ties not probed: JAX's own rules may run (allow_jax_rules=True), "
                     "with JAX's conventions at ties")
        return groups, notes
    ordered = _ordering_gates(s)
    if ordered:  # a tie is a sort's: no Jacobian makes each entry one-sided there
        notes.append(f"0 and ties not probed: {', '.join(ordered)} at a tie between elements "
                     "has middle entries that are neither one-sided derivative, whatever "
                     "order the tie is given")
        return groups, notes
    values = {0.0: "all 0", _TIE: f"all {_TIE:g} (a tie)"}
    if s.gate is not None:
        for x in s.rebuild(s.leaves):
            if is_constant(x) and isinstance(x, (int, float)) and float(x) not in values:
                values[float(x)] = f"all {float(x):g} (a tie with the constant)"
    n_in = sum(int(np.size(x)) for x in s.leaves)
    n_out = sum(int(np.prod(a.shape)) for a in _leaves(jax.eval_shape(s.fn, *s.leaves)))
    if n_in * n_out > _PROBE_SIZE:
        notes.append(f"0 and ties not probed: a {n_out} x {n_in} Jacobian is over "
                     f"{_PROBE_SIZE} entries; pass kinks= at a smaller input")
        return groups, notes
    points = [[np.full(np.shape(x), c) for x in s.leaves] for c in values]
    groups.append(_Points(list(values.values()), s.fn,
                          [jnp.asarray(np.stack(xs)) for xs in zip(*points)],
                          np.array([[_step(o, x) for x in xs] for xs in points])))
    return groups, notes


ORDERING_GATES = ("sort", "top_k", "approx_top_k")
"""Gates that put elements in an order found from their values: at a tie between elements,
a middle output of the order (the second of three equal values) moves with none of them when
one is moved alone, up or down, so the tie probes leave them out."""


def _ordering_gates(s: Subject) -> list[str]:
    """The gates of :data:`ORDERING_GATES` that the subject applies."""
    if s.gate is not None:
        names = {s.gate.name}
    else:
        events: list = []
        try:
            with observe(events.append):
                jax.make_jaxpr(gated(s.fn))(*s.leaves)
        except Exception:  # noqa: BLE001 - the other checks report what cannot be traced
            return []
        names = {getattr(e.gate, "name", None) for e in events if e.kind == "forward"}
    return sorted(names & set(ORDERING_GATES))


def _probe_program(o: Options, groups: list[_Points]) -> list:
    """Per group, for each of its points: the Jacobian by the VJP rules and by the JVP rules,
    the one-sided derivatives of each entry, and those along the joint direction."""
    allow = o.allow_jax_rules
    out = []
    for g in groups:
        def one(leaves, steps, fn=g.fn):
            j_rev, j_fwd = _jacobians(fn, leaves, allow)
            sides = [oracles.one_sided(fn, leaves, i, np.arange(x.size), steps[i])
                     for i, x in enumerate(leaves)]
            return j_rev, j_fwd, sides, oracles.one_sided_along(fn, leaves, jnp.min(steps))

        out.append(jax.vmap(one)(g.leaves, jnp.asarray(g.steps)))
    return out


def _jacobians(fn: Callable, leaves, allow: bool):
    """The Jacobian as one [outputs, inputs] float64 matrix (every leaf flattened, in order),
    by the VJP rules (``jaxprop.reverse.jacobian``) and by the JVP rules
    (``jaxprop.forward.jacobian``)."""
    n = len(leaves)
    sizes = [int(np.prod(np.shape(x))) for x in leaves]
    outs = _leaves(jax.eval_shape(fn, *leaves))

    def matrix(jac):
        blocks = _leaves(jac)  # per output leaf, a block per input leaf
        rows = [jnp.concatenate([blocks[k * n + i].reshape(int(np.prod(o.shape)), sizes[i])
                                 .astype(jnp.float64) for i in range(n)], axis=1)
                for k, o in enumerate(outs)]
        return jnp.concatenate(rows)

    argnums = tuple(range(n))
    return (matrix(rev_mode.jacobian(fn, argnums, allow_jax_rules=allow)(*leaves)),
            matrix(fwd_mode.jacobian(fn, argnums, allow_jax_rules=allow)(*leaves)))


def _finite(*arrays) -> bool:
    return all(bool(np.all(np.isfinite(np.asarray(a)))) for a in arrays)


def _no_derivative(rev_m, fwd_m, right, left, h: float) -> bool:
    """Whether a probe point has no derivative at all, not a kink: both rules' Jacobians are
    not finite in the same entries (they agree there is none: atan2 at the origin, cbrt at 0)
    and in one of them the function jumps or turns vertical (a one-sided difference over
    1/sqrt(h), or none)."""
    bad = ~np.isfinite(rev_m)
    if not bad.any() or not np.array_equal(bad, ~np.isfinite(fwd_m)):
        return False
    steep = np.maximum(np.abs(right), np.abs(left)) > 1 / np.sqrt(h)
    return bool(np.any(steep[bad] | ~np.isfinite(right[bad]) | ~np.isfinite(left[bad])))


def _kinks_row(o: Options, groups: list[_Points], notes, results, error) -> CheckRow:
    if not groups:
        return _not_applicable("kinks", "; ".join(notes) or "no kink points given and probes "
                               "off: pass kinks=[(x, ...), ...] or probes=True")
    if error:
        return _row("kinks", None, 0, 0, error=error)
    got, want, names, agree_got, agree_want, agree_names = [], [], [], [], [], []
    used, skipped, no_derivative, rounding = [], [], [], 0.0
    for g, (j_rev, j_fwd, sides, joint) in zip(groups, results):
        for p, label in enumerate(g.labels):
            def pick(tree, p=p):
                return jax.tree.map(lambda a: np.asarray(a[p]), tree)

            right = np.concatenate([np.asarray(r[p]).T for r, _ in sides], axis=1)
            left = np.concatenate([np.asarray(lf[p]).T for _, lf in sides], axis=1)
            j_right, j_left, value = pick(joint)
            if not _finite(value, right, left, j_right, j_left):
                skipped.append(label)
                continue
            rev_m, fwd_m = np.asarray(j_rev[p]), np.asarray(j_fwd[p])
            if _no_derivative(rev_m, fwd_m, right, left, float(np.min(g.steps[p]))):
                no_derivative.append(label)
                continue
            nearer = np.where(np.abs(rev_m - right) <= np.abs(rev_m - left), right, left)
            along = rev_m @ np.ones(rev_m.shape[1])
            nearer_joint = np.where(np.abs(along - j_right) <= np.abs(along - j_left),
                                    j_right, j_left)
            got += [rev_m, along]
            want += [nearer, nearer_joint]
            names += [f"{label}: J", f"{label}: J 1 (joint direction), z"]
            agree_got.append(fwd_m)
            agree_want.append(rev_m)
            agree_names.append(f"{label}: J by the JVP rules")
            used.append(label)
            # a one-sided difference's rounding error: (3 + 4 + 1) / 2h ulps of f
            f_abs = max(1.0, float(np.max(np.abs(value), initial=0.0)))
            rounding = max(rounding, 4 * _ROUNDING * o.eps * f_abs / float(np.min(g.steps[p])))
    if skipped:
        notes = [*notes, f"left out, not finite there (outside the domain): "
                 f"{', '.join(skipped)}"]
    if no_derivative:
        notes = [*notes, f"left out, no derivative there (the function jumps or turns "
                 f"vertical, and neither rule gives a finite one): {', '.join(no_derivative)}"]
    if not used:
        return _not_applicable("kinks", "; ".join(notes))
    scale = max([1.0, *(float(np.max(np.abs(x))) for x in want if np.size(x))])
    fd_atol = o.fd_atol * scale + rounding
    cmp_sides = oracles.compare(got, want, names, atol=fd_atol, rtol=o.rtol)
    cmp_agree = oracles.compare(agree_got, agree_want, agree_names, atol=o.atol * scale,
                                rtol=o.rtol)
    if not cmp_agree.ok:
        return _row("kinks", cmp_agree, o.atol * scale, o.rtol,
                    "the VJP and JVP rules disagree at the kink: they use different "
                    "conventions there")
    return _row("kinks", cmp_sides, fd_atol, o.rtol,
                "; ".join([f"at {', '.join(used)}: the Jacobian by the VJP rules equals the "
                           "JVP rules' and, entry by entry and along the joint direction "
                           "(every input + t), a one-sided derivative (left or right)",
                           *notes]))


def _scaled_program(s: Subject, o: Options, leaves, u, v, coords):
    """At the inputs times each factor c of SCALES: the value, and per leaf J v (forward
    mode), <J^T u, v> (reverse mode) and the central differences along v with the steps c h
    and 2 c h (their difference bounds the first's truncation error); and J^T u' at the
    sampled coordinates, u' = u / |f| (see _relative), with its central differences there,
    at c h and 2 c h."""
    allow, n = o.allow_jax_rules, len(leaves)
    tangents = [jnp.stack([v[j] if j == k else jnp.zeros_like(v[j]) for k in range(n)])
                for j in range(n)]

    def at(c):
        xs = [c * x for x in leaves]
        value, pull = rev_mode.vjp(s.fn, *xs, allow_jax_rules=allow)
        x_bar = pull(u)
        u_rel = _relative(u, value)
        x_bar_rel = pull(u_rel)
        pushes = jax.vmap(lambda *ts: _leaves(fwd_mode.jvp(
            s.fn, tuple(xs), ts, allow_jax_rules=allow)[1]))(*tangents)
        per = []
        for i in range(n):
            h = c * o.steps[i]
            per.append(([a[i] for a in pushes], jnp.vdot(x_bar[i], v[i]),
                        oracles.central_directional(s.fn, xs, i, v[i], h),
                        oracles.central_directional(s.fn, xs, i, v[i], 2 * h),
                        jnp.ravel(x_bar_rel[i])[coords[i]],
                        oracles.central_coordinates_sized(s.fn, xs, i, u_rel, coords[i], h),
                        oracles.central_coordinates_sized(s.fn, xs, i, u_rel, coords[i], 2 * h)))
        return _leaves(s.fn(*xs)), per

    return jax.vmap(at)(jnp.asarray(SCALES))


def _relative(u, value):
    """The cotangent u / |f| (|f| at least the square root of its dtype's smallest normal
    number): each output weighted by its own size, so that a difference's rounding error,
    eps sum |u' f| / h, is that of u, and a tiny output's derivative is not drowned by a
    large one's rounding."""
    def one(w, a):
        floor = float(np.sqrt(jnp.finfo(a.dtype).tiny))
        return (w / jnp.maximum(jnp.abs(a), floor)).astype(w.dtype)

    return jax.tree.map(one, u, value)


def _scales_row(s: Subject, o: Options, u, result, error, out_names, directions
                ) -> CheckRow:
    """At each factor, each element of J v, and of J^T u' at the sampled coordinates, where the
    differences resolve it (finite, and their own error, |D(h) - D(2h)| plus rounding, under
    a tenth of it) is held to a tolerance of its own size: fd_atol times it plus that error;
    a rule off by a constant (an epsilon) fails where the derivative is tiny. The other
    elements of J v, and <J^T u, v>, are held to the derivative's largest size (at least 1)
    where every value is finite."""
    if error:
        return _row("scales", None, 0, 0, error=error)
    values, per = result
    u_leaves = [np.asarray(a, np.float64) for a in _leaves(u)]
    tiny = _smallest_subnormal(o.eps)
    checked, skipped, failed, worst = [], [], None, None
    for k, c in enumerate(SCALES):
        value = [np.asarray(a[k], np.float64) for a in values]
        all_finite = _finite(*value)
        f_abs = max([0.0, *(float(np.max(np.abs(a))) for a in value if np.size(a))])
        uf = sum(float(np.sum(np.abs(a * b))) for a, b in zip(u_leaves, value))
        got, want, names, own, allowance = [], [], [], [], 0.0
        for i, (jv, vjp_v, fd1, fd2, x_bar, (c1, size1), (c2, size2)) in enumerate(per):
            jv, fd1, fd2 = ([np.asarray(a[k], np.float64) for a in t] for t in (jv, fd1, fd2))
            paired = [sum(float(np.vdot(a, b)) for a, b in zip(u_leaves, fd)) for fd in (fd1,
                                                                                       fd2)]
            all_finite = all_finite and _finite(*fd1, *fd2, *paired)
            h = c * o.steps[i]
            with np.errstate(invalid="ignore"):
                trunc = max([abs(paired[0] - paired[1]), *(
                    float(np.max(np.abs(a - b))) for a, b in zip(fd1, fd2) if np.size(a))])
            allowance = max(allowance, trunc + _ROUNDING * o.eps * max(f_abs, uf) / h)
            for o_n, z, g, d1, d2 in zip(out_names, value, jv, fd1, fd2):
                with np.errstate(invalid="ignore", over="ignore"):
                    err = np.abs(d1 - d2) + _ROUNDING * (o.eps * np.abs(z) + tiny) / h
                    resolved = (np.isfinite(z) & np.isfinite(d1) & np.isfinite(d2)
                                & _resolves(d1, d2, err, o.fd_atol))
                got.append(g)
                want.append(d1)
                names.append(f"x {c:g}: {o_n}{{}} (tangent of {s.names[i]})")
                own.append((resolved, np.where(resolved, o.fd_atol * np.abs(d1) + err, 0.0)))
            x_bar, c1, c2, size1, size2 = (np.asarray(a[k], np.float64)
                                           for a in (x_bar, c1, c2, size1, size2))
            with np.errstate(invalid="ignore", over="ignore"):
                err = np.abs(c1 - c2) + _ROUNDING * (o.eps * np.maximum(size1, size2)
                                                      + tiny) / h
                resolved = np.isfinite(c1) & np.isfinite(c2) & _resolves(c1, c2, err, o.fd_atol)
            got.append(x_bar)  # only where resolved: the other coordinates are left out
            want.append(c1)
            names.append(f"x {c:g}: {s.names[i]}{{}} (J^T u', u' = u / |f|, a sampled "
                         "coordinate)")
            own.append((resolved, np.where(resolved, o.fd_atol * np.abs(c1) + err, 0.0)))
            got.append(np.asarray(vjp_v[k]))
            want.append(np.asarray(paired[0]))
            names.append(f"x {c:g}: <J^T u, v> for {s.names[i]}")
            own.append((np.array(False), np.array(0.0)))
        size = max([0.0, *(float(np.max(np.abs(a))) for a in want if np.size(a))]
                   ) if all_finite else 0.0
        shared = o.fd_atol * max(1.0, size) + allowance
        # the shared tolerance holds where every value is finite and it resolves the derivative
        use_shared = all_finite and not (allowance > 0.1 * size
                                         and allowance > shared - allowance)
        atols, n_own = [], 0
        for (resolved, tol), name, d in zip(own, names, want):
            n_own += int(np.sum(resolved & (d != 0)))  # 0 = 0 alone makes no verdict
            alone = name.endswith("a sampled coordinate)") or not use_shared
            atols.append(np.where(resolved, tol, np.inf if alone else shared))
        if not use_shared and n_own == 0:
            skipped.append(f"{c:g} (" + ("not finite)" if not all_finite else
                                         "finite differences do not resolve the derivative)"))
            continue
        cmp = oracles.compare([np.where(np.isinf(a), 0.0, g) for a, g in zip(atols, got)],
                              [np.where(np.isinf(a), 0.0, d) for a, d in zip(atols, want)],
                              names, atol=atols, rtol=o.rtol)
        checked.append(f"{c:g}" + ("" if use_shared else f" ({n_own} element(s) alone)"))
        tol = shared if use_shared else min(float(np.min(t[r])) for r, t in own if np.any(r))
        if not cmp.ok and failed is None:
            failed = (cmp, tol)
        if worst is None or cmp.abs_error > worst[0].abs_error:
            worst = (cmp, tol)
    left_out = f"; left out: {', '.join(skipped)}" if skipped else ""
    if not checked:
        return _not_applicable("scales", "at every factor the function is not finite or "
                               f"finite differences cannot resolve its derivative{left_out}")
    cmp, atol = failed or worst
    return _row("scales", cmp, atol, o.rtol,
                f"J v and <J^T u, v> against central differences along v at the inputs times "
                f"{', '.join(checked)}, h scaled alike; each element of J v, and of J^T u' "
                f"(u' = u / |f|) at the sampled coordinates, that the differences resolve also "
                f"within fd_atol of its own size{left_out}", directions)


def _resolves(d1, d2, err, fd_atol: float):
    """Where central differences at h (d1) and 2h (d2) resolve a derivative: their error
    ``err`` is under a tenth of it, or both are exactly 0 (the output did not move in float)
    and ``err`` (then their rounding: the derivative is within it of 0) is under fd_atol."""
    return (((d1 != 0) & (err <= 0.1 * np.abs(d1)))
            | ((d1 == 0) & (d2 == 0) & (err <= fd_atol)))


def _smallest_subnormal(eps: float) -> float:
    """The smallest positive number of the float type whose machine epsilon is ``eps``: a
    difference of values near it is only that exact."""
    for dtype in (jnp.float64, jnp.float32, jnp.bfloat16, jnp.float16):
        if float(jnp.finfo(dtype).eps) == eps:
            return float(jnp.finfo(dtype).smallest_subnormal)
    return float(jnp.finfo(jnp.float64).smallest_subnormal)


# ------------------------------------------------------------------------- the evidence


@dataclasses.dataclass
class Evidence:
    """What every check reads: the subject, the options, the random directions, and the
    numbers of the one compiled program (:func:`measure`), each measured once."""

    s: Subject
    o: Options
    seed: int
    reference: Callable | None
    out_struct: Any
    out_names: list[str]
    u: Any  # the output's cotangent
    v: list  # per leaf, a tangent
    w: list  # per leaf, a second tangent (the linearity check's)
    coords: list  # per leaf, the elements that get their own finite difference
    directions: dict  # u and v, as the report names them
    points: list  # the kinks check's groups of points
    point_notes: list[str]
    results: dict  # each part of the program (see _parts), or None where it raised
    errors: dict  # each part's error, or None
    ours_vjp: Any  # per leaf, J^T u by our VJP rules
    ours_jvp: Any  # per leaf, [J v, J w, J(a v + b w)] by our JVP rules
    oracle: dict  # the finite differences, JAX's autodiff of the forward code, the reference
    value: Any  # the output at the inputs (zeros where the forward computation raised)

    @functools.cached_property
    def f_scale(self) -> float:
        return _size(_leaves(self.value))

    def scale_of(self, arrays) -> float:
        return max([self.f_scale, *(float(np.max(np.abs(np.asarray(x))))
                                    for x in arrays if np.size(x))])

    @functools.cached_property
    def rounding_vjp(self) -> float:
        """The rounding error of a central difference of <u, f>: eps sum |u f| / h."""
        uf = sum(float(np.sum(np.abs(np.asarray(a) * np.asarray(b))))
                 for a, b in zip(_leaves(self.u), _leaves(self.value)))
        return _ROUNDING * self.o.eps * uf / min(self.o.steps)

    @functools.cached_property
    def rounding_jvp(self) -> float:
        """The rounding error of a central difference of f along v: eps max |f| / h."""
        f_abs = max([0.0, *(float(np.max(np.abs(a))) for a in _leaves(self.value) if np.size(a))])
        return _ROUNDING * self.o.eps * f_abs / min(self.o.steps)

    @functools.cached_property
    def fd_why(self) -> str | None:
        """Why finite differences cannot judge the VJP rule here, or None."""
        want = [] if self.results.get("fd_vjp") is None else list(self.oracle["fd_vjp"])
        return _fd_meaningless(self.value, want, self.rounding_vjp,
                               self.o.fd_atol * _size(want) + self.rounding_vjp)

    @property
    def steps_text(self) -> str:
        return ", ".join(f"{h:.2g}" for h in self.o.steps)

    def failed(self, *parts: str) -> str | None:
        """The first error among the program's ``parts``, or None."""
        return next((self.errors[p] for p in parts if self.errors.get(p)), None)

    def fd_verdict(self, key, got, want, names, rounding, note, dirs, where=lambda cmp: cmp):
        """A comparison with finite differences, or n/a where they cannot judge: an output
        or a difference that is not finite, or rounding that hides the derivative. The
        tolerance: fd_atol times the derivative's size (at least 1), plus the differences'
        rounding error (which grows with the output, not with the derivative)."""
        atol = self.o.fd_atol * _size(want) + rounding
        why = _fd_meaningless(self.value, want, rounding, atol)
        if why:
            return _not_applicable(key, why)
        return _row(key, where(oracles.compare(got, want, names, atol=atol, rtol=self.o.rtol)),
                    atol, self.o.rtol, note, dirs)


def measure(s: Subject, o: Options, out_struct, selected, seed: int, reference, kinks,
            make_subject) -> Evidence:
    """Draws the random directions and runs every number the ``selected`` checks compare as
    one compiled program."""
    rng = np.random.default_rng(seed)
    u = jax.tree.map(lambda a, like: jnp.asarray(np.asarray(a), like.dtype),
                     _random_like(rng, out_struct), out_struct)  # in the output's dtype
    v = [jnp.asarray(rng.normal(size=np.shape(x))) for x in s.leaves]
    w = [jnp.asarray(rng.normal(size=np.shape(x))) for x in s.leaves]
    coords = [_coords(rng, int(np.size(x)), o.max_fd_elements) for x in s.leaves]
    directions = {"u": u, **{f"v[{n}]": t for n, t in zip(s.names, v)}}

    o = dataclasses.replace(o, eps=_working_eps(s.fn, s.leaves))
    o = dataclasses.replace(o, steps=tuple(_step(o, x) for x in s.leaves))
    points, point_notes = ([], []) if "kinks" not in selected else _probe_points(
        s, o, kinks, make_subject)
    tangents = _tangent_batch(s.leaves, v, w)
    results, errors = _evaluate(_parts(s, o, coords, reference, points, selected),
                                (s.leaves, u, v, w, tangents))
    n = len(s.leaves)
    oracle = {"fd_vjp": results.get("fd_vjp"), "fd_jvp": results.get("fd_jvp"),
              "plain_vjp": results.get("plain_vjp"),
              "plain_jvp": None if results.get("plain_jvp") is None else [
                  p[0] for p in _unbatch(results["plain_jvp"], n)]}
    if results.get("reference") is not None:
        ref_value, ref_vjp, ref_jvp = results["reference"]
        oracle["reference"] = (ref_value, ref_vjp, [p[0] for p in _unbatch(ref_jvp, n)])
    value = results.get("value")
    if value is None:
        value = jax.tree.map(jnp.zeros_like, out_struct)
    return Evidence(
        s, o, seed, reference, out_struct, _output_names(out_struct), u, v, w, coords,
        directions, points, point_notes, results, errors, results.get("vjp"),
        None if results.get("jvp") is None else _unbatch(results["jvp"], n), oracle, value)


def error_row(key: str, error: str) -> CheckRow:
    """A check that could not run: ``error`` says why."""
    return _row(key, None, 0, 0, error=error)


# --------------------------------------------------------------------------------- checks


def _shapes(e: Evidence) -> CheckRow:
    return _shapes_row(e.s, e.u, e.ours_vjp, e.ours_jvp, e.out_struct, e.errors)


def _fd_vjp(e: Evidence) -> CheckRow:
    if e.failed("vjp", "fd_vjp"):
        return error_row("fd_vjp", e.failed("vjp", "fd_vjp"))
    got = [jnp.ravel(g)[c] for g, c in zip(e.ours_vjp, e.coords)]
    sampled = sum(len(c) for c in e.coords)
    return e.fd_verdict("fd_vjp", got, list(e.oracle["fd_vjp"]), e.s.names, e.rounding_vjp,
                        f"J^T u at {sampled} input element(s), h = {e.steps_text}",
                        {"u": e.u}, lambda cmp: _relocate(cmp, e.s, e.coords))


def _fd_jvp(e: Evidence) -> CheckRow:
    if e.failed("jvp", "fd_jvp"):
        return error_row("fd_jvp", e.failed("jvp", "fd_jvp"))
    got, want, names = _per_leaf_outputs(e.ours_jvp, e.oracle["fd_jvp"], e.s.names,
                                         e.out_names, 0)
    return e.fd_verdict("fd_jvp", got, want, names, e.rounding_jvp,
                        f"J v for each input's v, h = {e.steps_text}", e.directions)


def _adjoint(e: Evidence) -> CheckRow:
    if e.failed("vjp", "jvp"):
        return error_row("adjoint", e.failed("vjp", "jvp"))
    o, lhs, rhs = e.o, [], []
    for k in range(len(e.s.leaves)):
        jv = _leaves(e.ours_jvp[k][0])
        lhs.append(jnp.asarray(sum(jnp.vdot(a, b) for a, b in zip(_leaves(e.u), jv))))
        rhs.append(jnp.vdot(e.ours_vjp[k], e.v[k]))
    sizes = [abs(float(x)) for x in (*lhs, *rhs)]
    if max(sizes, default=0.0) <= o.atol:  # 0 = 0 would pass whatever the rules say
        return _not_applicable(
            "adjoint", "both sides are 0 in the random directions (J v = 0 and J^T u = 0 at "
            "these inputs), so the test cannot tell the rules apart; choose other "
            "inputs (away from flat regions) to run it")
    scale = max(1.0, *(abs(float(x)) for x in rhs))
    cmp = oracles.compare(lhs, rhs, [f"<u, J v> for {n}" for n in e.s.names],
                          atol=o.atol * scale, rtol=o.rtol)
    return _row("adjoint", cmp, o.atol * scale, o.rtol,
                "got <u, J v> by the JVP rule, expected <J^T u, v> by the VJP rule",
                e.directions)


def _autodiff(side: str) -> Callable[[Evidence], CheckRow]:
    """The check of our ``side`` ("vjp" or "jvp") against JAX's autodiff of the forward code."""
    key = f"autodiff_{side}"

    def run(e: Evidence) -> CheckRow:
        o, plain = e.o, e.oracle[f"plain_{side}"]
        if e.failed(side):
            return error_row(key, e.failed(side))
        if e.failed(f"plain_{side}"):
            return _not_applicable(key, "JAX cannot differentiate the forward computation: "
                                   f"{e.failed(f'plain_{side}')}")
        if side == "vjp":
            want = list(plain)
            cmp = oracles.compare(list(e.ours_vjp), want, e.s.names,
                                  atol=o.atol * e.scale_of(want), rtol=o.rtol)
            return _row(key, cmp, o.atol * e.scale_of(want), o.rtol,
                        "J^T u: ours against jax.vjp of the forward code", {"u": e.u})
        got, want, names = _per_leaf_outputs(e.ours_jvp, plain, e.s.names, e.out_names, 0)
        cmp = oracles.compare(got, want, names, atol=o.atol * e.scale_of(want), rtol=o.rtol)
        return _row(key, cmp, o.atol * e.scale_of(want), o.rtol,
                    "J v: ours against jax.jvp of the forward code", e.directions)

    return run


def _check_grads(rules: str) -> Callable[[Evidence], CheckRow]:
    """jax.test_util.check_grads under our ``rules`` ("vjp" or "jvp")."""
    key = f"check_grads_{rules}"
    return lambda e: (_not_applicable(key, e.fd_why) if e.fd_why else
                      _check_grads_row(key, e.s, e.o, e.f_scale))


def _rule_ran(e: Evidence) -> CheckRow:
    ours = None if e.failed("vjp", "jvp") else (e.ours_vjp, e.ours_jvp)
    return _rule_ran_row(e.s, e.o, e.u, e.v, ours, e.results.get("direct"))


def _linear(e: Evidence) -> CheckRow:
    ours = None if e.failed("jvp") else (None, e.ours_jvp)
    return _linear_rows(e.s, e.o, ours, e.results.get("direct"), e.errors, e.v, e.w)


def _broadcast(e: Evidence) -> CheckRow:
    return _broadcast_row(e.s, e.o, e.seed)


def _kinks(e: Evidence) -> CheckRow:
    return _kinks_row(e.o, e.points, e.point_notes, e.results.get("probes"),
                      e.errors.get("probes"))


def _scales(e: Evidence) -> CheckRow:
    return _scales_row(e.s, e.o, e.u, e.results.get("scales"), e.errors.get("scales"),
                       e.out_names, e.directions)


def _reference(e: Evidence) -> CheckRow:
    return _reference_row(e.s, e.o, e.reference, e.oracle.get("reference"),
                          e.errors.get("reference"), e.value, e.ours_vjp, e.ours_jvp,
                          e.errors, e.out_names, e.directions)


def _size(arrays) -> float:
    """The largest magnitude in ``arrays``, at least 1: what an absolute tolerance scales by."""
    return max([1.0, *(float(np.max(np.abs(np.asarray(a)))) for a in arrays if np.size(a))])


def _fd_meaningless(value, want, rounding: float, atol: float) -> str | None:
    """Why finite differences cannot judge a rule here (the output or the differences not
    finite, or a tolerance, mostly rounding, over a tenth of the derivative), or None."""
    for a in _leaves(value):
        a = np.asarray(a)
        if not np.all(np.isfinite(a)):
            k = int(np.flatnonzero(~np.isfinite(a))[0])
            return (f"the output is not finite at these inputs ({a.flat[k]} at element {k}): "
                    "finite differences cannot judge the rules there")
    if not _finite(*want):
        return ("the finite differences are not finite (the function overflows within a "
                "step of the inputs): they cannot judge the rules there")
    size = max([0.0, *(float(np.max(np.abs(np.asarray(a)))) for a in want if np.size(a))])
    if rounding > 0.5 * atol and atol > 0.1 * size:
        return (f"finite differences cannot resolve the derivative here: their rounding error "
                f"(about {rounding:.2g}) is over a tenth of it ({size:.2g}); the output is too "
                "large for the step")
    return None


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
    scale = max([1.0, *(float(np.max(np.abs(np.asarray(x)))) for x in want if np.size(x))])
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


def _relocate(cmp: oracles.Comparison, s: Subject, coords) -> oracles.Comparison:
    """``where`` of a comparison over sampled coordinates, as the element of the input."""
    m = re.match(r"^(.*)\[(\d+)\]$", cmp.where)
    name = cmp.where if m is None else m.group(1)
    if name not in s.names:
        return cmp
    k = s.names.index(name)
    flat = int(coords[k][int(m.group(2))]) if m is not None else 0
    where = oracles.index_text(name, np.shape(s.leaves[k]), flat)
    return dataclasses.replace(cmp, where=where)


# ------------------------------------------------------------------------- the registry

CHECKS: dict[str, Check] = {c.key: c for c in (
    Check("shapes",
          "each rule's output has its input's (VJP) or the output's (JVP) shape and dtype",
          _shapes),
    Check("fd_vjp", "the VJP rule against central finite differences of <u, f(x)>", _fd_vjp),
    Check("fd_jvp", "the JVP rule against central finite differences along v", _fd_jvp),
    Check("adjoint", "the two rules are transposes of each other: <u, J v> = <J^T u, v>",
          _adjoint),
    Check("autodiff_vjp", "the VJP rule against JAX's autodiff of the forward computation",
          _autodiff("vjp")),
    Check("autodiff_jvp", "the JVP rule against JAX's autodiff of the forward computation",
          _autodiff("jvp")),
    Check("check_grads_jvp",
          "jax.test_util.check_grads to order 2 under our JVP rules (fwd, rev)",
          _check_grads("jvp")),
    Check("check_grads_vjp", "jax.test_util.check_grads to order 2 under our VJP rules (rev)",
          _check_grads("vjp")),
    Check("rule_ran", "our rules ran: each gate's VJP rule in reverse mode, its JVP rule in "
          "forward mode, and no JAX rule", _rule_ran),
    Check("linear", "the JVP rule is linear in its tangent: J(a v + b w) = a J v + b J w",
          _linear),
    Check("broadcast", "broadcast inputs: the rules' gradients are summed back over the copies",
          _broadcast),
    Check("kinks", "at 0, at ties and at the kinks given: both rules agree, and each Jacobian "
          "entry and the derivative along the joint direction are one-sided derivatives",
          _kinks),
    Check("scales", "both rules against finite differences at the inputs times 1e-8 .. 1e4, "
          "the step scaled alike", _scales),
    Check("reference", "values and derivatives against the reference function given",
          _reference),
)}
"""The checks, by key, in the order they run and are reported: adding a check is one
entry here and its function."""
