"""``jaxprop explain EXAMPLE``: the lecture's slide view of a function, as a table and a picture.

EXAMPLE is a built-in (``simple``, ``sigmoid``, ``sigmoid-gate``, ``relu-vector``, ``matmul``,
``two-layer``) or ``module:function`` (or ``path/to/file.py:function``) with ``--args``, a
Python/JSON list holding one entry per positional argument. An entry whose numbers are all
integers (``[0, 2]``, integer labels) becomes an int32 array; any other entry (one float such
as ``1.0`` is enough) becomes a floating array. For example::

  jaxprop explain simple
  jaxprop explain matmul --mode forward --out pictures/
  jaxprop explain mypkg.funcs:f --args "[-2.0, 5.0, -4.0]"
  jaxprop explain mypkg.funcs:g --args "[[1.0, -2, 3]]" --upstream "[1, 1, 1]"
  jaxprop explain mypkg.funcs:loss --args "[[[1.0, -2.0], [0.5, 3.0]], [1, 0]]"
  jaxprop explain mypkg.funcs:rnn --args "[0.5, 0.1, [0.0, 0.2, 0.4]]" --scan-steps 2
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib
import importlib.util
import re
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

DEFAULT_OUT = Path("runs") / "explain"
FORMATS = ("svg", "png", "both")


def register(subparsers) -> None:
    """Adds the ``explain`` sub-command."""
    from jaxprop.explainer import examples  # plain data: no JAX

    parser = subparsers.add_parser(
        "explain",
        help="show how the gradients flow through a function, gate by gate",
        description=textwrap.fill(
            "Print one row per gate (upstream x local = downstream, with the lecture's "
            "pattern names) and draw the circuit with forward values and gradients. "
            f"EXAMPLE is one of {', '.join(examples.EXAMPLES)}, or module:function "
            "(or file.py:function) with --args.", width=78),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="built-in examples:\n" + "\n".join(
            f"  {e.name:<13} {e.summary}" for e in examples.EXAMPLES.values()),
    )
    parser.add_argument("example", metavar="EXAMPLE",
                        help="a built-in example or module:function")
    parser.add_argument("--mode", choices=("reverse", "forward"), default="reverse",
                        help="reverse: gradients through the VJP rules (default); forward: "
                        "tangents through the JVP rules, one basis vector per input element")
    parser.add_argument("--out", default=None,
                        help=f"folder for the picture (default: {DEFAULT_OUT})")
    parser.add_argument("--format", choices=FORMATS, default="svg",
                        help="picture format (default: svg)")
    parser.add_argument("--args", dest="fn_args", metavar="LIST", default=None,
                        help='for module:function: its arguments as a list, e.g. "[-2.0, 5.0]"; '
                        'an all-integer entry ("[1, 0]") stays int32 (labels)')
    parser.add_argument("--upstream", metavar="VALUE", default=None,
                        help="for module:function: dL/d output to pull back (default: ones)")
    parser.add_argument("--code", action="store_true",
                        help="print the function's flat code instead (jaxprop.flat: the forward "
                        "and backward pass, one line per gate, from the gates' rules); with "
                        "--out FILE.py, write it there (never over an existing file)")
    parser.add_argument("--scan-steps", dest="scan_steps", metavar="N", type=int, default=3,
                        help="each lax.scan shows its body's gates for its first N steps, "
                        "then one row for the remaining steps (default: 3)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Runs ``jaxprop explain``; bad input raises ValueError (printed without a traceback)."""
    from rich.console import Console

    from jaxprop.cli._common import out_folder
    from jaxprop.explainer import examples
    from jaxprop.explainer.rows import explain

    if args.code and args.out is not None and (
            not args.out.endswith(".py") or Path(args.out).exists()):
        raise ValueError(f"--out {args.out}: with --code, give a new .py file to write "
                         "(an existing file is never overwritten)")
    out = None if args.code else out_folder(args, DEFAULT_OUT)  # a file there is an error
    name = args.example
    if ":" in name:
        if args.fn_args is None:
            raise ValueError(
                f"{name}: give the function's example arguments with --args, a list with "
                'one entry per positional argument, e.g. --args "[-2.0, 5.0, -4.0]"'
            )
        fn = load_function(name)
        fn_args = parse_args(args.fn_args)
        upstream = None if args.upstream is None else _to_array(
            _literal("--upstream", args.upstream), "--upstream")
        title = name
    else:
        example = examples.get(name)
        if args.fn_args is not None or args.upstream is not None:
            raise ValueError(
                f"--args and --upstream are for module:function; the built-in example "
                f"{name!r} brings its own"
            )
        fn, fn_args = example.fn, example.args()
        upstream = example.upstream() if example.upstream is not None else None
        title = example.title(args.mode)
    if args.scan_steps < 1:
        raise ValueError(f"--scan-steps must be a positive number of steps; got {args.scan_steps}")
    if args.code:
        return _print_code(fn, fn_args, args)
    trace = explain(fn, *fn_args, mode=args.mode, upstream=upstream, title=title,
                    scan_steps=args.scan_steps)

    console = Console()
    if not console.is_terminal:  # a pipe or a file: no terminal width to respect
        console = Console(width=160)
    console.print(trace.to_table())
    if trace.grads is not None:
        from jaxprop.explainer import fmt

        parts = [f"{n} = {fmt.value(g)}" for n, g in _named_grads(trace, fn_args)]
        console.print("gradients: " + "; ".join(parts), markup=False)
    stem = "explain_" + re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_")
    if args.mode == "forward":
        stem += "_forward"
    suffixes = (".svg", ".png") if args.format == "both" else (f".{args.format}",)
    for suffix in suffixes:
        path = trace.render(out / (stem + suffix))
        console.print(f"wrote {path}", markup=False)
    return 0


