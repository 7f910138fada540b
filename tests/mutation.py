"""Mutation testing of the gates' rules: break one rule at a time and see what notices.

Each mutant is one standard mistake in one rule of one gate of ``jaxprop.gates.GATES``:

* ``sign``: the rule's result negated (a flipped sign);
* ``double``: the rule's result times 2 (a factor of 2);
* ``drop``: a term left out: the rule gives 0 (the input's term of the sum is dropped); for a
  gate of several outputs (copy, split) only the last output's term is dropped;
* ``eps``: every floating-point residual r read as r + 1e-7 sign(r) (sign(0) = 1): a rule that
  divides by r has an epsilon in its denominator (the issue's square root), one that
  multiplies by r a small error; invisible where |r| >> 0.1 at rtol 1e-6, visible for small r;
* ``not``: every boolean residual negated: a router sends the gradient down the other branch;
* ``perm``: a permutation applied where its inverse belongs (transpose, dot_general's layout
  of each operand's gradient): a mistake only where the permutation is not its own inverse;
* ``swap`` (gate): the two inputs' VJP rules exchanged (mul's x_bar = z_bar * x);
* ``tie`` (gate): a router's other branch at its kink: ``x > y`` for maximum's ``x >= y``,
  ``x >= 0`` for ReLU, the last winner of a reduction for the first, ...; it changes the
  residual the rules read (forward's value is untouched), so both rules move together.

``sign``, ``double`` and ``drop`` are applied to the JVP rules too, the VJP rules unchanged
(an error in the JVP rule alone). A mutant is applied in memory, on the gate object itself
(every reference to it sees it: the registry, the tracer's LIFTS, the cases, the public
functions), and the wiring and jit caches are flushed before and after; nothing is written.

For each mutant, ``jaxprop.check`` runs on each of the gate's cases in ``tests/cases.py``, as
``check_battery`` runs it; a mutant that every check passes then meets the gate's tests (the
tests of TEST_FILES whose names mention the gate or one of its cases), in this process by
``pytest.main``. A mutant is *killed* by the first that fails (a check row, or a test), is
*equivalent* when listed in EQUIVALENT with the reason it changes no derivative, and else
*survives*. The last line is the kill rate::

  python tests/mutation.py --jobs 2              # every gate: 8 CPU-minutes, 10-20 on 2 cores
  python tests/mutation.py --gate sqrt --gate maximum --json out.json
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # run as a script: cases.py sits beside it
    sys.path.insert(0, str(HERE))

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)  # the suite's settings (tests/conftest.py)
jax.config.update("jax_numpy_rank_promotion", "raise")

import jax.numpy as jnp  # noqa: E402
from jax import lax  # noqa: E402

import jaxprop  # noqa: E402
from jaxprop import core, tracer, wiring  # noqa: E402
from jaxprop.gate import Gate  # noqa: E402
from jaxprop.gates import GATES  # noqa: E402
from jaxprop.gates.reductions import _first_winner  # noqa: E402
from jaxprop.gates.windows import _pool_forward  # noqa: E402
from jaxprop.verify import CHECKS  # noqa: E402
from jaxprop.verify.report import PASS  # noqa: E402

EPS = 1e-7
RULE_OPS = ("sign", "double", "drop", "eps", "not", "perm")
JVP_OPS = ("sign", "double", "drop")
GATE_OPS = ("swap", "tie")
OPS = tuple(dict.fromkeys(RULE_OPS + GATE_OPS))

TEST_FILES = ("gates/test_gates.py", "test_properties.py", "verify/test_check.py",
              "test_tracer.py", "gates/test_indexing.py", "test_no_silent_wrong.py",
              "gates/test_scans_sorting.py",
              "gates/test_windows.py", "gates/test_norm.py")
"""The files whose tests a surviving mutant meets (a test holds each to exist)."""

KEYWORDS = {**{name: ("kink", "tie", "router") for name in
               ("maximum", "minimum", "relu", "abs", "max", "min", "select")},
            **{name: ("scatter", "segment", "repeated_index") for name in
               ("scatter", "scatter_add", "scatter_mul", "scatter_max", "scatter_min")},
            **{name: ("running", "stable_sort", "nan") for name in
               ("cummax", "cummin", "sort", "top_k")},
            **{name: ("zeros",) for name in ("prod", "cumprod")}}
KEYWORDS |= {name: ("tie", "pool", "window") for name in
             ("max_pool", "min_pool", "sum_pool", "avg_pool", "select_and_scatter_add",
              "select_and_gather_add")}
"""Words naming a gate's tests beyond its name and its cases' names (the kink conventions)."""

EQUIVALENT: dict[str, str] = {
    "add:swap": "add's two VJP rules are the same function of z_bar (x_bar = y_bar = z_bar): "
                "exchanging them changes nothing",
    "rem:vjp[0]:eps": "rem's rule for x is 1 (x_bar = z_bar): it reads no residual, so an "
                      "epsilon in the residual q = trunc(x/y) changes nothing",
}
"""Mutants that change no derivative, with the reason."""


# ------------------------------------------------------------------------------ operators


def _tree(fn, x):
    return jax.tree.map(fn, x)


def _negate(rule):
    return lambda res, t, **p: _tree(lambda a: -a, rule(res, t, **p))


def _twice(rule):
    return lambda res, t, **p: _tree(lambda a: 2 * a, rule(res, t, **p))


def _drop(rule):
    def mutant(res, t, **p):
        if isinstance(t, tuple):  # a VJP rule of several outputs: the last one's term
            return rule(res, (*t[:-1], jnp.zeros_like(t[-1])), **p)
        out = rule(res, t, **p)
        if isinstance(out, tuple):  # a JVP rule of several outputs
            return (*out[:-1], jnp.zeros_like(out[-1]))
        return _tree(jnp.zeros_like, out)

    return mutant


def _floating(r) -> bool:
    if isinstance(r, float):
        return True
    return hasattr(r, "dtype") and jnp.issubdtype(r.dtype, jnp.floating)


def _is_bool(r) -> bool:
    return hasattr(r, "dtype") and r.dtype == jnp.bool_


def _nudge(r):
    if isinstance(r, float):
        return r + (EPS if r >= 0 else -EPS)
    if _floating(r):
        return r + EPS * jnp.where(r >= 0, 1, -1).astype(r.dtype)
    return r


def _eps(rule):
    return lambda res, t, **p: rule(_tree(_nudge, res), t, **p)


def _not(rule):
    return lambda res, t, **p: rule(_tree(lambda r: ~r if _is_bool(r) else r, res), t, **p)


def _dot_layout(mine: int):
    """The axis order (of operand ``mine``) in which dot_general's rule computes its gradient
    before permuting it back (``linalg._operand_bar``)."""

    def layout(res, dimension_numbers, **_):
        (contract, batch), ndim = dimension_numbers, (res[0].ndim, res[1].ndim)
        my_c, other_c, my_b = contract[mine], contract[1 - mine], batch[mine]
        free = [d for d in range(ndim[mine]) if d not in my_c and d not in my_b]
        paired = [my_c[list(other_c).index(d)] for d in sorted(other_c)]
        return [*my_b, *free, *paired]

    return layout


PERMUTATIONS: dict[tuple[str, int], Callable] = {
    ("transpose", 0): lambda res, perm, **_: list(perm),
    ("dot_general", 0): _dot_layout(0),
    ("dot_general", 1): _dot_layout(1),
}
"""Per gate and input, the permutation L its VJP rule inverts: the rule gives
x_bar = transpose(out, argsort(L)); the mutant gives transpose(out, L)."""


def _uninverted(rule, layout):
    def mutant(res, t, **p):
        order = layout(res, **p)
        return jnp.transpose(jnp.transpose(rule(res, t, **p), order), order)

    return mutant


def _last_argmax(rows, axis=-1):
    return rows.shape[-1] - 1 - jnp.argmax(rows[..., ::-1], axis=-1)


def _last_argmin(rows, axis=-1):
    return rows.shape[-1] - 1 - jnp.argmin(rows[..., ::-1], axis=-1)


def _running_last(scan):
    """A running max's (or min's) forward whose later tie takes the gradient over."""
    def forward(x, *, axis, reverse):
        z = scan(x, axis, reverse)
        iota = lax.broadcasted_iota(jnp.int32, z.shape, axis)
        if reverse:
            return z, lax.cummin(jnp.where(x == z, iota, z.shape[axis] - 1), axis, reverse=True)
        return z, lax.cummax(jnp.where(x == z, iota, 0), axis)

    return forward


TIES: dict[str, Callable] = {
    "cummax": _running_last(lax.cummax),
    "cummin": _running_last(lax.cummin),
    "maximum": lambda x, y: (jnp.maximum(x, y), x > y),
    "minimum": lambda x, y: (jnp.minimum(x, y), x < y),
    "relu": lambda x: (jnp.maximum(x, 0), x >= 0),
    "abs": lambda x: (jnp.abs(x), jnp.where(x > 0, 1, -1).astype(jnp.result_type(x))),
    "max": lambda x, *, axes, shape: (jnp.max(x, axis=axes),
                                             _first_winner(x, axes, _last_argmax)),
    "min": lambda x, *, axes, shape: (jnp.min(x, axis=axes),
                                             _first_winner(x, axes, _last_argmin)),
}
TIES |= {f"{s}_pool": lambda x, s=s, **p: _pool_forward(s, x, last=True, **p)
         for s in ("max", "min")}
"""A router's forward with the other branch at its kink (the value is the same)."""


