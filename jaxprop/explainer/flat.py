"""The backward pass as flat code: the lecture's summary slide, written for any function.

``jaxprop.flat(f, *args)`` runs f once through its gates (``jaxprop.gated``) and writes its
forward pass and its backward pass as plain Python, one line per gate::

    s0 = w0 * x0                       grad_L = 1.0
    ...                                grad_s3 = grad_L * (1 - L) * L
    L = lax.logistic(s3)               ...

Every line is generated from the gate that ran: the forward line from the gate's ``forward``
(its output expression, parameters replaced by the variables' names), each backward line
from the gate's own VJP rule (``z_bar`` replaced by the output's gradient, the residuals by
the values they name), so a wrong rule reads wrong and computes wrong. A value used twice
gets ``+=``: at a copy the gradients add. ``mode="forward"`` writes the tangent code
(``x_dot`` lines) from the JVP rules instead.

Names come from the user's source: the assignment target on the line an operation came
from, else the lecture's ``s0, s1, ...``. An operation JAX differentiated with its own rule
(``allow_jax_rules=True``) is a call of ``jax.vjp`` (or ``jax.jvp``) on that one operation,
marked in a comment. Values computed from non-differentiated inputs that are not inputs
themselves (a one-hot of the labels, say) are baked in as constants.
"""

from __future__ import annotations

import ast
import dataclasses
import html
import inspect
import linecache
import os
import re
import sys
import types
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxprop import gate as gate_mod
from jaxprop import tracer
from jaxprop.events import observe
from jaxprop.gate import Gate, is_constant

MODES = ("reverse", "forward")
_INLINE_CONST = 16  # constants with at most this many elements are written as literals
_SKIP_DIRS = tuple(os.path.dirname(m.__file__) + os.sep for m in (jax,)) + (
    os.sep + "jaxlib" + os.sep,)
_OWN_FILES = (tracer.__file__, gate_mod.__file__,
              os.path.join(os.path.dirname(tracer.__file__), "wiring.py"),
              os.path.join(os.path.dirname(tracer.__file__), "gates") + os.sep)


@dataclasses.dataclass
class FlatCode:
    """The flat code of one function: ``text`` is Python source defining ``name``.

    ``compile()`` returns that function: in reverse mode ``fn(*args) -> (value, grads)``,
    one gradient per floating-point argument; in forward mode
    ``fn(*args, *tangents) -> (value, value_dot)``, one tangent per floating-point argument.
    """

    text: str
    name: str
    mode: str
    namespace: dict = dataclasses.field(default_factory=dict, repr=False)

    def compile(self) -> Callable:
        ns = dict(self.namespace)
        exec(compile(self.text, f"<jaxprop.flat {self.name}>", "exec"), ns)  # noqa: S102
        fn = ns[self.name]

        def run(*args):  # the code broadcasts ranks as NumPy does (b1 added to x @ W1)
            with jax.numpy_rank_promotion("allow"):
                return fn(*args)

        run.__name__ = self.name
        return run

    def __str__(self) -> str:
        return self.text

    def _repr_markdown_(self) -> str:
        return "```python\n" + self.text + "```\n"

    def _repr_html_(self) -> str:
        try:
            from pygments import highlight
            from pygments.formatters import HtmlFormatter
            from pygments.lexers import PythonLexer
        except ImportError:
            return f"<pre><code>{html.escape(self.text)}</code></pre>"
        return highlight(self.text, PythonLexer(), HtmlFormatter(noclasses=True))

    def write(self, path: str, overwrite: bool = False) -> None:
        """Writes the code to ``path`` (a ``.py`` file); an existing file only if told."""
        if os.path.exists(path) and not overwrite:
            raise FileExistsError(f"flat: {path} exists; pass overwrite=True to replace it")
        with open(path, "w") as fh:
            fh.write(self.text)


@dataclasses.dataclass
class _App:
    gate: Any
    inputs: tuple
    outputs: tuple
    params: dict
    op: Any
    kind: str


