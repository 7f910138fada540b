"""``explain(f, *args)``: one row per gate application, upstream x local = downstream.

The rows come in execution order, the order the gates ran forward. In reverse mode the rules
ran the other way, from the output back; each row still shows what its rule saw: the
upstream gradient z_bar that arrived, the local gradient as the lecture states it, and the
downstream gradients x_bar it sent on.

Fan-out: when one value feeds several gates, its gradient is the sum of the branches' ("
gradients add at branches"). An explicit ``jaxprop.gates.copy`` is a row of its own. For an
implicit branch (the same value given to two gates, or twice to one, where JAX sums the
cotangents), explain adds a synthetic ``branch`` row, labelled *adder*, just before the
value's first use: its upstream holds each branch's gradient and its downstream their sum,
the number JAX really used (the producer's upstream, or the input's gradient).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxprop.explainer import capture, describe, fmt
from jaxprop.tracer import ScanSteps


@dataclasses.dataclass(frozen=True)
class Row:
    """One gate application.

    Attributes:
      step: 1-based position in execution order.
      gate: the gate's name (``"mul"``); ``"branch"`` for an implicit fan-out.
      pattern: the lecture's name for its backward behaviour (see ``patterns``).
      detail: what the values add to the pattern, e.g. ``"passes 2 of 4 (where x > 0)"``.
      symbol: its label on the circuit (``"*-1"``).
      input_names: the name of each input (``"x"``, ``"s1"``, or a constant ``"-1"``).
      inputs: each input's value, a NumPy array (or the Python constant).
      output_names: the names of its outputs (two for copy and for a branch of two).
      outputs: its output value; a tuple for copy.
      upstream: reverse mode: z_bar, the gradient arriving from the output side (a tuple
        for copy). Forward mode: one tangent per input (``None`` for a constant or a zero).
      local: the local gradient as the lecture states it, with the values the gate's rule
        computed (``"dz/dx = y = -4"``).
      downstream: reverse mode: one x_bar per input (``None`` where none flows). Forward
        mode: the output tangent.
      synthetic: True for an implicit branch row that no gate wrote.
      local_values: per input, what the gate's own rule computes as its local gradient
        (VJP rule in reverse mode, JVP rule in forward mode): the diagonal of the local
        Jacobian for an elementwise gate (so ``downstream = local * upstream``, summed over
        the broadcast copies), the local Jacobian [output size, input size] of a small
        other gate (``downstream = J^T upstream``), or None (a constant, no rule, too big).
      elementwise: whether ``local_values`` are diagonals.
    """

    step: int
    gate: str
    pattern: str
    detail: str
    symbol: str
    input_names: tuple[str, ...]
    inputs: tuple
    output_names: tuple[str, ...]
    outputs: Any
    upstream: Any
    local: str
    downstream: Any
    synthetic: bool = False
    local_values: tuple = ()
    elementwise: bool = False

    @property
    def tangents_in(self):
        """Forward mode's name for ``upstream``: the input tangents."""
        return self.upstream

    @property
    def tangent_out(self):
        """Forward mode's name for ``downstream``: the output tangent."""
        return self.downstream


@dataclasses.dataclass(frozen=True)
class Edge:
    """One wire of the circuit: a value from ``src`` into input ``slot`` of ``dst``.

    ``grad`` is the gradient that flows back along it (reverse) or its tangent (forward).
    Node names: ``"in:<name>"``, ``"gate:<step>"``, ``"out:<k>"``.
    """

    src: str
    dst: str
    slot: int
    name: str
    value: Any
    grad: Any


