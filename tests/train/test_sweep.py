"""Sweeps: the vmapped grid equals the runs one at a time; best pick; divergence; files."""

import csv
import json
import xml.etree.ElementTree as ET

import chex
import jax
import numpy as np
import pytest

from jaxprop.train import Trainer, load_data
from jaxprop.train.experiment import load_config
from jaxprop.train.sweep import grid_of, parse_grid, pick_best, print_sweep, run_sweep

TINY = ["data.num_train=256", "model.hidden_dim=16", "train.batch_size=32", "train.epochs=3",
        "optimizer.name=sgd"]


def test_vmapped_grid_equals_one_config_at_a_time(tmp_path):
    cfg = load_config(None, [*TINY, "sweep.lr=[0.05, 0.2, 1e30]", "sweep.reg=[0.0, 0.01]"])
    ds = load_data(cfg)
    result = run_sweep(cfg, tmp_path, dataset=ds, progress=False)
    assert result.val_acc.shape == (3, 2)
    trainer = Trainer(cfg, ds)
    for row in result.rows:
        if row["lr"] == 1e30:  # sgd with a huge step: NaN/Inf, marked and never picked
            assert row["diverged_epoch"] is not None and np.isnan(row["val_acc"])
            continue
        assert row["diverged_epoch"] is None
        state = trainer.init_state()
        for epoch in range(cfg.train.epochs):
            state, stats, _ = trainer.run_epoch(state, epoch, {"lr": row["lr"],
                                                               "reg": row["reg"]})
        assert row["val_acc"] == pytest.approx(stats["val_acc"], abs=1e-6)
        assert row["train_loss"] == pytest.approx(stats["train_loss"], rel=1e-5)
        if (row["lr"], row["reg"]) == (result.best["lr"], result.best["reg"]):
            # a batched matmul may sum in another order: float32 agreement, not bits
            chex.assert_trees_all_close(result.params, jax.device_get(state[0]),
                                        rtol=1e-5, atol=1e-6)
    # the best is the highest validation accuracy
    assert result.best["val_acc"] == np.nanmax(result.val_acc)
    assert result.best["lr"] != 1e30 and 0.0 <= result.best["test_acc"] <= 1.0

    # the files
    with open(tmp_path / "sweep.csv") as f:
        table = list(csv.DictReader(f))
    assert [(float(r["lr"]), float(r["reg"])) for r in table] == [
        (0.05, 0.0), (0.05, 0.01), (0.2, 0.0), (0.2, 0.01), (1e30, 0.0), (1e30, 0.01)]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["grid_size"] == 6 and summary["diverged"] == 2
    assert summary["best"]["lr"] == result.best["lr"]
    best_cfg = load_config(tmp_path / "best_config.toml")
    assert (best_cfg.optimizer.lr, best_cfg.loss.reg) == (result.best["lr"], result.best["reg"])
    assert best_cfg.sweep.lr == ()
    heatmap = (tmp_path / "heatmap.svg").read_text()
    assert ET.fromstring(heatmap).tag.endswith("svg")
    assert heatmap.count(">diverged<") == 2 and "stroke: #ff0000" in heatmap  # best outlined
    with np.load(tmp_path / "params.npz") as z:
        assert sorted(z.files) == ["W1", "W2", "b1", "b2"]


def test_grid_parsing():
    assert parse_grid(["optimizer.lr=1e-3,1e-2", "loss.reg=0"]) == [
        ("sweep.lr", [1e-3, 1e-2]), ("sweep.reg", [0])]
    cfg = load_config(None, parse_grid(["loss.reg=0,1e-4"]))
    assert grid_of(cfg) == ((cfg.optimizer.lr,), (0.0, 1e-4))
    with pytest.raises(ValueError, match=r"KEY one of optimizer\.lr, loss\.reg.*"
                                         r"'model\.hidden_dim=8,16'"):
        parse_grid(["model.hidden_dim=8,16"])
    with pytest.raises(ValueError, match=r"--grid optimizer\.lr: give at least one value"):
        parse_grid(["optimizer.lr="])
    # a value is checked as the key the user typed in --grid; in the [sweep] table, as its own
    with pytest.raises(ValueError, match=r"--grid optimizer\.lr=1e-3,big: config key "
                                         r"'optimizer\.lr' must be a number; got 'big'"):
        parse_grid(["optimizer.lr=1e-3,big"])
    with pytest.raises(TypeError, match=r"'sweep\.lr\[0\]' must be a number; got 'big'"):
        load_config(None, [("sweep.lr", ["big"])])


def _row(val_acc, train_loss):
    return {"lr": 0.1, "reg": 0.0, "train_loss": train_loss, "train_acc": 0.5,
            "val_acc": val_acc, "diverged_epoch": None}


def test_ties_in_val_accuracy_go_to_the_lowest_train_loss():
    nan = float("nan")
    rows = [_row(0.9, 0.5), _row(0.95, 0.4), _row(nan, nan), _row(0.95, 0.2), _row(0.95, 0.3)]
    assert pick_best(rows) == (3, 3)
    assert pick_best([_row(0.9, 0.5), _row(0.8, 0.1)]) == (0, 1)
    assert pick_best([_row(nan, nan)]) == (None, 0)


def test_sweep_reports_the_tie(tmp_path, capsys):
    # reg is far too small to change a prediction in 1 epoch: the two runs tie on val acc
    cfg = load_config(None, [*TINY, "train.epochs=1", "sweep.lr=[0.05]",
                             "sweep.reg=[0.0, 1e-9]"])
    result = run_sweep(cfg, tmp_path, progress=False)
    assert result.rows[0]["val_acc"] == result.rows[1]["val_acc"]
    assert result.best["tied"] == 2
    losses = [r["train_loss"] for r in result.rows]
    assert result.best["train_loss"] == min(losses)
    assert json.loads((tmp_path / "summary.json").read_text())["tied_best"] == 2
    print_sweep(result)
    out = " ".join(capsys.readouterr().out.split())  # rich wraps long lines
    assert "(2 runs tied on val accuracy; picked the lowest train loss)" in out