# ------------------------------------------------------------------------------- mutants


@dataclasses.dataclass(frozen=True)
class Mutant:
    gate: str
    target: str  # "vjp[0]", "jvp[1]" or "gate"
    op: str
    changes: Callable[[Gate], dict]  # gate -> {field: mutated value}

    @property
    def id(self) -> str:
        return f"{self.gate}:{self.op}" if self.target == "gate" else \
            f"{self.gate}:{self.target}:{self.op}"


def _residual_kinds(gate: Gate) -> set[str]:
    """"float" and/or "bool": the kinds of the residuals the gate's forward saves on its first
    case (what ``eps`` and ``not`` can change)."""
    case = next(c for c in _cases(gate) if c.apply is not None)
    seen = []
    forward = gate.forward

    def recording(*xs, **p):
        z, res = forward(*xs, **p)
        seen.extend(jax.tree.leaves(res))
        return z, res

    with _applied(gate, {"forward": recording}):
        jax.eval_shape(lambda *a: case.apply(gate, *a), *case.args())
    return {"float" for r in seen if _floating(r)} | {"bool" for r in seen if _is_bool(r)}


def _with_rule(which: str, i: int, wrap) -> Callable[[Gate], dict]:
    def changes(gate):
        rules = list(getattr(gate, which))
        rules[i] = wrap(rules[i])
        return {which: tuple(rules)}

    return changes


