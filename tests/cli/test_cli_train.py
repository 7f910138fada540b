"""``jaxprop train`` and ``jaxprop sweep`` through ``jaxprop.cli.main``, in-process."""

import json
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxprop.cli import main


@pytest.fixture(scope="module", autouse=True)
def cache_dir(tmp_path_factory):
    """A private persistent compilation cache, switched off again after this module."""
    from jax.experimental.compilation_cache import compilation_cache

    folder = tmp_path_factory.mktemp("xla_cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("JAXPROP_CACHE_DIR", str(folder))
    previous = jax.config.jax_compilation_cache_dir  # a test before may have set one
    jax.config.update("jax_compilation_cache_dir", None)
    compilation_cache.reset_cache()
    yield folder
    mp.undo()
    jax.config.update("jax_compilation_cache_dir", previous)
    compilation_cache.reset_cache()


def _no_traceback(err: str) -> None:
    assert "Traceback" not in err


@pytest.fixture
def fresh_compiled():
    """An empty in-process cache of compiled epochs, so the run really compiles (and writes
    the persistent cache) whatever trained earlier in this process."""
    from jaxprop.train import trainer

    trainer.clear_compiled()


def test_no_arguments_trains_the_default(tmp_path, capsys, cache_dir, fresh_compiled):
    assert main(["train", "--out", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    _no_traceback(err)
    assert "digits_two_layer: completed" in out and "test accuracy" in out
    assert "epoch" in err and "loss" in err  # the progress bar
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["test_accuracy"] >= 0.97
    assert summary["epochs"] == 30 and summary["pipeline"] == "reverse"
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 30
    for name in ("config.toml", "params.npz", "checkpoint.npz", "loss.svg", "accuracy.svg"):
        assert (tmp_path / name).is_file(), name
    with np.load(tmp_path / "params.npz") as z:
        assert sorted(z.files) == ["W1", "W2", "b1", "b2"]
    # the persistent compilation cache was switched on and filled
    assert jax.config.jax_compilation_cache_dir == str(cache_dir)
    assert any(Path(cache_dir).iterdir())


def test_config_by_name_with_overrides(tmp_path, capsys):
    code = main(["train", "--config", "digits_linear_svm", "--set", "train.epochs=2",
                 "--set", "optimizer.lr=0.05", "--out", str(tmp_path), "--quiet"])
    assert code == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["name"] == "digits_linear_svm" and summary["epochs"] == 2
    assert "lr = 0.05\n" in (tmp_path / "config.toml").read_text()
    assert (tmp_path / "templates.svg").is_file()


@pytest.mark.parametrize("args, message", [
    (["--set", "optimizer.lrr=1e-3"],
     "unknown config key 'optimizer.lrr'; did you mean 'optimizer.lr'?"),
    (["--set", "train.batch_size=big"], "'train.batch_size' must be an integer; got 'big'"),
    (["--set", "train.batch_size=-1"], "'train.batch_size' must be >= 1; got -1"),
    (["--set", "model.kind=cnn"],
     "'model.kind' must be one of 'linear', 'two_layer', 'convnet', 'rnn', 'lstm'; got 'cnn'"),
    (["--config", "no_such_experiment"], "'no_such_experiment' not found"),
    (["--config", "compare"], "config 'compare' ("),
    (["--config", "compare"], "is not a training experiment, so `jaxprop train` and "
                              "`jaxprop sweep` cannot use it; the training experiments are: "),
])
def test_bad_input_is_one_line_and_exit_code_2(args, message, tmp_path, capsys):
    assert main(["train", *args, "--out", str(tmp_path)]) == 2
    out, err = capsys.readouterr()
    _no_traceback(err)
    assert err.startswith("jaxprop train: error: ") and message in err
    assert not (tmp_path / "checkpoint.npz").exists()


def test_missing_cifar10_files_name_the_file_and_folder(tmp_path, capsys):
    root = tmp_path / "empty"
    root.mkdir()
    code = main(["train", "--config", "cifar10_linear_svm", "--set", f"data.root={root}",
                 "--out", str(tmp_path / "run")])
    assert code == 2
    _, err = capsys.readouterr()
    _no_traceback(err)
    assert err.startswith("jaxprop train: error: ")
    assert "data_batch_1" in err and str(root) in err


def test_resume_continues_with_more_epochs(tmp_path, capsys):
    base = ["train", "--out", str(tmp_path), "--quiet", "--set", "model.hidden_dim=16"]
    assert main([*base, "--set", "train.epochs=2"]) == 0
    assert main(["train", "--out", str(tmp_path), "--quiet", "--resume",
                 "--set", "train.epochs=3"]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["epochs"] == 3 and summary["resumed_from_epoch"] == 2
    # resumed from the run's own config.toml: hidden_dim=16 kept without repeating it
    assert summary["num_params"] == 64 * 16 + 16 + 16 * 10 + 10
    assert [json.loads(x)["epoch"] for x in
            (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
    assert main(["train", "--out", str(tmp_path / "none"), "--resume"]) == 2
    _, err = capsys.readouterr()
    _no_traceback(err)
    assert "no checkpoint to resume from" in err


def test_nan_loss_stops_with_a_message(tmp_path, capsys):
    code = main(["train", "--config", "digits_linear_svm", "--set", "optimizer.lr=1e30",
                 "--out", str(tmp_path), "--quiet"])
    assert code == 3
    out, err = capsys.readouterr()
    _no_traceback(err)
    assert "diverged" in out
    assert "training diverged in epoch 1" in err and "learning rate is likely too high" in err
    with np.load(tmp_path / "params.npz") as z:
        assert np.isfinite(z["W"]).all()


def test_sweep_command(tmp_path, capsys):
    code = main(["sweep", "--set", "model.hidden_dim=16", "--set", "train.epochs=2",
                 "--grid", "optimizer.lr=1e-3,1e-2", "--grid", "loss.reg=0,1e-3",
                 "--out", str(tmp_path), "--quiet"])
    assert code == 0
    out, err = capsys.readouterr()
    _no_traceback(err)
    assert "sweep: 4 runs" in out and "best: optimizer.lr=" in out
    assert len((tmp_path / "sweep.csv").read_text().splitlines()) == 5
    assert (tmp_path / "heatmap.svg").is_file()
    assert main(["sweep", "--grid", "model.kind=linear", "--out", str(tmp_path)]) == 2
    _, err = capsys.readouterr()
    assert "jaxprop sweep: error: --grid expects KEY=V1,V2,..." in err


def test_only_training_experiments_are_listed_and_accepted(tmp_path, capsys):
    from jaxprop.train.experiment import shipped_configs

    shipped = shipped_configs()
    assert "compare" not in shipped and "digits_two_layer" in shipped
    assert main(["sweep", "--config", "compare", "--out", str(tmp_path)]) == 2
    _, err = capsys.readouterr()
    _no_traceback(err)
    assert "jaxprop sweep: error: config 'compare'" in err and "digits_linear_svm" in err
    foreign = tmp_path / "foreign.toml"
    foreign.write_text('out = "runs/x"\n[width]\nn = [1]\n')
    assert main(["train", "--config", str(foreign), "--out", str(tmp_path / "r")]) == 2
    _, err = capsys.readouterr()
    assert "foreign.toml' is not a training experiment: it has none of the tables" in err
    assert "unknown config key" not in err


def test_absurd_hidden_dim_is_refused_without_allocating(tmp_path, capsys):
    assert main(["train", "--set", "model.hidden_dim=100000000", "--out", str(tmp_path),
                 "--quiet"]) == 2
    _, err = capsys.readouterr()
    _no_traceback(err)
    assert err.startswith("jaxprop train: error: this run needs about ")
    assert "model.hidden_dim=100000000" in err and "GiB" in err
    assert not (tmp_path / "checkpoint.npz").exists()
