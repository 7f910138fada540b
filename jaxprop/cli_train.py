"""``jaxprop train`` and ``jaxprop sweep``: the command-line face of jaxprop.train and sweep.

``jaxprop train`` with no arguments trains the two-layer net on the bundled digits with the
default config. ``--config`` takes a TOML file or a shipped experiment's name
(``digits_linear_svm``), ``--set KEY=VALUE`` overrides any key by its dotted name, ``--out``
picks the folder (default ``runs/<name>/``) and ``--resume`` continues its last checkpoint.

Exit codes: 0 done, 2 bad input (a config key, a missing file), 3 the loss became NaN/Inf,
130/143 stopped by SIGINT/SIGTERM after saving a checkpoint.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings
from pathlib import Path

__all__ = ["register", "resolve_config", "run_train", "run_sweep_command"]

_EXAMPLES_TRAIN = """\
examples:
  jaxprop train                                    # two-layer net on digits, the default
  jaxprop train --config digits_linear_svm         # a shipped experiment, by name
  jaxprop train --config my.toml --set optimizer.lr=1e-2 --set train.epochs=50
  jaxprop train --set train.pipeline=forward       # gradients from our JVP rules
  jaxprop train --resume --set train.epochs=60     # continue runs/<name>/ to 60 epochs
"""

_EXAMPLES_SWEEP = """\
examples:
  jaxprop sweep --grid optimizer.lr=1e-3,3e-3,1e-2 --grid loss.reg=0,1e-4,1e-3
  jaxprop sweep --config digits_sweep              # the grid from the config's [sweep] table
"""


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="PATH",
                   help="TOML config file, or a shipped experiment's name (default: the "
                        "built-in digits_two_layer)")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="KEY=VALUE",
                   help="override a config key by its dotted name, e.g. optimizer.lr=1e-3 "
                        "(a TOML literal; bare words are strings). Repeatable.")
    p.add_argument("--out", metavar="DIR", help="output folder (default: runs/<name>/)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def register(subparsers) -> None:
    """Adds the ``train`` and ``sweep`` sub-commands."""
    p = subparsers.add_parser(
        "train", help="train a classifier (default: two-layer net on digits)",
        description="Train one of the lecture's classifiers from a config.",
        epilog=_EXAMPLES_TRAIN, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_common(p)
    p.add_argument("--resume", action="store_true",
                   help="continue from the last checkpoint in --out (any key may be "
                        "overridden, e.g. --set train.epochs=60)")
    p.set_defaults(func=run_train)

    s = subparsers.add_parser(
        "sweep", help="train an lr x reg grid as one vmapped program, keep the best",
        description="Train every (optimizer.lr, loss.reg) pair of a grid at once and pick "
                    "the best by validation accuracy.",
        epilog=_EXAMPLES_SWEEP, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_common(s)
    s.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                   help="values of optimizer.lr or loss.reg to try. Repeatable.")
    s.set_defaults(func=run_sweep_command)


def resolve_config(args, out_for_resume: bool = False):
    """The config from ``--config`` and ``--set`` (and, resuming, the run's own config.toml).

    Returns:
      ``(cfg, out_dir)``.
    """
    from jaxprop.config import load_config
    from jaxprop.train import default_out_dir

    overrides = list(args.overrides)
    cfg = load_config(args.config, overrides)
    out = Path(args.out) if args.out else default_out_dir(cfg)
    if out_for_resume and args.config is None and (out / "config.toml").is_file():
        cfg = load_config(out / "config.toml", overrides)
    return cfg, out


@contextlib.contextmanager
def _warnings_as_lines(command: str):
    def show(message, category, filename, lineno, file=None, line=None):
        print(f"jaxprop {command}: warning: {message}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = show
        yield


def run_train(args) -> int:
    """``jaxprop train``: returns the exit code."""
    from jaxprop.train import enable_compilation_cache, print_summary, train

    cfg, out = resolve_config(args, out_for_resume=args.resume)
    enable_compilation_cache()
    with _warnings_as_lines("train"):
        result = train(cfg, out, resume=args.resume, progress=not args.quiet)
    print_summary(result)
    if result.message:
        print(f"jaxprop train: {result.message}", file=sys.stderr)
    return result.exit_code


def run_sweep_command(args) -> int:
    """``jaxprop sweep``: returns the exit code (3 if every run diverged)."""
    from jaxprop.sweep import parse_grid, print_sweep, run_sweep
    from jaxprop.train import enable_compilation_cache

    args.overrides = list(args.overrides) + parse_grid(args.grid)
    cfg, _ = resolve_config(args)
    out = Path(args.out) if args.out else Path("runs") / f"{cfg.name}_sweep"
    enable_compilation_cache()
    with _warnings_as_lines("sweep"):
        result = run_sweep(cfg, out, progress=not args.quiet)
    print_sweep(result)
    return 0 if result.best is not None else 3