class _Writer:
    """Collects names, imports and the lines of the code."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.names: dict[int, str] = {}  # id of a value -> its variable
        self.used: set[str] = {"jnp", "jax", "lax", "np"}
        self.imports: dict[str, str] = {"jax": "import jax", "jnp": "import jax.numpy as jnp"}
        self.namespace: dict[str, Any] = {}
        self.given: list[str] = []  # names compile() provides (not importable)
        self.counter = 0
        self.consts: list[str] = []
        self.shapes: dict[str, tuple] = {}  # variable -> shape

    def fresh(self, base: str | None) -> str:
        if base is None or not base.isidentifier():
            while f"s{self.counter}" in self.used:
                self.counter += 1
            base = f"s{self.counter}"
        name, k = base, 1
        while name in self.used:
            name, k = f"{base}_{k}", k + 1
        self.used.add(name)
        return name

    def provide(self, obj, hint: str) -> str:
        """A name for ``obj`` in the code: imported where it can be, else given by compile()."""
        for name, value in self.namespace.items():
            if value is obj:
                return name
        name = self.fresh("_" + hint.strip("_"))
        self.namespace[name] = obj
        self.given.append(name)
        return name

    def global_name(self, name: str, obj) -> str:
        """``name`` as the rule's module knows it (``jnp``, ``lax``, ``_scatter_back``): an
        import line, or a value compile() provides."""
        if name in self.imports:
            return name
        if isinstance(obj, types.ModuleType):
            mod = obj.__name__
            if "." in mod and mod.rsplit(".", 1)[1] == name:
                self.imports[name] = f"from {mod.rsplit('.', 1)[0]} import {name}"
            else:
                self.imports[name] = f"import {mod}" + ("" if mod == name else f" as {name}")
            self.used.add(name)
            return name
        mod = getattr(obj, "__module__", None)
        if mod and getattr(sys.modules.get(mod), name, None) is obj and name not in self.used:
            self.imports[name] = f"from {mod} import {name}"
            self.used.add(name)
            return name
        if name in ("True", "False", "None") or name in dir(__builtins__ if isinstance(
                __builtins__, dict) else __builtins__):
            return name
        return self.provide(obj, name)


def _literal(value, w: _Writer) -> ast.expr:
    """A static parameter or constant as an expression of the code."""
    if isinstance(value, np.dtype) or (isinstance(value, type) and issubclass(value, np.generic)):
        return ast.parse(f"jnp.dtype({np.dtype(value).name!r})", mode="eval").body
    if isinstance(value, (bool, int, float, str, type(None))):
        return ast.Constant(value)
    if type(value) in (tuple, list):
        elts = [_literal(v, w) for v in value]
        if isinstance(value, tuple):
            return ast.Tuple(elts, ast.Load())
        return ast.List(elts, ast.Load())
    if isinstance(value, (np.ndarray, jax.Array, np.generic)):
        arr = np.asarray(value)
        if arr.size <= _INLINE_CONST and arr.dtype.kind in "biuf":
            return ast.parse(f"jnp.asarray({arr.tolist()!r}, jnp.{arr.dtype.name})",
                             mode="eval").body
    if isinstance(value, np.ndarray):
        value = jnp.asarray(value)
    return ast.Name(w.provide(value, "c"), ast.Load())


class _Subst(ast.NodeTransformer):
    """Replaces a rule's parameter names (and ``res.field``) by expressions of the code."""

    def __init__(self, mapping: dict[str, ast.expr], fields: dict[tuple[str, str], ast.expr],
                 globals_: dict, w: _Writer):
        self.mapping, self.fields, self.globals, self.w = mapping, fields, globals_, w

    def visit_Attribute(self, node):
        if isinstance(node.value, ast.Name) and (node.value.id, node.attr) in self.fields:
            return self.fields[(node.value.id, node.attr)]
        return self.generic_visit(node)

    def visit_Call(self, node):
        node = self.generic_visit(node)
        if (isinstance(node.func, ast.Name) and node.func.id == "_rows" and len(node.args) == 1
                and isinstance(node.args[0], ast.Name)
                and len(self.w.shapes.get(node.args[0].id, ())) == 2):
            return node.args[0]  # _rows of a matrix is the matrix: x.T @ dz, as a person writes
        return node

    def visit_Name(self, node):
        if node.id in self.mapping:
            return self.mapping[node.id]
        if node.id in self.globals:
            return ast.Name(self.w.global_name(node.id, self.globals[node.id]), ast.Load())
        return node


