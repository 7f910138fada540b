"""``jaxprop compare``: forward against reverse mode, measured, plotted and tabulated.

  jaxprop compare [--config PATH] [--set KEY=VALUE ...] [--quick] [--out DIR]

Runs the sections of ``jaxprop.compare`` (n against m, depth, the two-layer net, the cheap
gradient, the 256 GB Jacobian) and writes CSVs, PNG figures and markdown tables to the
output folder. The defaults are ``jaxprop.compare.plan.Plan`` (the same as
``configs/compare.toml``); ``--quick`` runs a small version in well under a minute.
"""

from __future__ import annotations

import argparse
import sys

from jaxprop.cli._common import add_settings_arguments, print_keys

__all__ = ["register", "run", "main"]


def register(subparsers) -> None:
    """Adds the ``compare`` sub-command."""
    from jaxprop import _settings
    from jaxprop.compare.plan import Plan

    parser = subparsers.add_parser(
        "compare",
        help="measure forward vs reverse mode: time, FLOPs and memory of six Jacobian methods",
        description=__doc__.split("\n\n", 2)[2].strip() if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="settable keys (jaxprop compare --keys for their meaning): "
               + ", ".join(_settings.keys(Plan)),
    )
    add_settings_arguments(parser, "a TOML file like configs/compare.toml (default: built-in "
                           "defaults)", "output folder (default: the config's out, runs/compare)")
    parser.add_argument("--quick", action="store_true",
                        help="a small run (under a minute on two CPU cores)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Runs the comparison for parsed arguments; prints where the outputs went."""
    from jaxprop.compare.plan import Plan, load_config

    if args.keys:
        return print_keys(Plan)
    from jaxprop.compare.report import run_compare  # JAX loads only when it runs
    from jaxprop.train.rundir import check_out_path

    config = load_config(args.config, quick=args.quick, sets=args.overrides, out=args.out)
    check_out_path(config.out, "--out" if args.out is not None else "out")  # before measuring
    summary = run_compare(config)
    cross = summary.get("crossover", {})
    if cross:
        print(f"crossover n/m (forward-ours vs reverse-ours): time {_num(cross['time_ours'])}, "
              f"FLOPs {_num(cross['flops_ours'])}")
    for path in summary["files"]:
        print(f"wrote {path}")
    return 0


def _num(value) -> str:
    return "none in range" if value is None else f"{value:.3g}"


def main(argv: list[str] | None = None) -> int:
    """``compare`` alone, for ``experiments/compare_modes.py``: ``jaxprop compare ...``."""
    from jaxprop.cli import main as cli_main

    return cli_main(["compare", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