@dataclasses.dataclass(frozen=True, repr=False)
class Trace:
    """What :func:`explain` found: rows, the circuit, and the pipeline's own results.

    Attributes:
      mode: ``"reverse"`` or ``"forward"``.
      rows: one :class:`Row` per gate application, in execution order.
      output: f's value.
      grads: one gradient per positional argument (``None`` for a non-float argument).
        Reverse mode: the pullback of ``upstream``. Forward mode with the basis pushed:
        column j of the Jacobian is df/dx_j, for scalar f; otherwise ``None``.
      output_tangent: forward mode: the output tangent (with the basis pushed, one per
        input element along a leading axis). ``None`` in reverse mode.
      upstream: reverse mode: the gradient pulled back from the output (ones by default).
      inputs: names of the input leaves, in argument order.
      differentiated: names of the differentiated input leaves, in the order of the
        forward-mode basis.
      edges: the circuit's wires, for :meth:`render`.
      basis: forward mode pushed the standard basis (one tangent column per input element).
    """

    mode: str
    rows: list[Row]
    output: Any
    grads: tuple | None
    output_tangent: Any
    upstream: Any
    inputs: tuple[str, ...]
    differentiated: tuple[str, ...]
    edges: tuple[Edge, ...]
    basis: bool = False
    title: str = ""

    def to_table(self):
        """The rows as a ``rich.table.Table`` (print it with ``rich.print``)."""
        from jaxprop.explainer import table

        return table.build(self)

    def __str__(self) -> str:
        from jaxprop.explainer import table

        return table.to_text(self)

    def __repr__(self) -> str:
        gates = sum(not r.synthetic for r in self.rows)
        return (f"<jaxprop.Trace {self.title or self.mode + ' mode'}: {gates} gate(s), inputs "
                f"{', '.join(self.inputs)}; print() it for the table, .render(path) for the "
                "circuit>")

    def _repr_pretty_(self, printer, cycle) -> None:
        printer.text(str(self))

    def _repr_html_(self) -> str:
        """Jupyter's view: the table, then the circuit."""
        from jaxprop.explainer import render, table

        circuit = render.svg(self)
        return table.to_html(self) + circuit[circuit.find("<svg"):]

    def _repr_svg_(self) -> str:
        """The circuit as SVG (what Jupyter shows for an SVG-only view)."""
        from jaxprop.explainer import render

        return render.svg(self)

    def render(self, path: str | Path) -> Path:
        """Draws the circuit like the slides, to ``.svg`` or ``.png`` by the path's suffix.

        Gates are nodes labelled with their name and pattern; each wire carries its forward
        value above it (green) and its gradient below it (red; blue tangents in forward mode).
        Returns the path written.
        """
        from jaxprop.explainer import render

        return render.render(self, Path(path))


def explain(f: Callable, *args, mode: str = "reverse", upstream=None, tangents=None,
            max_basis: int | None = capture.DEFAULT_MAX_BASIS, title: str = "",
            allow_jax_rules: bool = False,
            scan_steps: int = capture.DEFAULT_SCAN_STEPS) -> Trace:
    """Runs f in the jitted pipeline and explains every gate: upstream x local = downstream.

    Tracing changes no number: the output and gradients come from the same jitted program
    that ``jaxprop.reverse.grad`` (or ``jaxprop.forward``) compiles, which also returns the
    values each rule saw.

    Args:
      f: a function in plain JAX, built from ``jaxprop.gates``, or both (it is traced into
        gates, nested ``jax.jit`` calls opened).
      *args: example arguments; every floating-point argument is differentiated, the
        others (integer labels) are held fixed.
      mode: ``"reverse"`` (the backward pass, through the VJP rules) or ``"forward"``
        (tangents pushed through the JVP rules).
      upstream: reverse mode: the gradient dL/d out to pull back, shaped like f's output
        (ones by default, so a scalar f gives its gradient).
      tangents: forward mode: one tangent per floating-point argument. By default forward
        mode pushes every standard basis vector at once, so each tangent has a leading axis
        with one entry per input element, and a scalar f gets its full gradient.
      max_basis: refuse to push more basis vectors than this (``None``: no limit).
      allow_jax_rules: let JAX's own rule differentiate an operation no gate stands for
        (see ``jaxprop.gated``); its row says "JAX's rule".
      title: a caption for the table and the picture.
      scan_steps: each ``lax.scan`` shows its body's gates for this many first steps (rows
        labelled ``tanh [t=0]``), the carry's gradient passing from step to step, then one
        summary row for the remaining steps.

    Returns:
      The :class:`Trace`.

    For example::

      trace = explain(lambda x, y, z: gates.mul(gates.add(x, y), z), -2.0, 5.0, -4.0)
      trace.rows[0].downstream   # (-4, -4): the add gate distributes
      trace.render("simple.svg")
    """
    if not callable(f):
        raise TypeError(f"explain: f must be callable, got {type(f).__name__}")
    if not args:
        raise ValueError("explain: give f's example arguments, e.g. explain(f, -2.0, 5.0)")
    try:
        inspect.signature(f).bind(*args)
    except TypeError as err:
        raise TypeError(f"explain: f cannot take the {len(args)} arguments given: {err}") from None
    except ValueError:  # no signature (a builtin): let the call itself complain
        pass
    cap = capture.run(f, args, mode, upstream=upstream, tangents=tangents,
                      max_basis=max_basis, allow_jax_rules=allow_jax_rules,
                      scan_steps=scan_steps)
    return _build(cap, _arg_names(f, len(args)), args, title)


