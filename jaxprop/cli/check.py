"""``jaxprop check MODULE:NAME``: the verification battery on a gate or a function.

NAME is a ``jaxprop.Gate`` or a function (built from gates, plain JAX, or both) in an
importable module or a ``file.py``. ``--args`` gives the example inputs as a list with one
entry per input (an all-integer entry such as ``[1, 0]`` stays int32: labels); for a gate
without ``--args`` each input is a random [2, 3] array. Besides the kinks given with
``--kink``, the battery probes 0 and ties between inputs (``--no-probes``: only the kinks
given), and the inputs scaled by 1e-8 .. 1e4. The exit status is 0 when every check passes
(or does not apply: "n/a" with the reason), 1 when any fails, 2 when the input is bad: a
wrong number of inputs, an input that is not finite, a tolerance that is not positive.

For example::

  jaxprop check mygates:tanh
  jaxprop check mygates:tanh --args "[[0.3, -1.2, 2.0]]"
  jaxprop check jaxprop.gates:relu --args "[[-1.0, 2.0, 0.5]]" --kink "[[0.0, 1.0]]"
  jaxprop check mypkg.losses:svm --args "[[[0.2, 1.5], [0.3, -1.0]], [1, 0]]"
"""

from __future__ import annotations

import argparse
import shutil
import textwrap


def register(subparsers) -> None:
    """Adds the ``check`` sub-command."""
    parser = subparsers.add_parser(
        "check",
        help="verify a gate's (or a function's) derivative rules: finite differences, "
             "adjoint, autodiff, check_grads, linearity, kinks",
        description=textwrap.fill(
            "Run jaxprop's verification battery on a Gate or a function: each rule against "
            "central finite differences in float64, the adjoint test between the two rules, "
            "each rule against JAX's autodiff of the forward code, check_grads to order 2 "
            "under each rule set, that our rules ran, that the JVP rule is linear, shapes and "
            "dtypes, broadcasting, the rules at 0, at ties and at the kinks given, and at "
            "inputs scaled by 1e-8 .. 1e4. Exit status: 0 all pass, 1 any fails, 2 bad "
            "input.", width=78),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("For example::")[1].rstrip(),
    )
    parser.add_argument("target", metavar="MODULE:NAME",
                        help="a Gate or a function, as module:name or file.py:name")
    parser.add_argument("--args", dest="fn_args", metavar="LIST", default=None,
                        help='the example inputs as a list, one entry per input, e.g. '
                             '"[[0.3, -1.2]]"; an all-integer entry stays int32 (labels)')
    parser.add_argument("--params", metavar="DICT", default=None,
                        help="a gate's static parameters as a Python dict, e.g. "
                             "\"{'axes': (0,), 'shape': (2, 3)}\"")
    parser.add_argument("--kink", dest="kinks", metavar="LIST", action="append", default=[],
                        help="a point where the function is not differentiable, like --args "
                             "(repeatable)")
    parser.add_argument("--no-probes", dest="probes", action="store_false",
                        help="do not probe 0 and ties between inputs as kinks (only the "
                             "--kink points)")
    parser.add_argument("--diff", metavar="I,J", default=None,
                        help="positions of the inputs to differentiate (default: every "
                             "floating-point input)")
    parser.add_argument("--checks", metavar="A,B", default=None,
                        help="run only these checks (default: all): " + ", ".join(
                            ("shapes", "fd_vjp", "fd_jvp", "adjoint", "autodiff_vjp",
                             "autodiff_jvp", "check_grads_jvp", "check_grads_vjp", "rule_ran",
                             "linear", "broadcast", "kinks", "scales", "reference")))
    parser.add_argument("--rtol", type=float, default=1e-6, help="relative tolerance "
                        "(default: 1e-6)")
    parser.add_argument("--fd-atol", type=float, default=1e-7,
                        help="absolute tolerance against finite differences (default: 1e-7)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random directions")
    parser.add_argument("--allow-jax-rules", action="store_true",
                        help="let JAX differentiate operations that no gate stands for")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Runs ``jaxprop check``: 0 when every check passes, 1 when any fails."""
    import jax.numpy as jnp
    import numpy as np

    from jaxprop.cli.explain import _literal, load_function, parse_args
    from jaxprop.gate import Gate
    from jaxprop.verify.battery import check

    for flag, value in (("--rtol", args.rtol), ("--fd-atol", args.fd_atol)):
        if not value > 0 or value == float("inf"):  # NaN fails the first test
            raise ValueError(f"{flag}: expected a positive tolerance such as 1e-6; got {value}")
    target = load_function(args.target)  # a Gate is callable: found like a function
    params = None
    if args.params is not None:
        params = _literal("--params", args.params)
        if not isinstance(params, dict):
            raise ValueError(f"--params: expected a dict such as \"{{'axes': (0,)}}\"; got "
                             f"{args.params!r}")
    if args.fn_args is not None:
        inputs = parse_args(args.fn_args)
    elif isinstance(target, Gate):
        rng = np.random.default_rng(args.seed)
        inputs = tuple(jnp.asarray(rng.normal(size=(2, 3))) for _ in range(target.arity))
    else:
        raise ValueError(f"{args.target}: give the function's example inputs with --args, a "
                         'list with one entry per input, e.g. --args "[-2.0, 5.0, -4.0]"')
    kinks = [parse_args(k) for k in args.kinks]
    diff = None
    if args.diff is not None:
        try:
            diff = tuple(int(i) for i in args.diff.split(","))
        except ValueError:
            raise ValueError(f"--diff: expected input positions such as 0,1; got "
                             f"{args.diff!r}") from None
    checks = None if args.checks is None else [k.strip() for k in args.checks.split(",")]
    _raise_users_own_exception(target, inputs, params)
    report = check(target, *inputs, params=params, diff=diff, kinks=kinks,
                   probes=args.probes, checks=checks, rtol=args.rtol, fd_atol=args.fd_atol,
                   seed=args.seed, allow_jax_rules=args.allow_jax_rules)
    print(report.text(width=shutil.get_terminal_size((120, 24)).columns))
    for row in report.failed:
        size = "" if row.abs_error is None else (
            f": off by {row.abs_error:.3g} (relative {row.rel_error:.3g}) at {row.where}, "
            f"got {row.got:.6g}, expected {row.expected:.6g}" if row.got is not None else
            f": off by {row.abs_error:.3g}")
        print(f"{row.status}: {row.key} ({row.title}){size}")
    return 0 if report.ok else 1


def _raise_users_own_exception(target, inputs: tuple, params: dict | None) -> None:
    """Runs the forward computation once, shapes only: an exception raised in the user's own
    code is the user's, reported by ``jaxprop.cli`` as one line with its type, message and
    line (exit 2), rather than as a table of rows that each repeat it. Any other exception is
    left to the battery, which reports it row by row."""
    import jax

    from jaxprop.cli._common import user_code_error

    try:
        with jax.enable_x64(True):
            jax.eval_shape(lambda *xs: target(*xs, **(params or {})), *inputs)
    except Exception as err:  # noqa: BLE001 - sorted: the user's, or the battery's to report
        if user_code_error(err) is not None:
            raise
