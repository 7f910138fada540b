"""``jaxprop train``: train one of the lecture's classifiers from a config.

With no arguments it trains the two-layer net on the bundled digits with the default config.
``--config`` takes a TOML file or a shipped experiment's name (``digits_linear_svm``),
``--set KEY=VALUE`` overrides any key by its dotted name, ``--out`` picks the folder (default
``runs/<name>/``) and ``--resume`` continues its last checkpoint.

Exit codes: 0 done, 2 bad input (a config key, a missing file), 3 the loss became NaN/Inf,
130/143 stopped by SIGINT/SIGTERM after saving a checkpoint.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jaxprop.cli._common import add_settings_arguments, print_keys, warnings_as_lines

__all__ = ["register", "resolve_config", "run"]

CONFIG_HELP = ("TOML config file, or a shipped experiment's name (default: the built-in "
               "digits_two_layer)")

EXAMPLES = """\
examples:
  jaxprop train                                    # two-layer net on digits, the default
  jaxprop train --config digits_linear_svm         # a shipped experiment, by name
  jaxprop train --config my.toml --set optimizer.lr=1e-2 --set train.epochs=50
  jaxprop train --set train.pipeline=forward       # gradients from our JVP rules
  jaxprop train --resume --set train.epochs=60     # continue runs/<name>/ to 60 epochs
  jaxprop train --keys                             # every setting, its choices and default
"""


def register(subparsers) -> None:
    """Adds the ``train`` sub-command."""
    p = subparsers.add_parser(
        "train", help="train a classifier (default: two-layer net on digits)",
        description="Train one of the lecture's classifiers from a config.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_settings_arguments(p, CONFIG_HELP, "output folder (default: runs/<name>/)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--resume", action="store_true",
                   help="continue from the last checkpoint in --out (any key may be "
                        "overridden, e.g. --set train.epochs=60)")
    p.set_defaults(func=run)


def resolve_config(args, out_for_resume: bool = False):
    """The config from ``--config`` and ``--set`` (and, resuming, the run's own config.toml).

    Returns:
      ``(cfg, out_dir)``.
    """
    from jaxprop.train.experiment import load_config
    from jaxprop.train.loop import default_out_dir

    overrides = list(args.overrides)
    cfg = load_config(args.config, overrides)
    out = Path(args.out) if args.out else default_out_dir(cfg)
    if out_for_resume and args.config is None and (out / "config.toml").is_file():
        cfg = load_config(out / "config.toml", overrides)
    return cfg, out


def run(args) -> int:
    """``jaxprop train``: returns the exit code."""
    from jaxprop.train.experiment import Config

    if args.keys:
        return print_keys(Config)
    from jaxprop.train.cache import enable_compilation_cache
    from jaxprop.train.loop import train
    from jaxprop.train.report import print_summary

    cfg, out = resolve_config(args, out_for_resume=args.resume)
    enable_compilation_cache()
    with warnings_as_lines("train"):
        result = train(cfg, out, resume=args.resume, progress=not args.quiet)
    print_summary(result)
    if result.message:
        print(f"jaxprop train: {result.message}", file=sys.stderr)
    return result.exit_code