def _lambda(fn) -> tuple[ast.expr, list[str]] | None:
    """A lambda's body as an expression and its parameter names; None for anything that
    cannot be written inline (a named function, a closure)."""
    code = getattr(fn, "__code__", None)
    if code is None or code.co_name != "<lambda>" or code.co_freevars or code.co_flags & (
            inspect.CO_VARARGS | inspect.CO_VARKEYWORDS):
        return None
    try:
        body = ast.parse(gate_mod.rule_text(fn), mode="eval").body
    except (SyntaxError, ValueError, OSError):
        return None
    params = list(code.co_varnames[:code.co_argcount + code.co_kwonlyargcount])
    return body, params


def _expr(fn, args: list[ast.expr], params: dict, w: _Writer,
          fields: dict | None = None) -> ast.expr | None:
    """``fn(*args, **params)`` written as ``fn``'s own lambda body, or None."""
    found = _lambda(fn)
    if found is None:
        return None
    body, names = found
    mapping = dict(zip(names, args))
    for k, v in params.items():
        mapping[k] = _literal(v, w)
    if len(mapping) < len(names):
        return None
    import copy
    return _Subst(mapping, fields or {}, fn.__globals__, w).visit(copy.deepcopy(body))


def _call(fn_name: str, args: list[ast.expr], params: dict, w: _Writer) -> ast.expr:
    return ast.Call(ast.parse(fn_name, mode="eval").body, list(args),
                    [ast.keyword(k, _literal(v, w)) for k, v in params.items()])


def _gate_ref(gate, w: _Writer) -> str:
    """The gate as the code names it: imported from jaxprop.gates where it lives there."""
    from jaxprop import gates

    for mod_name in (*(f"jaxprop.gates.{m}" for m in getattr(gates, "_MODULES", ())),
                     "jaxprop.losses", "jaxprop.models"):
        mod = sys.modules.get(mod_name)
        for name, value in vars(mod or types.ModuleType("x")).items():
            if value is gate:
                return w.global_name(name, value) if name not in w.used else w.provide(gate, name)
    return w.provide(gate, gate.name)


