"""Configs: defaults, shipped TOML files, --set overrides and the errors for bad input."""

import dataclasses
import tomllib
from pathlib import Path

import pytest

from jaxprop import _settings, data
from jaxprop.train import experiment as C

CONFIGS = Path(__file__).resolve().parents[2] / "configs"

SHIPPED = (
    "digits_two_layer", "digits_linear_softmax", "digits_linear_svm", "digits_sweep",
    "cifar10_linear_svm", "cifar10_linear_softmax", "cifar10_two_layer",
    "props_linear_svm", "props_linear_softmax", "props_two_layer",
    "digits_convnet", "cifar10_convnet",
)


CONVNET_KEYS = ("model.num_filters", "model.filter_size", "model.batchnorm", "model.dropout_keep")
"""Keys of the ConvNet alone: the default experiment's two-layer net has no use for them."""


def test_code_defaults_equal_the_default_toml():
    from_file = C.load_config(CONFIGS / "digits_two_layer.toml")
    assert from_file == C.default_config()
    # every key is spelled out in the file, so the two cannot drift apart silently
    raw = tomllib.loads((CONFIGS / "digits_two_layer.toml").read_text())
    assert C.from_dict(raw) == C.Config()
    assert sorted(f"{t}.{k}" for t, v in raw.items() if isinstance(v, dict) for k in v) == \
        sorted(k for k in _settings.keys(C.Config) if "." in k and not k.startswith(("data.root",
               "data.preprocess", "data.num_train", "model.weight_scale",
               *CONVNET_KEYS)))


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_config_loads_by_name_and_by_path(name):
    by_name = C.load_config(name)
    by_path = C.load_config(CONFIGS / f"{name}.toml")
    assert by_name == by_path
    assert by_name.name == name


def test_issue_keys_exist_with_their_names():
    keys = set(_settings.keys(C.Config))
    for key in ("seed", "data.dataset", "data.root", "model.kind", "model.hidden_dim",
                "loss.kind", "loss.reg", "optimizer.name", "optimizer.lr", "train.epochs",
                "train.batch_size", "train.pipeline"):
        assert key in keys


def _choices(key):
    return _settings.choices_of(_settings.leaf(C.Config, key)[0].metadata)


def test_choices_match_the_data_module():
    assert _choices("data.dataset") == tuple(data.DATASETS)
    assert _choices("data.preprocess") == data.PREPROCESS


def test_toml_round_trip():
    cfg = C.load_config(None, ["data.root=/tmp/x y", "model.weight_scale=0.01",
                               "sweep.lr=[1e-3, 1e-2]", "data.bias_trick=true"])
    text = C.to_toml(cfg)
    assert C.from_dict(tomllib.loads(text)) == cfg


def test_overrides_parse_toml_literals_and_bare_words():
    cfg = C.load_config(None, ["optimizer.lr=1e-2", "train.epochs=3", "data.dataset=cifar10",
                               'name="exp one"', "data.bias_trick=true", "loss.reg=0"])
    assert cfg.optimizer.lr == 0.01 and isinstance(cfg.optimizer.lr, float)
    assert cfg.train.epochs == 3
    assert cfg.data.dataset == "cifar10"
    assert cfg.name == "exp one"
    assert cfg.data.bias_trick is True
    assert cfg.loss.reg == 0.0 and isinstance(cfg.loss.reg, float)
    # an optional key goes back to its default with none
    assert C.load_config(None, ["model.weight_scale=1e-2", "model.weight_scale=none"]) \
        .model.weight_scale is None


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        C.default_config().seed = 3


def test_unknown_key_suggests_the_closest():
    with pytest.raises(ValueError, match=r"unknown config key 'optimizer\.lrr'; did you mean "
                                         r"'optimizer\.lr'"):
        C.load_config(None, ["optimizer.lrr=1"])
    with pytest.raises(ValueError, match=r"'lr'; did you mean 'optimizer\.lr'"):
        C.load_config(None, ["lr=1"])
    with pytest.raises(ValueError, match=r"unknown config key 'train\.epoch'.*train\.epochs"):
        C.from_dict({"train": {"epoch": 3}})


def test_wrong_types_name_the_key():
    with pytest.raises(TypeError, match=r"'train\.batch_size' must be an integer; got 1\.5"):
        C.load_config(None, ["train.batch_size=1.5"])
    with pytest.raises(TypeError, match=r"'optimizer\.lr' must be a number; got 'fast'"):
        C.load_config(None, ["optimizer.lr=fast"])
    with pytest.raises(TypeError, match=r"'data\.bias_trick' must be a boolean"):
        C.load_config(None, ["data.bias_trick=1"])
    with pytest.raises(TypeError, match=r"'train\.epochs' must be an integer; got True"):
        C.from_dict({"train": {"epochs": True}})
    with pytest.raises(TypeError, match=r"'optimizer' must be a table"):
        C.from_dict({"optimizer": 3})


@pytest.mark.parametrize("override, match", [
    ("train.batch_size=-1", r"'train\.batch_size' must be >= 1; got -1"),
    ("train.epochs=0", r"'train\.epochs' must be >= 1; got 0"),
    ("optimizer.lr=0", r"'optimizer\.lr' must be > 0\.0; got 0\.0"),
    ("loss.reg=-1e-3", r"'loss\.reg' must be >= 0\.0"),
    ("optimizer.lr_decay=1.5", r"'optimizer\.lr_decay' must be > 0\.0 and <= 1\.0"),
    ("optimizer.momentum=1", r"'optimizer\.momentum' must be >= 0\.0 and < 1\.0"),
    ("optimizer.lr=nan", r"'optimizer\.lr' must be a finite number"),
    ("sweep.lr=[1e-3, -1]", r"'sweep\.lr\[1\]' must be > 0\.0"),
    ("name=a/b", r"'name' must be a non-empty name without '/'"),
])
def test_out_of_range_values(override, match):
    with pytest.raises(ValueError, match=match):
        C.load_config(None, [override])