def mutants_of(gate: Gate, ops=OPS) -> list[Mutant]:
    """The gate's mutants, for the operators ``ops`` that apply to it."""
    kinds = _residual_kinds(gate) if {"eps", "not"} & set(ops) else set()
    found = []
    wraps = {"sign": _negate, "double": _twice, "drop": _drop, "eps": _eps, "not": _not}
    for i, rule in enumerate(gate.vjp):
        if rule is None:
            continue
        for op in RULE_OPS:
            if op not in ops or (op == "eps" and "float" not in kinds) or \
                    (op == "not" and "bool" not in kinds) or \
                    (op == "perm" and (gate.name, i) not in PERMUTATIONS):
                continue
            wrap = wraps.get(op) or (lambda r, i=i: _uninverted(r, PERMUTATIONS[gate.name, i]))
            found.append(Mutant(gate.name, f"vjp[{i}]", op, _with_rule("vjp", i, wrap)))
    for i, rule in enumerate(gate.jvp):
        if rule is None:
            continue
        for op in JVP_OPS:
            if op in ops:
                found.append(Mutant(gate.name, f"jvp[{i}]", op,
                                    _with_rule("jvp", i, wraps[op])))
    ruled = [i for i, r in enumerate(gate.vjp) if r is not None]
    if "swap" in ops and len(ruled) == 2:
        a, b = ruled

        def swapped(g, a=a, b=b):
            rules = list(g.vjp)
            rules[a], rules[b] = rules[b], rules[a]
            return {"vjp": tuple(rules)}

        found.append(Mutant(gate.name, "gate", "swap", swapped))
    if "tie" in ops and gate.name in TIES:
        found.append(Mutant(gate.name, "gate", "tie", lambda g: {"forward": TIES[g.name]}))
    return found