def _user_name(op) -> str | None:
    """The assignment target on the user's line the operation came from, if one."""
    if op is None:
        return None
    for eqn in (op.eqn, *op.sites):
        tb = getattr(eqn.source_info, "traceback", None)
        for frame in getattr(tb, "frames", None) or []:
            f = frame.file_name
            if any(s in f for s in _SKIP_DIRS) or any(f.startswith(o) for o in _OWN_FILES):
                continue
            line = linecache.getline(f, frame.line_num).strip()
            try:
                stmt = ast.parse(line).body[0]
            except (SyntaxError, IndexError):
                return None
            if isinstance(stmt, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
                target = stmt.targets[0] if isinstance(stmt, ast.Assign) else stmt.target
                if isinstance(target, ast.Name):
                    return target.id
            return None
    return None


def _collect(f, args, allow_jax_rules) -> list[_App]:
    apps: list[_App] = []

    def seen(e):
        if e.kind in ("forward", "jax", "custom_jvp", "custom_vjp"):
            op = getattr(tracer.RUNNING, "op", None)
            prim = op.eqn.primitive.name if op is not None else None
            if e.kind != "forward" and prim in tracer.CONTROL_FLOW:
                raise NotImplementedError(
                    f"flat: control flow (lax.{op.eqn.primitive.name}) is not written as flat "
                    "code yet; write the loop in Python")
            if op is not None and any(s.primitive.name in tracer.CONTROL_FLOW for s in op.sites):
                raise NotImplementedError(
                    "flat: control flow (lax.scan, lax.cond, while) is not written as flat "
                    "code yet; write the loop in Python")
            outs = e.outputs if isinstance(e.outputs, (tuple, list)) else (e.outputs,)
            apps.append(_App(e.gate, tuple(e.inputs), tuple(jax.tree.leaves(outs)),
                             dict(e.params), op, e.kind))

    tracer.RUNNING.op = None
    g = tracer.gated(f, allow_jax_rules=allow_jax_rules)
    with observe(seen):
        out = g(*args)
    return apps, out


def _leaf_names(f, args) -> list[list[tuple[str, str]]]:
    """Per argument, per leaf: (variable name, how to read it from the argument)."""
    try:
        params = [p.name for p in inspect.signature(f).parameters.values()]
    except (TypeError, ValueError):
        params = []
    names = []
    for i, a in enumerate(args):
        base = params[i] if i < len(params) and params[i].isidentifier() else f"x{i}"
        leaves = jax.tree_util.tree_flatten_with_path(a)[0]
        per = []
        for path, _ in leaves:
            if not path:
                per.append((base, base))
                continue
            keys = [getattr(k, "key", getattr(k, "idx", getattr(k, "name", None))) for k in path]
            access = base + "".join(f"[{k!r}]" for k in keys)
            short = "_".join(map(str, keys))  # params["W1"] is W1, as the slides name it
            per.append((short if short.isidentifier() else f"{base}_{short}", access))
        names.append(per)
    return names


def _unparse(node) -> str:
    return ast.unparse(ast.fix_missing_locations(node))


def _name(n: str) -> ast.expr:
    return ast.Name(n, ast.Load())


def _is_inexact(x) -> bool:
    return jnp.issubdtype(jnp.result_type(x), jnp.inexact)


def flat(f: Callable, *args, mode: str = "reverse", allow_jax_rules: bool = False,
         prefix: str = "grad_", name: str | None = None) -> FlatCode:
    """The forward and backward pass of ``f`` at ``args`` as flat Python source.

    Args:
      f: a function of arrays built from jax.numpy or jaxprop.gates (plain JAX code runs
        through the gates, as in ``jaxprop.gated``).
      *args: example arguments; their shapes fix the code (it is written for them).
      mode: ``"reverse"`` (forward pass, then the VJP rules in reverse) or ``"forward"``
        (the value and its tangent, from the JVP rules).
      allow_jax_rules: let JAX's own rule differentiate operations without a gate; each
        appears as a ``jax.vjp``/``jax.jvp`` call of that one operation, marked.
      prefix: the gradients' prefix in reverse mode (``"grad_"``, or CS231n's ``"d"``).
      name: the function's name in the code (``f``'s name plus ``_grad`` or ``_jvp``).

    Returns:
      a :class:`FlatCode`; ``.compile()`` gives the function, ``print`` shows the code.
    """
    if mode not in MODES:
        raise ValueError(f"flat: unknown mode {mode!r}; expected one of {MODES}")
    if not callable(f):
        raise TypeError(f"flat: f must be a function; got {gate_mod.describe(f)}")
    # a Python float is an input to differentiate, as under jax.grad, not a constant
    args = tuple(jax.tree.map(lambda x: jnp.asarray(x) if isinstance(x, float) else x, a)
                 for a in args)
    diff = [i for i, a in enumerate(args) if jax.tree.leaves(a) and all(
        _is_inexact(x) for x in jax.tree.leaves(a))]
    if not diff:
        raise TypeError("flat: no argument is floating-point, so there is nothing to "
                        "differentiate")
    apps, out = _collect(f, args, allow_jax_rules)
    fname = getattr(f, "__name__", "f")
    fname = fname if fname.isidentifier() and fname != "<lambda>" else "f"
    name = name or f"{fname}_{'grad' if mode == 'reverse' else 'jvp'}"
    w = _Writer(prefix if mode == "reverse" else "")
    w.used.add(name)
    head = []  # lines that read the arguments
    active: set[int] = set()
    leaf_names = _leaf_names(f, args)
    arg_names = []
    for i, (a, per) in enumerate(zip(args, leaf_names)):
        base = per[0][1].split("[")[0] if per else f"x{i}"
        base = w.fresh(base) if base not in w.used else base
        arg_names.append(base)
        for leaf, (var, access) in zip(jax.tree.leaves(a), per):
            if access != var:
                var = w.fresh(var)
                head.append(f"{var} = {access}")
            w.names[id(leaf)] = var
            w.shapes[var] = np.shape(leaf)
            if i in diff:
                active.add(id(leaf))
    plan = []  # per app: output names, residual binding info
    known = {id(leaf) for a in args for leaf in jax.tree.leaves(a)}
    kept, canon = [], {}  # canon: a copy's output -> the value it copies
    for app in apps:  # a gate that hands back its very inputs (copy, eagerly) is an alias:
        app.inputs = tuple(canon.get(id(x), x) for x in app.inputs)
        if all(id(z) in known for z in app.outputs):  # each use adds to one gradient (+=)
            continue
        if (isinstance(app.gate, Gate) and app.gate.arity == 1 and len(app.outputs) > 1
                and len({id(z) for z in app.outputs}) == 1):  # copy's (x, x): one value
            canon[id(app.outputs[0])] = app.inputs[0]
            continue
        known.update(id(z) for z in app.outputs)
        kept.append(app)
    apps = kept
    for app in apps:
        outs = [w.fresh(None) for _ in app.outputs]
        plan.append(outs)
    # names from the user's lines: the last operation on a line gets the assignment's target
    last_on_line: dict[str, int] = {}
    for k, app in enumerate(apps):
        target = _user_name(app.op)
        if target is not None and len(app.outputs) == 1:
            last_on_line[target] = k
    for target, k in last_on_line.items():
        w.used.discard(plan[k][0])
        plan[k][0] = w.fresh(target)

    def ref(x) -> ast.expr:
        if is_constant(x):
            return ast.Constant(x)
        if id(x) in w.names:
            return _name(w.names[id(x)])
        lit = _literal(x, w)
        if isinstance(lit, ast.Name):
            return lit
        var = w.fresh(None)
        head.append(f"{var} = {_unparse(lit)}  # a constant")
        w.names[id(x)] = var
        return _name(var)

    body: list[str] = []
    residuals: list[dict] = []  # per app: how the rules read the residual
    for app, outs in zip(apps, plan):
        in_exprs = [ref(x) for x in app.inputs]
        is_active = any(id(x) in active for x in app.inputs if not is_constant(x))
        for x, o in zip(app.outputs, outs):
            w.names[id(x)] = o
            w.shapes[o] = np.shape(x)
            if is_active and _is_inexact(x):
                active.add(id(x))
        target = ", ".join(outs) if len(outs) > 1 else outs[0]
        info: dict[str, Any] = {"kind": "none"}
        if not isinstance(app.gate, Gate):
            opn = app.op.eqn if app.op is not None else None
            if opn is None:
                raise NotImplementedError(f"flat: cannot write {app.gate.name!r}")
            prim, params = opn.primitive, dict(opn.params)
            fn = w.provide(lambda *xs, prim=prim, params=params: prim.bind(*xs, **params),
                           f"jax_{prim.name}")
            arrays = [e for x, e in zip(app.inputs, in_exprs) if not is_constant(x)]
            live = [x for x in app.inputs if not is_constant(x) and id(x) in active]
            info = {"kind": "jax", "fn": fn, "args": arrays, "outs": outs, "live": live}
            if mode == "reverse":  # differentiated in its active inputs only
                pull = w.fresh(f"{outs[0]}_vjp")
                info["pull"] = pull
                params = [f"_{w.names[id(x)]}" for x in live]
                call = ", ".join(f"_{w.names[id(x)]}" if id(x) in active else _unparse(e)
                                 for x, e in zip([x for x in app.inputs if not is_constant(x)],
                                                 arrays))
                body.append(f"{_paren(target, len(outs))}, {pull} = jax.vjp("
                            f"lambda {', '.join(params)}: {fn}({call}), "
                            f"{', '.join(w.names[id(x)] for x in live)})  # JAX's own rule for "
                            f"{app.gate.name!r} ({app.kind}), not a gate's")
            else:
                body.append(f"{target} = {fn}({', '.join(map(_unparse, arrays))})  "
                            f"# JAX's own rule for {app.gate.name!r}, not a gate's")
            residuals.append(info)
            continue
        gate = app.gate
        fx = _forward_inputs(gate, app, in_exprs, w)
        found = _lambda(gate.forward)
        written = False
        if found is not None and isinstance(found[0], ast.Tuple) and len(found[0].elts) == 2:
            z_node, r_node = found[0].elts
            z_expr = _expr_of(gate.forward, z_node, fx, app.params, w)
            r_expr = _expr_of(gate.forward, r_node, fx, app.params, w)
            if z_expr is not None and r_expr is not None:
                body.append(f"{target} = {_unparse(z_expr)}")
                written = True
                info = _residual(r_node, r_expr, z_node, outs, gate, w, body)
        if not written:
            gref = _gate_ref(gate, w)
            res = w.fresh(f"res_{outs[0]}")
            call = _call(f"{gref}.forward", fx, app.params, w)
            body.append(f"{_paren(target, len(outs))}, {res} = {_unparse(call)}")
            info = {"kind": "var", "node": _name(res)}
        residuals.append(info)

    out_leaves = [canon.get(id(o), o) for o in jax.tree.leaves(out)]
    if not all(id(o) in w.names for o in out_leaves):
        raise NotImplementedError("flat: f's output is not the output of a gate")
    out_names = [w.names[id(o)] for o in out_leaves]
    out_text = _rebuild(out, out_names)
    lines = []
    if mode == "reverse":
        grads: dict[int, str] = {}  # id -> gradient variable (set once assigned)
        back: list[str] = []
        for o in out_leaves:
            g = w.fresh(prefix + w.names[id(o)])
            seed = "1.0" if np.ndim(o) == 0 else f"jnp.ones_like({w.names[id(o)]})"
            back.append(f"{g} = {seed}")
            grads[id(o)] = g
            w.shapes[g] = np.shape(o)
        for app, outs, info in reversed(list(zip(apps, plan, residuals))):
            if not any(id(z) in grads for z in app.outputs):
                continue
            if not any(id(x) in active for x in app.inputs if not is_constant(x)):
                continue
            zbars = [grads.get(id(z)) or f"jnp.zeros_like({o})"
                     for z, o in zip(app.outputs, outs)]
            zbar = _name(zbars[0]) if len(zbars) == 1 else ast.parse(
                "(" + ", ".join(zbars) + ",)", mode="eval").body
            if info["kind"] == "jax":
                targets = info["live"]
                names = [w.fresh(f"_{prefix}{w.names[id(x)]}") for x in targets]
                back.append(f"{', '.join(names)}, = {info['pull']}"
                            f"({zbar_text(zbars)})  # JAX's own rule")
                for x, n in zip(targets, names):
                    if id(x) in active:
                        _accumulate(back, grads, x, n, w, prefix)
                continue
            gate = app.gate
            out_shape = np.shape(app.outputs[0])
            for i, x in enumerate(app.inputs):
                if is_constant(x) or gate.vjp[i] is None or id(x) not in active:
                    continue
                e = _rule_expr(gate, gate.vjp[i], info, zbar, app.params, w)
                text = _unparse(e)
                if gate.broadcast and np.shape(x) != out_shape:
                    text = _unbroadcast(text, np.shape(x), out_shape)
                _accumulate(back, grads, x, text, w, prefix)
        results = []
        for i in diff:
            leaves = jax.tree.leaves(args[i])
            per = [grads.get(id(x)) or f"jnp.zeros_like({w.names[id(x)]})" for x in leaves]
            results.append(_rebuild(args[i], per))
        ret = f"return {out_text}, ({', '.join(results)}{',' if len(results) == 1 else ''})"
        signature = ", ".join(arg_names)
        lines = ["# forward pass", *body, "", "# backward pass", *back, ret]
    else:
        dots: dict[int, str] = {}
        tang_lines = []
        dot_args = []
        for i in diff:
            t = w.fresh(f"{arg_names[i]}_dot")
            dot_args.append(t)
            for leaf, (_, access) in zip(jax.tree.leaves(args[i]), leaf_names[i]):
                suffix = access[len(access.split("[")[0]):]
                if not suffix:  # the argument is one array: its tangent is the argument
                    dots[id(leaf)] = t
                    continue
                d = w.fresh(f"{w.names[id(leaf)]}_dot")
                tang_lines.append(f"{d} = {t}{suffix}")
                dots[id(leaf)] = d
        fw = []
        # forward lines interleaved with tangent lines, app by app
        k = 0
        for app, outs, info in zip(apps, plan, residuals):
            n_lines = 1 + (1 if info.get("bound") else 0)
            fw.extend(body[k:k + n_lines])
            k += n_lines
            ins = [x for x in app.inputs if not is_constant(x) and id(x) in dots]
            if not ins:
                continue
            if info["kind"] == "jax":
                prim_args = [x for x in app.inputs if not is_constant(x)]
                tangents = [dots.get(id(x)) or f"jnp.zeros_like({w.names[id(x)]})"
                            for x in prim_args]
                names = [w.fresh(f"{o}_dot") for o in outs]
                fw.append(f"_, {_paren(', '.join(names), len(names))} = jax.jvp({info['fn']}, "
                          f"({', '.join(map(_unparse, info['args']))},), "
                          f"({', '.join(tangents)},))  # JAX's own rule")
                for z, n in zip(app.outputs, names):
                    dots[id(z)] = n
                continue
            gate = app.gate
            out_shape = np.shape(app.outputs[0])
            parts = []
            for i, x in enumerate(app.inputs):
                if is_constant(x) or gate.jvp[i] is None or id(x) not in dots:
                    continue
                xd = dots[id(x)]
                if gate.broadcast and np.shape(x) != out_shape:
                    xd = f"jnp.broadcast_to({xd}, {tuple(out_shape)!r})"
                e = _rule_expr(gate, gate.jvp[i], info, ast.parse(xd, mode="eval").body,
                               app.params, w)
                parts.append(_unparse(e))
            if not parts:
                continue
            if len(outs) == 1:
                d = w.fresh(f"{outs[0]}_dot")
                fw.append(f"{d} = {parts[0]}")
                for p in parts[1:]:
                    fw.append(f"{d} += {p}")
                dots[id(app.outputs[0])] = d
            else:
                ds = [w.fresh(f"{o}_dot") for o in outs]
                tmp = w.fresh(f"{outs[0]}_dots")
                fw.append(f"{tmp} = {parts[0]}")
                for p in parts[1:]:
                    fw.append(f"{tmp} = jax.tree.map(lambda a, b: a + b, {tmp}, {p})")
                fw.append(f"{_paren(', '.join(ds), len(ds))} = {tmp}")
                for z, dn in zip(app.outputs, ds):
                    dots[id(z)] = dn
        fw.extend(body[k:])
        out_dots = [dots.get(id(o)) or f"jnp.zeros_like({n})"
                    for o, n in zip(out_leaves, out_names)]
        signature = ", ".join(arg_names + dot_args)
        lines = ["# forward pass, with each value's tangent", *tang_lines, *fw,
                 f"return {out_text}, {_rebuild(out, out_dots)}"]
    header = [f'"""Flat {mode}-mode code of {fname}, written by jaxprop.flat from the gates\' '
              f'rules."""']
    if w.given:
        header.append(f"# given by FlatCode.compile(): {', '.join(w.given)}")
    code = "\n".join(head + lines)
    imports = sorted({line for n, line in w.imports.items() if re.search(rf"\b{n}\b", code)})
    text = "\n".join([*header, *imports, "", "",
                      f"def {name}({signature}):",
                      *("    " + ln if ln else "" for ln in head + lines)]) + "\n"
    return FlatCode(text, name, mode, dict(w.namespace))


def zbar_text(zbars: list[str]) -> str:
    return zbars[0] if len(zbars) == 1 else "(" + ", ".join(zbars) + ",)"


def _paren(target: str, n: int) -> str:
    return f"({target})" if n > 1 else target


def _rebuild(tree, names: list[str]) -> str:
    """``tree``'s structure with its leaves named ``names``, as a Python expression."""
    it = iter(names)

    def go(t):
        if isinstance(t, dict):
            return "{" + ", ".join(f"{k!r}: {go(t[k])}" for k in sorted(t)) + "}"
        if isinstance(t, (tuple, list)):
            inner = ", ".join(go(v) for v in t) + ("," if isinstance(t, tuple) and len(t) == 1
                                                  else "")
            return f"({inner})" if isinstance(t, tuple) else f"[{inner}]"
        if t is None:
            return "None"
        return next(it)

    if not jax.tree_util.all_leaves([tree]) and not isinstance(tree, (dict, tuple, list)):
        raise NotImplementedError(f"flat: cannot write the pytree {type(tree).__name__}")
    return go(tree)


def _accumulate(back, grads, x, text, w, prefix) -> None:
    if id(x) in grads:
        back.append(f"{grads[id(x)]} += {text}")
    else:
        g = w.fresh(prefix + w.names[id(x)])
        back.append(f"{g} = {text}")
        grads[id(x)] = g
        w.shapes[g] = np.shape(x)


def _unbroadcast(text: str, shape: tuple, out_shape: tuple) -> str:
    """The gradient summed back over the axes broadcasting added or stretched."""
    lead = len(out_shape) - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape)
                                      if n == 1 and out_shape[lead + i] != 1)
    kept = tuple(n for i, n in enumerate(out_shape) if i not in axes)
    if not text.isidentifier():
        text = f"({text})"
    ax = axes[0] if len(axes) == 1 else axes
    text = f"{text}.sum(axis={ax!r})" if axes else text
    return text if kept == tuple(shape) else f"{text}.reshape({tuple(shape)!r})"


