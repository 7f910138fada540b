"""``jaxprop train``: train one of the lecture's classifiers from a config.

With no arguments it trains the two-layer net on the bundled digits with the default config.
``--config`` takes a TOML file or a shipped experiment's name (``digits_linear_svm``),
``--set KEY=VALUE`` overrides any key by its dotted name, ``--out`` picks the folder (default
``runs/<name>/``), which must be empty or new unless ``--resume`` continues the run there or
``--overwrite`` moves what is there aside first. ``--coordinator HOST:PORT --num-processes
N --process-id I`` (or the ``JAXPROP_*`` variables, or a SLURM step) make it one process of a
multi-process run (``jaxprop.train.distributed``).

Exit codes: 0 done, 2 bad input or environment (a config key, a missing or unwritable file,
a folder in use or holding a run), 3 the loss became NaN/Inf, 130/143 stopped by
SIGINT/SIGTERM (after saving a checkpoint, once training has started).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jaxprop.cli._common import (
    add_overwrite_argument,
    add_settings_arguments,
    out_folder,
    print_keys,
    warnings_as_lines,
)

__all__ = ["register", "resolve_config", "resolve_resume", "run"]

CONFIG_HELP = ("TOML config file, or a shipped experiment's name (default: the built-in "
               "digits_two_layer)")

EXAMPLES = """\
examples:
  jaxprop train                                    # two-layer net on digits, the default
  jaxprop train --config digits_linear_svm         # a shipped experiment, by name
  jaxprop train --config my.toml --set optimizer.lr=1e-2 --set train.epochs=50
  jaxprop train --set train.pipeline=forward       # gradients from our JVP rules
  jaxprop train --resume --set train.epochs=60     # continue runs/<name>/ to 60 epochs
  jaxprop train --overwrite                        # start afresh; the old run is moved aside
  jaxprop train --keys                             # every setting, its choices and default
  jaxprop train --coordinator 10.0.0.1:4321 --num-processes 2 --process-id 0
                                                   # process 0 of a 2-process run
"""


def register(subparsers) -> None:
    """Adds the ``train`` sub-command."""
    p = subparsers.add_parser(
        "train", help="train a classifier (default: two-layer net on digits)",
        description="Train one of the lecture's classifiers from a config.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_settings_arguments(p, CONFIG_HELP, "output folder (default: runs/<name>/); it must be "
                           "empty or new, unless --resume or --overwrite")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true",
                      help="continue the run in --out from its last checkpoint, with its own "
                           "config.toml; change a key with --set (recorded in the run's "
                           "history.jsonl), e.g. --set train.epochs=60")
    add_overwrite_argument(mode)
    group = p.add_argument_group(
        "multi-process run", "every process runs the same command with its own --process-id "
        "(or sets JAXPROP_COORDINATOR, JAXPROP_NUM_PROCESSES, JAXPROP_PROCESS_ID; a SLURM "
        "step of several tasks is detected by itself); process 0 writes the files")
    group.add_argument("--coordinator", metavar="HOST:PORT",
                       help="address of process 0's coordination service")
    group.add_argument("--num-processes", metavar="N", help="processes in the run")
    group.add_argument("--process-id", metavar="I", help="this process's id, 0..N-1")
    group.add_argument("--join-timeout", metavar="S", type=int, default=60,
                       help="seconds to wait for every process to join (default 60)")
    p.set_defaults(func=run)


def resolve_config(args):
    """The config of a new run, from ``--config`` and ``--set``.

    Returns:
      ``(cfg, out_dir)``.
    """
    from jaxprop.train.experiment import load_config
    from jaxprop.train.loop import default_out_dir

    cfg = load_config(args.config, list(args.overrides))
    out = out_folder(args) or default_out_dir(cfg)
    return cfg, out


def resolve_resume(args):
    """The config of a resumed run: the run's own ``config.toml``, changed only by ``--set``.

    Refused: ``--config`` (the run has its config), a missing ``config.toml``, and a
    ``config.toml`` edited since the checkpoint was saved, except in keys that ``--set``
    gives explicitly.

    Returns:
      ``(cfg, out_dir)``.
    """
    from jaxprop._settings import diff, parse_assignment
    from jaxprop.train import checkpoint
    from jaxprop.train.experiment import from_dict, load_config
    from jaxprop.train.loop import default_out_dir
    from jaxprop.train.rundir import CHECKPOINT, check_out_path

    if args.config is not None:
        raise ValueError(
            "--config cannot be given with --resume: a resumed run continues with its own "
            "config.toml; change a key with --set KEY=VALUE (recorded in its history.jsonl)")
    out = out_folder(args) or check_out_path(default_out_dir(load_config(None, args.overrides)))
    ckpt = out / CHECKPOINT
    checkpoint.require_file(ckpt)
    path = out / "config.toml"
    if not path.is_file():
        raise FileNotFoundError(
            f"cannot resume {str(out)!r}: its config.toml is missing ({str(path)!r}), so the "
            "settings the run was trained with are unknown, and the defaults would train "
            "another run. Put the run's config.toml back, or start afresh with --overwrite")
    file_cfg = load_config(path)
    _, extra = checkpoint.read_info(ckpt)
    _refuse_another_models_checkpoint(ckpt, file_cfg, path, extra.get("config"))
    if extra.get("config") is not None:
        try:
            recorded = from_dict(extra["config"])
        except (ValueError, TypeError) as err:
            raise ValueError(f"checkpoint {str(ckpt)!r} records a config this version cannot "
                             f"read ({err})") from None
        given = {parse_assignment(s)[0] for s in args.overrides}
        edited = {k: v for k, v in diff(recorded, file_cfg).items() if k not in given}
        if edited:
            changes = "; ".join(f"{k} is {b!r} there but the run trained with {a!r}"
                                for k, (a, b) in edited.items())
            sets = " ".join(f"--set {k}={b}" for k, (a, b) in edited.items())
            raise ValueError(
                f"{str(path)!r} was edited after the checkpoint was saved ({changes}). A "
                "resumed run continues the run that was: undo the edit, or make the change "
                f"explicit with {sets} (recorded in the run's history.jsonl)")
    return load_config(path, list(args.overrides)), out


def _refuse_another_models_checkpoint(ckpt: Path, cfg, config_path: Path, recorded) -> None:
    """Refuses a checkpoint whose params are not those of ``cfg``'s model (a linear run's
    ``W``, ``b`` where a two-layer run has ``W1``, ``b1``, ``W2``, ``b2``): the checkpoint
    is another run's, whatever else its recorded config says."""
    import jax
    import jax.numpy as jnp

    from jaxprop.models import resolve
    from jaxprop.train import checkpoint

    has = checkpoint.stored_params(ckpt)
    if has is None:
        return
    m, model = cfg.model, resolve(cfg.model.kind)
    options = {k: getattr(m, k) for k in model.config_keys}
    expects = jax.eval_shape(lambda: model.init(  # the names only: any sizes do (4: a 2x2 image)
        jax.random.key(0), 4, 2, hidden_dim=m.hidden_dim, weight_scale=m.weight_scale,
        bias=not cfg.data.bias_trick, dtype=jnp.float32, **options))
    if not isinstance(expects, dict) or sorted(has) == sorted(expects):
        return
    saved_by = ""
    if isinstance(recorded, dict) and isinstance(recorded.get("model"), dict):
        saved_by = (f" (saved by the run {recorded.get('name')!r}, model.kind = "
                    f"{recorded['model'].get('kind')!r})")
    raise ValueError(
        f"checkpoint {str(ckpt)!r} does not belong to this run's model: it holds the params "
        f"{checkpoint.describe_params(has)}{saved_by}, but the model of {str(config_path)!r} "
        f"(model.kind = {m.kind!r}) has {', '.join(sorted(expects))}. Put this run's own "
        "checkpoint.npz back, or start afresh with --overwrite")