def _print_code(fn, fn_args, args) -> int:
    """``--code``: the flat code, highlighted in a terminal, or written to ``--out``."""
    from rich.console import Console
    from rich.syntax import Syntax

    from jaxprop.explainer.flat import flat

    code = flat(fn, *fn_args, mode=args.mode)
    console = Console()
    if args.out is not None:
        code.write(args.out)
        console.print(f"wrote {args.out}", markup=False)
        return 0
    if console.is_terminal:
        console.print(Syntax(code.text, "python"))
    else:
        print(code.text, end="")
    return 0


def _named_grads(trace, args: tuple):
    """Yields ``(leaf name, gradient)``; a non-float argument's leaves are skipped by name too."""
    import jax

    names = iter(trace.inputs)
    for arg, g in zip(args, trace.grads, strict=True):
        arg_names = [next(names, "?") for _ in jax.tree.leaves(arg)]
        if g is None:
            continue
        yield from zip(arg_names, jax.tree.leaves(g), strict=False)


def load_function(spec: str) -> Callable:
    """Returns the function named by ``module:function`` or ``path/to/file.py:function``."""
    module_name, _, fn_name = spec.rpartition(":")
    if not module_name or not fn_name:
        raise ValueError(f"{spec!r}: expected module:function, e.g. mypkg.funcs:f")
    if module_name.endswith(".py"):
        path = Path(module_name)
        if not path.is_file():
            raise FileNotFoundError(f"{spec}: no such file {str(path)!r}")
        module_spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(module_spec)
        with _user_code(spec, str(path)):
            module_spec.loader.exec_module(module)
    else:
        if str(Path.cwd()) not in sys.path:
            sys.path.insert(0, str(Path.cwd()))  # as `python -m` would find it
        try:
            with _user_code(spec, module_name):
                module = importlib.import_module(module_name)
        except ImportError as err:
            raise ValueError(f"{spec}: cannot import module {module_name!r} ({err})") from None
    fn = getattr(module, fn_name, None)
    if fn is None or not callable(fn):
        choices = sorted(k for k, v in vars(module).items()
                         if callable(v) and not k.startswith("_") and
                         getattr(v, "__module__", None) == module.__name__)
        what = "no function" if fn is None else "a non-callable"
        raise ValueError(f"{spec}: module {module_name!r} has {what} {fn_name!r}; "
                         f"its functions are {choices}")
    return fn


@contextlib.contextmanager
def _user_code(spec: str, where: str):
    """Running a user's module: its SyntaxError or exception is their error, named."""
    try:
        yield
    except ImportError:
        raise
    except SyntaxError as err:
        raise ValueError(f"{spec}: {where} has a syntax error at line {err.lineno}: "
                         f"{err.msg}") from None
    except Exception as err:  # noqa: BLE001 - whatever the user's module raises
        raise ValueError(f"{spec}: importing {where} raised {type(err).__name__}: {err}") \
            from None


def _literal(flag: str, text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise ValueError(
            f"{flag}: cannot parse {text!r}; expected a Python/JSON literal such as "
            '"[-2.0, 5.0, -4.0]"'
        ) from None


def _all_ints(value) -> bool:
    if isinstance(value, (list, tuple)):
        return bool(value) and all(_all_ints(v) for v in value)
    return isinstance(value, int) and not isinstance(value, bool)


def _to_array(value, what: str, keep_ints: bool = False):
    """``value`` as a floating array; as int32 when ``keep_ints`` and all its numbers are ints."""
    import jax
    import jax.numpy as jnp

    dtype = (jnp.int32 if keep_ints and _all_ints(value)
             else jax.dtypes.canonicalize_dtype(jnp.float64))
    try:
        array = jnp.asarray(value, dtype=dtype)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{what}: {value!r} is not a number or a rectangular list of "
                         "numbers") from None
    return array


def parse_args(text: str) -> tuple:
    """Parses ``--args``: a list with one entry per positional argument, each made an array.

    An entry whose numbers are all Python ints (integer labels, ``[1, 0]``) becomes an int32
    array, held fixed; any other entry a floating array (write ``1.0``, not ``1``, for a
    float input).
    ``"[-2.0, 5.0, -4.0]"`` gives three scalars; ``"[[1, -2, 3, -1]]"`` one vector;
    ``"[[[2, 1], [3, 4]], [1, 2]]"`` a [2, 2] matrix and a [2] vector.
    """
    value = _literal("--args", text)
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(
            f"--args: expected a non-empty list with one entry per positional argument, "
            f"e.g. \"[-2.0, 5.0, -4.0]\"; got {text!r}"
        )
    return tuple(_to_array(v, f"--args entry {i}", keep_ints=True) for i, v in enumerate(value))