def _arg_names(f: Callable, n: int) -> list[str]:
    try:
        params = [p for p in inspect.signature(f).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    names = [p.name for p in params[:n]]
    return names + [f"arg{i}" for i in range(len(names), n)]


def _leaf_names(arg_names: list[str], args: tuple) -> list[list[str]]:
    out = []
    for name, arg in zip(arg_names, args, strict=False):
        paths = jax.tree_util.tree_flatten_with_path(arg)[0]
        if len(paths) == 1 and not paths[0][0]:
            out.append([name])
            continue
        out.append([_key_name(path[-1]) if path else name for path, _ in paths])
    flat = [n for names in out for n in names]
    if len(set(flat)) < len(flat):  # two arguments with a leaf of one name: prefix the argument
        out = [[n if n == name else f"{name}.{n}" for n in names]
               for name, names in zip(arg_names, out, strict=True)]
    return out


def _key_name(key) -> str:
    for attr in ("key", "idx", "name"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


@dataclasses.dataclass
class _Value:
    name: str
    node: str
    value: Any
    total: Any  # reverse: its whole gradient; forward: its tangent
    consumers: list = dataclasses.field(default_factory=list)  # (app index or "out:k", slot)


def _leaf(x, k: int):
    return x[k] if isinstance(x, tuple) else x


def _build(cap: capture.Capture, arg_names: list[str], args: tuple, title: str) -> Trace:
    reverse = cap.mode == "reverse"
    values: dict[int, _Value] = {}
    leaf_names = _leaf_names(arg_names, args)
    input_names, differentiated = [], []
    for i, (ids, names) in enumerate(zip(cap.arg_leaf_ids, leaf_names, strict=False)):
        arg_leaves = jax.tree.leaves(args[i])
        grads = (jax.tree.leaves(cap.grads[i]) if reverse and cap.grads[i] is not None
                 else None)
        tangents = None if reverse else cap.arg_tangents[i]
        for k, (leaf_id, name) in enumerate(zip(ids, names, strict=False)):
            total = (grads[k] if grads is not None else None) if reverse else (
                tangents[k] if tangents is not None else None)
            values[leaf_id] = _Value(name, f"in:{name}", np.asarray(arg_leaves[k]), total)
            input_names.append(name)
            if (cap.grads if reverse else cap.arg_tangents)[i] is not None:
                differentiated.append(name)

    n_external = 0
    for a, app in enumerate(cap.applications):
        for slot, (vid, const) in enumerate(zip(app.input_ids, app.consts, strict=False)):
            if const is not None:
                continue
            if vid not in values:  # a constant array, or a value made by a non-gate op
                taken = {v.name for v in values.values()}
                name = f"c{n_external + 1}"
                while name in taken:
                    n_external += 1
                    name = f"c{n_external + 1}"
                n_external += 1
                values[vid] = _Value(name, f"in:{name}", np.asarray(app.inputs[slot]), None)
            values[vid].consumers.append((a, slot))
        n_out = len(app.output_ids)
        label = _label(app, values, {v.name for v in values.values()})
        for k, vid in enumerate(app.output_ids):
            name = label or (f"s{a + 1}" if n_out == 1 else f"s{a + 1}{'abcdefgh'[k]}")
            if reverse:
                total = None if app.upstream is None else _leaf(app.upstream, k)
            else:
                total = None if app.downstream is None else _leaf(app.downstream, k)
            values[vid] = _Value(name, f"gate:{a}", _leaf(app.outputs, k), total)
    out_leaves = jax.tree.leaves(cap.output)
    seeds = jax.tree.leaves(cap.seed) if reverse else [None] * len(out_leaves)
    for k, vid in enumerate(cap.out_leaf_ids):
        if vid in values:
            values[vid].consumers.append((f"out:{k}", 0))

    def branch_grad(consumer):
        a, slot = consumer
        if isinstance(a, str):
            return seeds[int(a.split(":")[1])]
        down = cap.applications[a].downstream
        return None if down is None else down[slot]

    # Rows in execution order, with an implicit branch row before a fanned-out value's first use.
    rows_spec: list[tuple] = []
    branch_before: dict[int, list[_Value]] = {}
    for v in values.values():
        if len(v.consumers) > 1:
            first = min((c[0] for c in v.consumers if not isinstance(c[0], str)), default=None)
            if first is not None:
                branch_before.setdefault(first, []).append(v)
    for a in range(len(cap.applications)):
        for v in branch_before.get(a, []):
            rows_spec.append(("branch", v))
        rows_spec.append(("gate", a))

    step_of_app: dict[int, int] = {}
    branch_node: dict[int, str] = {}
    rows: list[Row] = []
    for step, (kind, item) in enumerate(rows_spec, start=1):
        if kind == "gate":
            step_of_app[item] = step
            rows.append(_gate_row(step, cap.applications[item], values, reverse))
        else:
            v = item
            branch_node[id(v)] = f"gate:{step}"
            desc = describe.implicit_copy(v.name, len(v.consumers), cap.mode)
            n = len(v.consumers)
            outs = tuple(f"{v.name}.{j + 1}" for j in range(n))
            if reverse:
                upstream = tuple(branch_grad(c) for c in v.consumers)
                total = v.total if v.total is not None else _sum(upstream)
                downstream = (total,)
            else:
                upstream = (v.total,)
                downstream = tuple(v.total for _ in range(n))
            rows.append(Row(step, "branch", desc.pattern, desc.detail, desc.symbol, (v.name,),
                            (v.value,), outs, tuple(v.value for _ in range(n)), upstream,
                            desc.local, downstream, synthetic=True))

    # The circuit's wires, with gate nodes named by their row's step.
    def node_of(v: _Value) -> str:
        if v.node.startswith("gate:"):
            return f"gate:{step_of_app[int(v.node.split(':')[1])]}"
        return v.node

    edges = []
    for v in values.values():
        if not v.consumers:
            continue
        src = node_of(v)
        if id(v) in branch_node:
            bnode = branch_node[id(v)]
            edges.append(Edge(src, bnode, 0, v.name, v.value, v.total))
            src = bnode
        for c in v.consumers:
            dst = c[0] if isinstance(c[0], str) else f"gate:{step_of_app[c[0]]}"
            grad = branch_grad(c) if reverse else v.total
            edges.append(Edge(src, dst, c[1], v.name, v.value, grad))
    return Trace(cap.mode, rows, cap.output, cap.grads, cap.output_tangent, cap.seed,
                 tuple(input_names), tuple(differentiated), tuple(edges), cap.basis, title)


def _label(app: capture.Application, values: dict, taken: set) -> str | None:
    """The gate's own name for its one output (``w[0]`` for a slice of w), made unique."""
    label = getattr(app.gate, "label", None)
    if label is None or len(app.output_ids) != 1:
        return None
    names = tuple(fmt.number(c) if c is not None else values[vid].name if vid in values
                  else "?" for vid, c in zip(app.input_ids, app.consts, strict=False))
    name = label(names, **app.params)
    while name in taken:
        name += "'"
    return name


def _gate_row(step: int, app: capture.Application, values: dict, reverse: bool) -> Row:
    row = _plain_gate_row(step, app, values, reverse)
    if app.step is not None and isinstance(app.gate, ScanSteps):  # a loop in a loop's step
        row = dataclasses.replace(row, gate=row.gate.replace("[", f"[{app.step},", 1))
    elif app.step is not None:
        row = dataclasses.replace(row, gate=f"{row.gate} [{app.step}]")
    return row


def _plain_gate_row(step: int, app: capture.Application, values: dict, reverse: bool) -> Row:
    names = tuple(fmt.number(c) if c is not None else values[vid].name
                  for vid, c in zip(app.input_ids, app.consts, strict=False))
    out_names = tuple(values[vid].name for vid in app.output_ids)
    if isinstance(app.gate, ScanSteps):
        g = app.gate
        flow = ("the carry's gradient in (its upstream) and out (downstream), through the "
                "steps' VJP rules" if reverse else "")
        span = f"{g.first}..{g.last}" if g.count > 1 else f"{g.first}"
        times = f"{g.count} more times" if g.count > 1 else "once more"
        return Row(step, f"scan [t={span}]", "loop steps",
                   f"step{'s' if g.count > 1 else ''} {span}: the same gates, {times} "
                   f"(at {g.line}){'; ' + flow if flow else ''}", g.symbol, names, app.inputs,
                   out_names, app.outputs, app.upstream, "the same gates, step by step",
                   app.downstream)
    if app.jax_rule:
        return Row(step, app.gate.name, "JAX's rule",
                   "no gate stands for it: JAX differentiated it with its own rule "
                   "(allow_jax_rules=True)", app.gate.name, names, app.inputs, out_names,
                   app.outputs, None, "JAX's own rule", None)
    if app.own_rule:
        rule = app.gate
        return Row(step, rule.name, f"its own {rule.kind} rule",
                   f"a jax.{rule.kind} function (at {rule.line}): JAX differentiated it with "
                   "its own rule, as jax.grad does", rule.name, names, app.inputs, out_names,
                   app.outputs, None, f"{rule.name}'s own rule", None)
    local = tuple(None if v is None else np.asarray(v) for v in app.local)
    desc = describe.describe(app.gate, app.consts, app.inputs, app.outputs, local, names,
                             out_names[0] if len(out_names) == 1 else "z",
                             mode="reverse" if reverse else "forward")
    detail = desc.detail
    if all(c is not None for c in app.consts):
        detail = "all inputs are constants: " + ("no gradient" if reverse else "zero tangent")
    elif not app.differentiated and reverse:
        detail = ("its rule never ran, no gradient: no differentiated input reaches it, "
                  "or its output is unused or under stop_gradient")
    elif not app.differentiated:
        detail = "no input is differentiated: zero tangent"
    return Row(step, app.gate.name, desc.pattern, detail, desc.symbol, names, app.inputs,
               out_names, app.outputs, app.upstream, desc.local, app.downstream,
               local_values=local, elementwise=app.gate.elementwise)


def _sum(parts):
    parts = [np.asarray(p) for p in parts if p is not None]
    return sum(parts[1:], parts[0]) if parts else None
