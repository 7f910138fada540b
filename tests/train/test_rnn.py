"""The recurrent digits experiment: each 8x8 digit read as 8 rows of 8 pixels by an LSTM or
an RNN under lax.scan, trained by our rules with ``jaxprop train --config digits_rnn``."""

import pytest

from jaxprop.train import load_data, train
from jaxprop.train.experiment import load_config


@pytest.fixture(scope="module")
def digits():
    return load_data(load_config("digits_rnn"))


def test_digits_rnn_reaches_its_accuracy(digits, tmp_path):
    cfg = load_config("digits_rnn")  # as shipped: the LSTM
    result = train(cfg, tmp_path, dataset=digits, progress=False, write_plots=False)
    assert result.status == "completed"
    assert result.summary["model"] == "lstm"
    assert result.summary["test_accuracy"] >= 0.95
    assert result.params["Wx"].shape == (8, 4 * 64)  # a row of 8 pixels into i, f, o, g
    assert result.params["Wh"].shape == (64, 4 * 64)


@pytest.mark.slow
def test_digits_rnn_with_the_vanilla_rnn_reaches_its_accuracy(digits, tmp_path):
    cfg = load_config("digits_rnn", ["model.kind=rnn"])
    result = train(cfg, tmp_path, dataset=digits, progress=False, write_plots=False)
    assert result.summary["model"] == "rnn"
    assert result.summary["test_accuracy"] >= 0.95
    assert result.params["Wh"].shape == (64, 64)


def test_the_rnn_models_refuse_the_bias_trick():
    cfg = load_config("digits_rnn", ["data.bias_trick=true", "data.num_train=64",
                                     "train.epochs=1"])
    with pytest.raises(ValueError, match="model.kind='lstm' has its own biases"):
        train(cfg, None, dataset=load_data(cfg), progress=False, write_plots=False)