def run(args) -> int:
    """``jaxprop train``: returns the exit code."""
    from jaxprop.train.experiment import Config

    if args.keys:
        return print_keys(Config)
    from jaxprop._signals import GUARD, Stop
    from jaxprop.train import distributed  # no JAX in it

    try:
        if args.join_timeout < 1:
            raise ValueError(f"--join-timeout must be at least 1 (seconds); got "
                             f"{args.join_timeout}")
        cluster = distributed.resolve(args.coordinator, args.num_processes, args.process_id)
        met = distributed.rendezvous(cluster, args.join_timeout,  # before JAX: in seconds
                                     _fingerprint(args) if cluster.multi else None)
        from jaxprop.train.cache import enable_compilation_cache  # JAX loads here
        from jaxprop.train.loop import train
        from jaxprop.train.report import print_summary

        GUARD.check()  # a signal during the imports stops here
        distributed.initialize(cluster, args.join_timeout, met)
        GUARD.check()
        with distributed.together("reading the config"):
            cfg, out = resolve_resume(args) if args.resume else resolve_config(args)
        enable_compilation_cache()
        first = _process_index() == 0
        with warnings_as_lines("train"):
            result = train(cfg, out, resume=args.resume, overwrite=args.overwrite,
                           progress=first and not args.quiet,
                           history={"set": list(args.overrides)})
    except Stop as stop:
        stop.detail = stop.detail or "nothing was written"
        raise
    except distributed.PeerLost as err:
        distributed.exit_lost(err)  # not JAX's shutdown barrier, then its abort
    if not first:  # process 0 prints the summary and writes the files
        print(f"jaxprop train: process {_process_index()} of {cluster.num_processes}: "
              f"{result.status} after {result.summary['epochs']} epochs")
        return result.exit_code
    print_summary(result)
    if result.message:
        print(f"jaxprop train: {result.message}", file=sys.stderr)
    return result.exit_code


def _fingerprint(args) -> dict:
    """What every process of a run must share, compared in the handshake before JAX is
    imported: jaxprop's and JAX's versions."""
    import importlib.metadata

    from jaxprop import __version__

    return {"jaxprop": __version__, "jax": importlib.metadata.version("jax")}


def _process_index() -> int:
    import jax

    return jax.process_index()