@pytest.mark.parametrize("override, match", [
    ("data.dataset=imagenet", r"'data\.dataset' must be one of 'digits', 'cifar10', 'props', "
                              r"'mnist'; got 'imagenet'"),
    ("model.kind=mlp", r"'model\.kind' must be one of 'linear', 'two_layer'"),
    ("loss.kind=hinge", r"'loss\.kind' must be one of 'softmax', 'svm'"),
    ("optimizer.name=adamw", r"'optimizer\.name' must be one of 'sgd', 'momentum', 'adam'; "
                             r"got 'adamw' \(did you mean 'adam'\?\)"),
    ("train.pipeline=backward", r"'train\.pipeline' must be one of 'reverse', 'forward', 'jax'"),
    ("data.preprocess=zca", r"'data\.preprocess' must be one of 'cs231n', 'deeprob', 'none'"),
])
def test_unknown_choices_list_the_valid_ones(override, match):
    with pytest.raises(ValueError, match=match):
        C.load_config(None, [override])


def test_bad_override_syntax():
    with pytest.raises(ValueError, match=r"--set expects KEY=VALUE.*got 'optimizer\.lr'"):
        C.load_config(None, ["optimizer.lr"])


def test_missing_config_file_names_it_and_lists_shipped(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"'nope\.toml' not found.*digits_linear_svm"):
        C.load_config("nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("seed = = 3\n")
    with pytest.raises(ValueError, match=r"bad\.toml' is not valid TOML"):
        C.load_config(bad)


def test_file_without_name_takes_the_file_stem(tmp_path):
    path = tmp_path / "quick_run.toml"
    path.write_text("[train]\nepochs = 2\n")
    cfg = C.load_config(path)
    assert cfg.name == "quick_run"
    assert cfg.train.epochs == 2
    assert cfg.model == C.ModelConfig()


@pytest.mark.parametrize("name", ["props_linear_svm", "props_linear_softmax",
                                  "props_two_layer"])
def test_props_configs_say_they_are_untuned_starting_values(name):
    from jaxprop.train.experiment import find_config

    text = find_config(name).read_text()
    assert "Untuned starting values" in text and "NOT verified against P1's" in text
    assert f"jaxprop sweep --config {name}" in text
    C.load_config(name)  # and still a valid experiment


def test_non_training_toml_is_not_an_experiment(tmp_path, monkeypatch):
    from jaxprop.train.experiment import find_config, shipped_configs

    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "tool.toml").write_text('out = "x"\n[width]\nn = 1\n')
    (tmp_path / "configs" / "mine.toml").write_text('[train]\nepochs = 2\n')
    (tmp_path / "configs" / "typo.toml").write_text('[train]\nepochz = 2\n')
    shipped = shipped_configs()
    assert "mine" in shipped and "tool" not in shipped and "typo" not in shipped
    assert C.load_config("mine").train.epochs == 2
    with pytest.raises(ValueError, match=r"config 'tool' \(.*tool\.toml\) is not a training "
                                         r"experiment.*training experiments are: .*mine"):
        find_config("tool")
    # a broken experiment, named: its real error, not "not an experiment"
    with pytest.raises(ValueError, match=r"unknown config key 'train\.epochz'"):
        C.load_config("typo")


@pytest.mark.parametrize("override, match", [
    ("optimizer.lr=1e-50", r"'optimizer\.lr' = 1e-50 becomes 0 \(or loses its precision\) in "
                           r"float32, the training dtype"),
    ("optimizer.lr=1e-40", r"'optimizer\.lr' = 1e-40 becomes 0"),
    ("loss.reg=1e39", r"'loss\.reg' = 1e\+39 becomes Inf in float32"),
    ("loss.reg=1e-45", r"'loss\.reg' = 1e-45 becomes 0"),
    ("model.weight_scale=1e39", r"'model\.weight_scale' = 1e\+39 becomes Inf in float32"),
    ("optimizer.lr_decay=1e-39", r"'optimizer\.lr_decay' = 1e-39 becomes 0"),
    ("sweep.lr=[1e-3, 1e-60]", r"'sweep\.lr\[1\]' = 1e-60 becomes 0"),
    ("sweep.reg=[0, 1e300]", r"'sweep\.reg\[1\]' = 1e\+300 becomes Inf"),
    ("optimizer.lr_decay=0.01", r"'optimizer\.lr' = 0\.003 decays below float32's smallest "
                                r"normal number \(1\.18e-38\) by epoch 19 of train\.epochs=30"),
    ("seed=4294967296", r"'seed' must be >= 0 and <= 4294967295"),
])
def test_values_the_training_dtype_would_change_are_refused(override, match):
    with pytest.raises(ValueError, match=match):
        C.load_config(None, [override])


def test_values_float32_keeps_are_accepted():
    cfg = C.load_config(None, ["loss.reg=0", "optimizer.momentum=0", "optimizer.lr=1e-30",
                               "optimizer.lr_decay=1", "seed=4294967295", "name=" + "n" * 100])
    assert cfg.loss.reg == 0.0 and cfg.optimizer.lr == 1e-30 and cfg.seed == 2**32 - 1


@pytest.mark.parametrize("name, match", [
    ("n" * 101, r"'name' must be at most 100 characters"),
    ("a\tb", r"'name' must be printable"),
    ("a\\b", r"'name' must be a non-empty name without '/'"),
])
def test_names_that_cannot_name_a_folder_are_refused(name, match):
    with pytest.raises(ValueError, match=match):
        C.from_dict({"name": name})
