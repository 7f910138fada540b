"""The sections of ``jaxprop compare``: each returns rows (dicts) for the CSV and tables.

* :func:`width_sweep`: n against m with n * m fixed, so every point has a Jacobian of the
  same size and only its shape changes, from tall (n << m) to wide (n >> m).
* :func:`depth_sweep`: the memory of a deep scalar function's gradient against depth.
* :func:`two_layer_sweep`: the two-layer net's scores w.r.t. x (3072 -> 10) and its loss
  w.r.t. the parameters.
* :func:`cheap_gradient_sweep`: the loss gradient's cost as a multiple of the forward pass,
  and a JVP from two VJPs against a direct JVP.
* :func:`big_jacobian`: the lecture's 256 GB Jacobian, from the compiled VJP of y = x w.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxprop import forward, gates, reverse
from jaxprop.compare import problems
from jaxprop.compare.measure import compile_fn, cost_of, flops_from_analysis, time_interleaved
from jaxprop.compare.pipelines import PIPELINES, jacobian_pipelines

__all__ = [
    "GRADIENT_PROGRAMS",
    "measure_case",
    "max_rel_error",
    "width_sweep",
    "depth_sweep",
    "two_layer_sweep",
    "cheap_gradient_sweep",
    "big_jacobian",
    "crossover",
]

Log = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def max_rel_error(a, b) -> float:
    """max |a - b| over all leaves, relative to the largest |b| (the reference)."""
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    if len(leaves_a) != len(leaves_b):
        return math.inf
    err, scale = 0.0, 0.0
    for x, y in zip(leaves_a, leaves_b, strict=True):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        if x.shape != y.shape:
            return math.inf
        if x.size:
            err = max(err, float(np.max(np.abs(x - y))))
            scale = max(scale, float(np.max(np.abs(y))))
    return err / max(scale, np.finfo(np.float64).tiny)


def measure_case(case: problems.Problem, repeats: int, section: str,
                 reference: str = "reverse-jax", min_sample_s: float = 5e-3) -> list[dict]:
    """Runs one problem's Jacobian through the six pipelines; one row per pipeline.

    Each program is compiled once; XLA's analyses give its FLOPs and memory, the compiled
    program is run for the result (compared with ``reference``) and timed, interleaved with
    the other five.
    """
    fns = jacobian_pipelines(case.fn, case.twin, case.argnums)
    # The first call compiles and caches; lower().compile() then finds the same executable.
    results = {name: jax.block_until_ready(fn(*case.args)) for name, fn in fns.items()}
    compiled = {name: fn.lower(*case.args).compile() for name, fn in fns.items()}
    times = time_interleaved(fns, case.args, repeats, min_sample_s)
    rows = []
    for name, c in compiled.items():
        cost = cost_of(c)
        rows.append({
            "section": section,
            "case": case.name,
            "pipeline": name,
            "mode": PIPELINES[name].mode,
            "n": case.n,
            "m": case.m,
            "n_over_m": case.n / case.m,
            "depth": case.info.get("depth", ""),
            "hidden": case.info.get("hidden", ""),
            "time_s": times[name],
            "flops": cost.flops,
            "temp_bytes": cost.temp_bytes,
            "argument_bytes": cost.argument_bytes,
            "output_bytes": cost.output_bytes,
            "total_bytes": cost.total_bytes,
            "max_rel_err": max_rel_error(results[name], results[reference]),
        })
    return rows


def width_sweep(cfg, seed: int, dtype, repeats: int, log: Log = _stderr,
                min_sample_s: float = 5e-3) -> list[dict]:
    """Chains x [n] -> [m] with n * m = ``cfg.product``, for each n in ``cfg.n``."""
    rows = []
    for n in cfg.n:
        m = cfg.product // n
        log(f"  width: n={n} m={m}")
        case = problems.chain_case(seed + n, n, m, cfg.hidden, cfg.depth, cfg.activation, dtype)
        rows += measure_case(case, repeats, "width", min_sample_s=min_sample_s)
    return rows


def depth_sweep(cfg, seed: int, dtype, repeats: int, log: Log = _stderr,
                min_sample_s: float = 5e-3) -> list[dict]:
    """The gradient of a deep scalar function of ``cfg.inputs`` inputs, for each depth."""
    rows = []
    for depth in cfg.depths:
        log(f"  depth: {depth}")
        case = problems.deep_case(seed + depth, cfg.inputs, cfg.width, depth, cfg.activation,
                                  dtype)
        rows += measure_case(case, repeats, "depth", min_sample_s=min_sample_s)
    return rows


def two_layer_sweep(cfg, seed: int, dtype, repeats: int, log: Log = _stderr,
                    min_sample_s: float = 5e-3) -> list[dict]:
    """The two-layer net: scores [1, C] w.r.t. x [1, D], and the loss w.r.t. the parameters."""
    log(f"  two-layer scores {cfg.input} -> {cfg.classes}")
    scores = problems.two_layer_scores_case(seed, cfg.input, cfg.hidden, cfg.classes, dtype)
    rows = measure_case(scores, repeats, "two_layer", min_sample_s=min_sample_s)
    log(f"  two-layer loss w.r.t. parameters (D={cfg.loss_input}, H={cfg.loss_hidden})")
    loss = problems.two_layer_loss_case(seed + 1, cfg.loss_input, cfg.loss_hidden, cfg.classes,
                                        cfg.batch, cfg.reg, dtype)
    return rows + measure_case(loss, repeats, "two_layer", min_sample_s=min_sample_s)


def _gradient_programs(case: problems.Problem) -> dict[str, Callable]:
    """Programs of ``(params, x, y, v)``: the loss, its gradient four ways, and three JVPs."""
    f, twin = case.fn, case.twin

    def jvp_ours(p, x, y, v):
        return forward.jvp(lambda p: f(p, x, y), (p,), (v,))

    def jvp_two_vjps(p, x, y, v):
        return forward.jvp_from_vjp(lambda p: f(p, x, y), (p,), (v,))

    def jvp_jax(p, x, y, v):
        return jax.jvp(lambda p: twin(p, x, y), (p,), (v,))

    reverse_grad = reverse.grad(f)
    forward_grad = forward.grad(f, chunk_size=None)
    jax_grad = jax.grad(twin)
    jax_fwd_grad = jax.jacfwd(twin)
    return {
        "forward pass": lambda p, x, y, v: f(p, x, y),
        "reverse-ours grad": lambda p, x, y, v: reverse_grad(p, x, y),
        "reverse-jax grad": lambda p, x, y, v: jax_grad(p, x, y),
        "forward-ours grad": lambda p, x, y, v: forward_grad(p, x, y),
        "forward-jax grad": lambda p, x, y, v: jax_fwd_grad(p, x, y),
        "jvp (ours)": jvp_ours,
        "jvp_from_vjp": jvp_two_vjps,
        "jvp (jax)": jvp_jax,
    }


GRADIENT_PROGRAMS: dict[str, dict | None] = {
    "forward pass": None,
    **{f"{name} grad": PIPELINES[name].style
       for name in ("reverse-ours", "reverse-jax", "forward-ours", "forward-jax")},
    "jvp (ours)": dict(color="tab:green", linestyle="-", marker="D"),
    "jvp_from_vjp": PIPELINES["forward-jvp_from_vjp"].style,
    "jvp (jax)": None,
}
"""The programs :func:`cheap_gradient_sweep` measures, with how the figure draws each (None:
not drawn; a gradient as its pipeline). Ratios are to the first, and the ``jvp`` ones also
to ``"jvp (ours)"``."""


def cheap_gradient_sweep(cfg, seed: int, dtype, repeats: int, log: Log = _stderr,
                         programs: tuple[str, ...] = tuple(GRADIENT_PROGRAMS),
                         min_sample_s: float = 5e-3) -> list[dict]:
    """The loss gradient's cost relative to the forward pass, for each hidden width.

    Reverse mode's gradient costs a small constant times the forward pass; forward mode's
    needs one JVP per parameter, so its ratio grows with the parameter count. The rows also
    hold one JVP three ways, to compare ``jvp_from_vjp`` with a direct JVP. ``programs``
    picks a subset of :data:`GRADIENT_PROGRAMS` (it must hold ``"forward pass"`` and
    ``"jvp (ours)"``, the denominators).

    Each row also has ``flops_unoptimized``: XLA's count for the program as JAX emitted it,
    before XLA's simplifications (``jax.jit(f).lower(...).cost_analysis()``).
    """
    unknown = sorted(set(programs) - set(GRADIENT_PROGRAMS))
    if unknown or not {"forward pass", "jvp (ours)"} <= set(programs):
        raise ValueError(f"programs must be among {tuple(GRADIENT_PROGRAMS)} and include "
                         f"'forward pass' and 'jvp (ours)'; got {programs}")
    rows = []
    for hidden in cfg.hiddens:
        log(f"  cheap gradient: H={hidden}")
        rng = np.random.default_rng(seed + hidden)
        case = problems.two_layer_loss_case(rng, cfg.input, hidden, cfg.classes, cfg.batch,
                                            cfg.reg, dtype)
        leaves, tree = jax.tree.flatten(case.args[0])
        # The JVP's direction: a random parameter tangent.
        v = tree.unflatten([jnp.asarray(rng.standard_normal(jnp.shape(a)), dtype)
                            for a in leaves])
        args = (*case.args, v)
        jitted = {name: jax.jit(p) for name, p in _gradient_programs(case).items()
                  if name in programs}
        for p in jitted.values():
            jax.block_until_ready(p(*args))
        lowered = {name: p.lower(*args) for name, p in jitted.items()}
        compiled = {name: lo.compile() for name, lo in lowered.items()}
        times = time_interleaved(jitted, args, repeats, min_sample_s)
        costs = {name: cost_of(c) for name, c in compiled.items()}
        unoptimized = {name: flops_from_analysis(lo.cost_analysis())
                       for name, lo in lowered.items()}
        base, base_t = costs["forward pass"].flops, times["forward pass"]
        jvp, jvp_t = costs["jvp (ours)"].flops, times["jvp (ours)"]
        for name, cost in costs.items():
            is_jvp = name.startswith("jvp")
            rows.append({
                "section": "cheap_gradient",
                "hidden": hidden,
                "params": case.n,
                "program": name,
                "time_s": times[name],
                "flops": cost.flops,
                "flops_unoptimized": unoptimized[name],
                "temp_bytes": cost.temp_bytes,
                "flops_over_forward": cost.flops / base,
                "time_over_forward": times[name] / base_t,
                "flops_over_jvp": cost.flops / jvp if is_jvp else "",
                "unoptimized_flops_over_jvp":
                    unoptimized[name] / unoptimized["jvp (ours)"] if is_jvp else "",
                "time_over_jvp": times[name] / jvp_t if is_jvp else "",
            })
    return rows


def big_jacobian(cfg, dtype, repeats: int, log: Log = _stderr) -> dict:
    """The lecture's "256 GB" Jacobian of y = x w, x [N, D], w [D, M], never formed.

    Compiles the VJP of ``y = x w`` through our matmul rule, ``(x, w, y_bar) -> (x_bar,
    w_bar)``, and reads its memory from XLA: O(ND + DM + NM). Then asks
    ``jaxprop.reverse.jacobian`` and ``jaxprop.forward.jacobian`` for the full Jacobian,
    with abstract shapes only, and records their refusals. With ``cfg.run`` the VJP also
    runs on real arrays and is timed.
    """
    n, d, m = cfg.batch, cfg.input, cfg.output
    itemsize = np.dtype(dtype).itemsize
    log(f"  big Jacobian: N={n} D={d} M={m}")
    x = jax.ShapeDtypeStruct((n, d), dtype)
    w = jax.ShapeDtypeStruct((d, m), dtype)
    y_bar = jax.ShapeDtypeStruct((n, m), dtype)

    def pullback(x, w, y_bar):
        _, vjp_fn = reverse.vjp(gates.matmul, x, w)
        return vjp_fn(y_bar)

    compiled = compile_fn(pullback, x, w, y_bar)
    cost = cost_of(compiled)
    refusals = {}
    for label, jac in (("reverse.jacobian dy/dx", reverse.jacobian(gates.matmul, 0)),
                       ("forward.jacobian dy/dx", forward.jacobian(gates.matmul, 0)),
                       ("reverse.jacobian dy/d(x, w)", reverse.jacobian(gates.matmul, (0, 1))),
                       ("forward.jacobian dy/d(x, w)", forward.jacobian(gates.matmul, (0, 1)))):
        try:
            jac.lower(x, w)
        except MemoryError as err:
            refusals[label] = str(err)
        else:
            refusals[label] = "(not refused: within the budget)"
    result = {
        "N": n, "D": d, "M": m, "dtype": np.dtype(dtype).name,
        "vjp_flops": cost.flops,
        "vjp_temp_bytes": cost.temp_bytes,
        "vjp_argument_bytes": cost.argument_bytes,
        "vjp_output_bytes": cost.output_bytes,
        "vjp_total_bytes": cost.total_bytes,
        "operand_bytes": (n * d + d * m + n * m) * itemsize,
        "jacobian_x_entries": (n * m) * (n * d),
        "jacobian_x_bytes": (n * m) * (n * d) * itemsize,
        "jacobian_xw_entries": (n * m) * (n * d + d * m),
        "jacobian_xw_bytes": (n * m) * (n * d + d * m) * itemsize,
        "refusals": refusals,
        "vjp_time_s": "",
    }
    if cfg.run:
        rng = np.random.default_rng(0)
        args = tuple(jnp.asarray(rng.standard_normal(s.shape), dtype) for s in (x, w, y_bar))
        result["vjp_time_s"] = time_interleaved({"vjp": jax.jit(pullback)}, args,
                                                repeats)["vjp"]
    return result


def crossover(rows: list[dict], forward_name: str, reverse_name: str,
              metric: str = "time_s") -> float | None:
    """The n/m where ``forward_name`` stops being cheaper than ``reverse_name``.

    Interpolates log(forward / reverse) linearly in log(n/m) between the two sweep points
    where it changes sign; ``None`` when it never does.
    """
    def series(name):
        pts = sorted((r["n_over_m"], r[metric]) for r in rows if r["pipeline"] == name)
        return [p[0] for p in pts], [p[1] for p in pts]

    ratios_f, vals_f = series(forward_name)
    ratios_r, vals_r = series(reverse_name)
    if ratios_f != ratios_r or not ratios_f:
        return None
    logs = [math.log(f / r) if f > 0 and r > 0 else math.nan
            for f, r in zip(vals_f, vals_r, strict=True)]
    for i in range(len(logs) - 1):
        a, b = logs[i], logs[i + 1]
        if math.isnan(a) or math.isnan(b):
            continue
        if a == 0:
            return ratios_f[i]
        if (a < 0) != (b < 0) or b == 0:
            t = a / (a - b)
            la, lb = math.log(ratios_f[i]), math.log(ratios_f[i + 1])
            return math.exp(la + t * (lb - la))
    return None