# ------------------------------------------------------------------------ applying one


def _flush(gate: Gate) -> None:
    """Forgets everything built from the gate's rules: its wiring, the drivers and the traced
    programs. (``jaxprop.check`` jits fresh functions of its own, so no stale trace can reach
    it; the tests' module-level jits need ``jax.clear_caches``, see ``failing_test``.)"""
    wiring.forget(gate)
    tracer.forget()
    core._DRIVERS.clear()


_JIT_CACHES_HOLD_A_MUTANT = [False]


@contextlib.contextmanager
def _applied(gate: Gate, changes: dict):
    saved = {k: getattr(gate, k) for k in changes}
    for k, v in changes.items():
        object.__setattr__(gate, k, v)
    _flush(gate)
    try:
        yield
    finally:
        for k, v in saved.items():
            object.__setattr__(gate, k, v)
        _flush(gate)
        if _JIT_CACHES_HOLD_A_MUTANT[0]:  # the tests ran: their jits traced the mutant
            jax.clear_caches()
            _JIT_CACHES_HOLD_A_MUTANT[0] = False


@contextlib.contextmanager
def applied(mutant: Mutant):
    """The mutant in place, in memory, while the block runs."""
    gate = GATES[mutant.gate]
    with _applied(gate, mutant.changes(gate)):
        yield


# ------------------------------------------------------------------------------ killers


def _cases(gate: Gate):
    import cases

    return [c for c in cases.GATE_CASES if c.covers == gate.name or c.gate is gate]


def failing_check(gate: Gate) -> str | None:
    """The first of the gate's cases that ``jaxprop.check`` fails, with its failing rows
    (as ``cases.check_battery`` judges: every row ok, adjoint and reference a pass)."""
    import cases

    skip = ("check_grads_jvp", "check_grads_vjp")
    for case in _cases(gate):
        try:
            report = jaxprop.check(case.fn, *case.args(), diff=case.diff, reference=case.ref,
                                   checks=[k for k in CHECKS if k not in skip],
                                   rtol=cases.RTOL, atol=cases.ATOL, fd_atol=cases.FD_ATOL,
                                   fd_step=cases.FD_STEP)
        except Exception as err:  # noqa: BLE001 - a mutant that makes check raise is caught
            return f"check {case.name}: raised {type(err).__name__}"
        rows = [r.key for r in report.rows
                if not r.ok or (r.key in ("adjoint", "reference") and r.status != PASS)]
        if rows:
            return f"check {case.name}: {', '.join(rows)}"
    return None


class _Failures:
    """A pytest plugin that keeps the ids of the tests that failed."""

    def __init__(self):
        self.failed: list[str] = []

    def pytest_runtest_logreport(self, report):
        if report.failed:
            self.failed.append(report.nodeid.split("::", 1)[-1])


def selected_tests(gate: Gate) -> tuple[list[str], str]:
    """The test files and the ``-k`` expression that select the gate's tests."""
    words = [gate.name, *(c.name for c in _cases(gate)), *KEYWORDS.get(gate.name, ())]
    files = [str(HERE / f) for f in TEST_FILES]
    return files, " or ".join(dict.fromkeys(words))


def failing_test(gate: Gate) -> str | None:
    """The first of the gate's tests that fails, run in this process."""
    import pytest

    files, expression = selected_tests(gate)
    jax.clear_caches()  # module-level jits of the tests may hold the original rules
    _JIT_CACHES_HOLD_A_MUTANT[0] = True
    plugin = _Failures()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        pytest.main([*files, "-k", expression, "-x", "-q", "-p", "no:cacheprovider",
                     "-W", "ignore", f"--rootdir={HERE.parent}"], plugins=[plugin])
    return f"test {plugin.failed[0]}" if plugin.failed else None


# ---------------------------------------------------------------------------------- run


