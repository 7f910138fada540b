"""Checkpoints: atomic writes, exact round trips, clear errors, bit-exact resume."""

import json
import os
import stat

import chex
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxprop.train import checkpoint, load_data, train
from jaxprop.train.experiment import load_config


def _state():
    params = {"W": jnp.arange(6, dtype=jnp.float32).reshape(3, 2),
              "b": jnp.ones((2,), jnp.float32)}
    return params, optax.adam(1e-3).init(params)


def test_atomic_write_replaces_whole_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "sub" / "file.txt"
    checkpoint.atomic_write_text(path, "old")
    checkpoint.atomic_write_text(path, "new")
    assert path.read_text() == "new"
    assert [p.name for p in path.parent.iterdir()] == ["file.txt"]


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_atomic_write_gives_the_umask_mode_not_0600(tmp_path, umask):
    old = os.umask(umask)
    try:
        checkpoint.atomic_write_text(tmp_path / "a.txt", "x")
        checkpoint.save_npz(tmp_path / "p.npz", {"W": np.zeros((2, 2), np.float32)})
    finally:
        os.umask(old)
    for name in ("a.txt", "p.npz"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask, name


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    checkpoint.atomic_write_bytes(path, b"good")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.atomic_write_bytes(path, b"half")
    assert path.read_bytes() == b"good"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.npz"]


def test_round_trip_is_exact(tmp_path):
    state = _state()
    checkpoint.save_checkpoint(tmp_path / "c.npz", 7, state, {"steps": 70})
    epoch, loaded, extra = checkpoint.load_checkpoint(tmp_path / "c.npz", state)
    assert epoch == 7 and extra == {"steps": 70}
    chex.assert_trees_all_equal(loaded, state)
    chex.assert_trees_all_equal_structs(loaded, state)


def test_missing_and_mismatched_checkpoints(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no checkpoint to resume from: '.*c\.npz'"):
        checkpoint.load_checkpoint(tmp_path / "c.npz", _state())
    checkpoint.save_checkpoint(tmp_path / "c.npz", 1, _state())
    params = {"W": jnp.zeros((3, 2), jnp.float32), "b": jnp.zeros((2,), jnp.float32)}
    with pytest.raises(ValueError, match=r"does not match this config.*optimizer\.name"):
        checkpoint.load_checkpoint(tmp_path / "c.npz", (params, optax.sgd(0.1).init(params)))
    wide = {"W": jnp.zeros((4, 2), jnp.float32), "b": jnp.zeros((2,), jnp.float32)}
    with pytest.raises(ValueError, match=r"array 0 has shape \(3, 2\) float32.*\(4, 2\)"):
        checkpoint.load_checkpoint(tmp_path / "c.npz", (wide, optax.adam(1e-3).init(wide)))
    (tmp_path / "torn.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(ValueError, match=r"torn\.npz' is unreadable"):
        checkpoint.load_checkpoint(tmp_path / "torn.npz", _state())


def test_resumed_run_matches_an_uninterrupted_one_bit_for_bit(tmp_path):
    cfg4 = load_config(None, ["train.epochs=4", "model.hidden_dim=16"])
    ds = load_data(cfg4)
    full = train(cfg4, tmp_path / "full", dataset=ds, progress=False, write_plots=False)
    cfg2 = load_config(None, ["train.epochs=2", "model.hidden_dim=16"])
    half = train(cfg2, tmp_path / "split", dataset=ds, progress=False, write_plots=False)
    assert half.summary["epochs"] == 2
    # resume with train.epochs overridden to 4: the last two epochs see the same batches
    resumed = train(cfg4, tmp_path / "split", dataset=ds, progress=False, write_plots=False,
                     resume=True)
    chex.assert_trees_all_equal(resumed.params, full.params)
    assert resumed.summary["steps"] == full.summary["steps"]
    assert resumed.summary["resumed_from_epoch"] == 2
    lines = (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()
    full_lines = (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()
    drop = ("seconds",)
    assert [{k: v for k, v in json.loads(x).items() if k not in drop} for x in lines] == \
        [{k: v for k, v in json.loads(x).items() if k not in drop} for x in full_lines]
    with np.load(tmp_path / "split" / "checkpoint.npz") as z:
        assert int(z["epoch"]) == 4