def _forward_inputs(gate, app, in_exprs, w) -> list[ast.expr]:
    """The inputs as the gate's forward sees them (a broadcasting gate's arrays stretched
    to one shape, where it is not one of the operators that broadcast by themselves)."""
    if not gate.broadcast:
        return in_exprs
    shape = np.shape(app.outputs[0])
    own = gate.name in ("add", "sub", "mul", "div", "maximum", "minimum", "pow")
    out = []
    for x, e in zip(app.inputs, in_exprs):
        if is_constant(x) or np.shape(x) == shape or own:
            out.append(e)
        else:
            out.append(ast.parse(f"jnp.broadcast_to({_unparse(e)}, {tuple(shape)!r})",
                                 mode="eval").body)
    return out


def _expr_of(fn, node, args, params, w) -> ast.expr | None:
    """One part of a lambda's body, its parameters replaced."""
    import copy

    code = fn.__code__
    names = list(code.co_varnames[:code.co_argcount + code.co_kwonlyargcount])
    mapping = dict(zip(names, args))
    for k, v in params.items():
        mapping[k] = _literal(v, w)
    if len(mapping) < len(names):
        return None
    return _Subst(mapping, {}, fn.__globals__, w).visit(copy.deepcopy(node))


def _residual(r_node, r_expr, z_node, outs, gate, w, body) -> dict:
    """How the rules read the residual: nothing, the output, an input, fields, or a variable."""
    if isinstance(r_node, ast.Constant) and r_node.value is None:
        return {"kind": "none"}
    if len(outs) == 1 and ast.dump(r_node) == ast.dump(z_node):
        return {"kind": "node", "node": _name(outs[0])}
    if isinstance(r_expr, ast.Name):
        return {"kind": "node", "node": r_expr}
    if isinstance(r_node, ast.Call) and isinstance(r_node.func, ast.Name):
        cls = gate.forward.__globals__.get(r_node.func.id)
        fields = getattr(cls, "_fields", None)
        if fields and not r_node.keywords and len(r_node.args) == len(fields) and all(
                isinstance(a, (ast.Name, ast.Constant)) for a in r_expr.args):
            return {"kind": "fields", "fields": dict(zip(fields, r_expr.args)), "node": r_expr}
    res = w.fresh(f"res_{outs[0]}")
    body.append(f"{res} = {_unparse(r_expr)}")
    return {"kind": "var", "node": _name(res), "bound": True}


def _rule_expr(gate, rule, info, upstream: ast.expr, params, w) -> ast.expr:
    """A VJP or JVP rule applied: its lambda body with the residual and upstream in place,
    else a call of the rule by import."""
    import copy

    found = _lambda(rule)
    res_node = info.get("node", ast.Constant(None))
    if found is not None:
        body, names = found
        mapping = {names[0]: res_node, names[1]: upstream}
        for k, v in params.items():
            mapping[k] = _literal(v, w)
        fields = {}
        if info["kind"] == "fields":
            fields = {(names[0], f): v for f, v in info["fields"].items()}
        if len(mapping) >= len(names):
            return _Subst(mapping, fields, rule.__globals__, w).visit(copy.deepcopy(body))
    code = getattr(rule, "__code__", None)
    mod = sys.modules.get(getattr(rule, "__module__", "") or "")
    rname = getattr(rule, "__name__", "")
    if code is not None and code.co_name != "<lambda>" and getattr(mod, rname, None) is rule:
        fn = w.global_name(rname, rule)
    else:
        fn = w.provide(rule, f"{gate.name}_rule")
    return _call(fn, [res_node, upstream], params, w)
