"""The ConvNet in training: its shipped configs, dropout's keys, and --resume bit for bit."""

import json

import chex
import jax
import numpy as np
import pytest
from data_files import write_cifar_folder

from jaxprop import models
from jaxprop.cli import main
from jaxprop.train import Trainer, load_data, train
from jaxprop.train.experiment import load_config


@pytest.fixture(scope="module")
def digits():
    return load_data(load_config())


def _small(*sets):
    """The ConvNet on 192 digits, small enough to train in seconds; dropout and batch norm on."""
    return load_config("digits_convnet", [
        "data.num_train=192", "model.num_filters=4", "model.filter_size=3",
        "model.hidden_dim=16", "model.batchnorm=true", "model.dropout_keep=0.5",
        "train.batch_size=32", "train.epochs=4", *sets])


@pytest.mark.slow
def test_digits_convnet_reaches_its_accuracy(digits, tmp_path):
    cfg = load_config("digits_convnet")  # as shipped
    result = train(cfg, tmp_path, dataset=digits, progress=False, write_plots=False)
    assert result.status == "completed"
    assert result.summary["model"] == "convnet"
    assert result.summary["test_accuracy"] >= 0.98
    assert result.params["W1"].shape == (32, 1, 7, 7)  # 32 filters of 7x7 on 1x8x8 images


@pytest.mark.slow
def test_resume_with_dropout_is_bit_identical(tmp_path):
    """Four epochs straight, and two then ``jaxprop train --resume`` to four: the same bits,
    dropout and batch norm on."""
    cfg = _small()
    data = load_data(cfg)  # its 192 examples, as the resumed run loads them
    straight = train(cfg, tmp_path / "a", dataset=data, progress=False, write_plots=False)
    train(_small("train.epochs=2"), tmp_path / "b", dataset=data, progress=False,
          write_plots=False)
    assert main(["train", "--quiet", "--out", str(tmp_path / "b"), "--resume", "--set",
                 "train.epochs=4"]) == 0
    with np.load(tmp_path / "b" / "params.npz") as z:
        resumed = {k: z[k] for k in z.files}
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["resumed_from_epoch"] == 2
    chex.assert_trees_all_equal(resumed, straight.params)
    # and dropout did drop: without it the same run ends elsewhere
    kept = train(_small("model.dropout_keep=1.0"), tmp_path / "c", dataset=data,
                 progress=False, write_plots=False)
    assert not np.array_equal(kept.params["W3"], straight.params["W3"])


def test_each_step_draws_its_own_masks_the_same_in_every_pipeline():
    """One epoch by our VJP rules and by jax.grad of the plain-jnp twin: the same masks
    (the same parameters, to float32 rounding), which differ from step to step and epoch to
    epoch."""
    params, data = {}, load_data(_small())
    for pipeline in ("reverse", "jax"):
        # SGD: under batch norm b1 and b2 get a gradient of 0 plus rounding, which Adam's
        # normalisation would blow up to steps of lr in either direction
        trainer = Trainer(_small(f"train.pipeline={pipeline}", "optimizer.name=sgd",
                                 "optimizer.lr=0.05"), data)
        (params[pipeline], _), stats, _ = trainer.run_epoch(trainer.init_state(), 0)
        assert stats["finite"]
    chex.assert_trees_all_close(jax.device_get(params["reverse"]),
                                jax.device_get(params["jax"]), rtol=2e-4, atol=2e-5)
    from jaxprop.train import engine

    key = trainer.dropout_key
    masks = [np.asarray(jax.random.bernoulli(engine.step_key((key, e), s), 0.5, (32, 16)))
             for e, s in ((0, 0), (0, 1), (1, 0))]
    assert not np.array_equal(masks[0], masks[1]) and not np.array_equal(masks[0], masks[2])


def test_cifar10_convnet_trains_on_cifar_format_files(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar_folder(folder, per_batch=20, n_test=10)
    cfg = load_config("cifar10_convnet", [f"data.root={folder}", "model.num_filters=4",
                                          "model.hidden_dim=8", "train.batch_size=10",
                                          "model.batchnorm=true", "model.dropout_keep=0.8"])
    result = train(cfg, tmp_path / "run", progress=False, write_plots=False)
    assert result.status == "completed"
    assert result.params["W1"].shape == (4, 3, 7, 7)  # 3x32x32 images
    assert result.params["W2"].shape == (4 * 16 * 16, 8)
    assert 0 <= result.summary["test_accuracy"] <= 1
    assert np.isfinite(result.summary["final_train_loss"])


def test_convnet_reads_rows_as_the_datasets_lay_them_out():
    """A dataset row is an image flattened in H, W, C order: the ConvNet sees it as NCHW."""
    rng = np.random.default_rng(0)
    images = rng.normal(size=(2, 3, 4, 4)).astype(np.float32)  # NCHW
    rows = images.transpose(0, 2, 3, 1).reshape(2, -1)  # H, W, C: CIFAR's layout
    params = models.convnet_init(jax.random.key(0), (3, 4, 4), 5, num_filters=2,
                                 filter_size=3, hidden_dim=6, weight_scale=0.5)
    chex.assert_trees_all_close(models.convnet_scores(params, rows),
                                models.convnet_scores(params, images), rtol=1e-6)
    assert models.image_shape("t", 64) == (1, 8, 8) and models.image_shape("t", 3072) == \
        (3, 32, 32)


@pytest.mark.parametrize("sets, match", [
    (["data.bias_trick=true"], "model.kind='convnet' has its own biases: set "
                               "data.bias_trick = false"),
    (["model.filter_size=4"], "config key 'model.filter_size' must be odd"),
    (["model.dropout_keep=0"], "model.dropout_keep"),
])
def test_convnet_config_mistakes_are_one_line_errors(sets, match, digits):
    with pytest.raises(ValueError, match=match):
        cfg = load_config("digits_convnet", sets)
        Trainer(cfg, load_data(cfg) if "data.bias_trick=true" in sets else digits)