def run_mutant(mutant: Mutant, tests: bool = True) -> dict:
    start = time.perf_counter()
    gate = GATES[mutant.gate]
    killer = None
    with applied(mutant):
        try:
            killer = failing_check(gate)
            if killer is None and tests:
                killer = failing_test(gate)
        except Exception as err:  # noqa: BLE001 - a mutant that crashes the run is noticed
            killer = f"raised {type(err).__name__}: {str(err)[:100]}"
    status = "killed" if killer else "equivalent" if mutant.id in EQUIVALENT else "survived"
    return {"id": mutant.id, "gate": mutant.gate, "target": mutant.target, "op": mutant.op,
            "status": status, "killed_by": killer, "reason": EQUIVALENT.get(mutant.id),
            "seconds": round(time.perf_counter() - start, 2)}


def run_gate(name: str, ops=OPS, tests: bool = True, only=()) -> list[dict]:
    start = time.perf_counter()
    results = [run_mutant(m, tests) for m in mutants_of(GATES[name], ops)
               if not only or m.id in only]
    print(f"# {name}: {len(results)} mutants in {time.perf_counter() - start:.0f} s",
          file=sys.stderr, flush=True)
    return results


def _worker(job):
    name, ops, tests, only = job
    return name, run_gate(name, ops, tests, only)


def _report(results: dict[str, list[dict]], out) -> str:
    total = [r for rs in results.values() for r in rs]
    for name, rs in results.items():
        counts = {s: sum(r["status"] == s for r in rs) for s in ("killed", "equivalent",
                                                                "survived")}
        print(f"{name}: {len(rs)} mutants, {counts['killed']} killed"
              + "".join(f", {n} {s}" for s, n in counts.items() if s != "killed" and n),
              file=out)
        for r in rs:
            what = r["killed_by"] or r["reason"] or "nothing failed"
            print(f"  {r['status']:<10} {r['id']:<28} {what}", file=out)
    killed = sum(r["status"] == "killed" for r in total)
    equivalent = sum(r["status"] == "equivalent" for r in total)
    survived = len(total) - killed - equivalent
    rate = 100.0 * killed / len(total) if total else 0.0
    line = f"killed {killed} of {len(total)} mutants ({rate:.1f}%); {equivalent} equivalent"
    line += ", listed above" if not survived else f"; {survived} survived, listed above"
    return line


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gate", action="append", choices=sorted(GATES), metavar="NAME",
                        help="a gate to mutate (repeat it; default: every gate)")
    parser.add_argument("--op", action="append", choices=OPS,
                        help="an operator to apply (repeat it; default: all)")
    parser.add_argument("--mutant", action="append", metavar="ID",
                        help="only this mutant, e.g. sqrt:vjp[0]:eps (repeat it)")
    parser.add_argument("--no-tests", action="store_true",
                        help="judge by jaxprop.check alone (the tests are not run)")
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON ('-': stdout)")
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 when a mutant survives (is neither killed nor equivalent)")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    args = parser.parse_args(argv)
    only = tuple(args.mutant or ())
    names = args.gate or list(dict.fromkeys(m.split(":")[0] for m in only)) or list(GATES)
    unknown = [n for n in names if n not in GATES]
    if unknown:
        parser.error(f"--mutant names unknown gate(s) {unknown}")
    ops = tuple(args.op or OPS)
    start = time.perf_counter()
    if args.jobs > 1:
        import multiprocessing

        with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
            done = dict(pool.imap_unordered(_worker, [(n, ops, not args.no_tests, only)
                                                      for n in names]))
        results = {n: done[n] for n in names}
    else:
        results = {n: run_gate(n, ops, not args.no_tests, only) for n in names}
    out = sys.stderr if args.json == "-" else sys.stdout
    line = _report(results, out)
    if args.json:
        text = json.dumps({"results": results, "summary": line,
                           "seconds": round(time.perf_counter() - start, 1)}, indent=1)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
    print(f"({time.perf_counter() - start:.0f} s, {os.cpu_count()} cores)", file=out)
    print(line, file=out)
    survived = any(r["status"] == "survived" for rs in results.values() for r in rs)
    return 1 if args.strict and survived else 0


if __name__ == "__main__":
    sys.exit(main())
