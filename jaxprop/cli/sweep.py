"""``jaxprop sweep``: train an lr x reg grid as one vmapped program and keep the best.

Exit codes: 0 done, 2 bad input or environment (a config key, an ``--out`` that holds
something, without ``--overwrite``), 3 every run of the grid diverged, 130/143 stopped by
SIGINT/SIGTERM (nothing written).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from jaxprop.cli._common import (
    add_overwrite_argument,
    add_settings_arguments,
    out_folder,
    print_keys,
    warnings_as_lines,
)
from jaxprop.cli.train import CONFIG_HELP, resolve_config

__all__ = ["register", "run"]

EXAMPLES = """\
examples:
  jaxprop sweep --grid optimizer.lr=1e-3,3e-3,1e-2 --grid loss.reg=0,1e-4,1e-3
  jaxprop sweep --config digits_sweep              # the grid from the config's [sweep] table
"""


def register(subparsers) -> None:
    """Adds the ``sweep`` sub-command."""
    p = subparsers.add_parser(
        "sweep", help="train an lr x reg grid as one vmapped program, keep the best",
        description="Train every (optimizer.lr, loss.reg) pair of a grid at once and pick "
                    "the best by validation accuracy.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_settings_arguments(p, CONFIG_HELP, "output folder (default: runs/<name>_sweep/); it "
                           "must be empty or new, unless --overwrite")
    add_overwrite_argument(p, "sweep")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                   help="values of optimizer.lr or loss.reg to try. Repeatable.")
    p.set_defaults(func=run)


def run(args) -> int:
    """``jaxprop sweep``: returns the exit code (3 if every run diverged)."""
    from jaxprop.train.experiment import Config

    if args.keys:
        return print_keys(Config)
    from jaxprop._signals import GUARD, Stop

    try:
        from jaxprop.train.cache import enable_compilation_cache  # JAX loads here
        from jaxprop.train.sweep import parse_grid, print_sweep, run_sweep

        GUARD.check()  # a signal during the imports stops here
        args.overrides = list(args.overrides) + parse_grid(args.grid)
        cfg, _ = resolve_config(args)
        out = out_folder(args) or Path("runs") / f"{cfg.name}_sweep"
        enable_compilation_cache()
        with warnings_as_lines("sweep"):
            result = run_sweep(cfg, out, progress=not args.quiet, overwrite=args.overwrite)
    except Stop as stop:
        stop.detail = stop.detail or "nothing was written"
        raise
    print_sweep(result)
    return 0 if result.best is not None else 3
