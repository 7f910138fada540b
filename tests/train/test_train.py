"""The training engine: accuracy of the shipped configs, pipelines, outputs, NaN stop, signals."""

import base64
import json
import signal
import xml.etree.ElementTree as ET

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxprop
from jaxprop import reference
from jaxprop.losses import LOSSES
from jaxprop.models import MODELS
from jaxprop.train import EXIT_DIVERGED, Trainer, engine, load_data, memory, train
from jaxprop.train.experiment import load_config
from jaxprop.train.plots import class_templates

THRESHOLDS = {"digits_two_layer": 0.97, "digits_linear_softmax": 0.95,
              "digits_linear_svm": 0.94}


@pytest.fixture(scope="module")
def digits():
    return load_data(load_config())


@pytest.mark.parametrize("name", sorted(THRESHOLDS))
def test_shipped_digits_configs_reach_the_issue_accuracy(name, digits, tmp_path):
    cfg = load_config(name)  # as shipped: every epoch
    linear = cfg.model.kind == "linear"
    result = train(cfg, tmp_path, dataset=digits, progress=False, write_plots=linear)
    assert result.status == "completed"
    assert result.summary["test_accuracy"] >= THRESHOLDS[name]
    assert result.summary["epochs"] == cfg.train.epochs
    if linear:
        assert (tmp_path / "templates.svg").stat().st_size > 1000


def _tiny(pipeline, **extra):
    sets = [f"train.pipeline={pipeline}", "data.num_train=128", "model.hidden_dim=8",
            "train.batch_size=32", "train.epochs=1", "optimizer.name=sgd",
            "optimizer.lr=0.1", *[f"{k}={v}" for k, v in extra.items()]]
    return load_config(None, sets)


def _one_epoch(cfg, events=None):
    ds = load_data(cfg)
    trainer = Trainer(cfg, ds)
    state = trainer.init_state()
    if events is not None:
        with jaxprop.observe(lambda e: events.add(e.kind)):
            trainer.compile(state)
    (params, _), stats, _ = trainer.run_epoch(state, 0)
    return jax.device_get(params), stats


def test_three_pipelines_train_to_the_same_parameters():
    seen = {p: set() for p in ("reverse", "forward", "jax")}
    params = {p: _one_epoch(_tiny(p), seen[p])[0] for p in seen}
    # the rules that ran: our VJP rules, our JVP rules, and for "jax" none of ours at all:
    # JAX's own autodiff of the plain-jnp twin (jaxprop.reference), no gate event of any kind
    assert "vjp" in seen["reverse"] and "jvp" not in seen["reverse"]
    assert "jvp" in seen["forward"] and "vjp" not in seen["forward"]
    assert seen["jax"] == set()
    # float32 sums in a different order: agree to a few float32 ulps of the O(1) weights
    chex.assert_trees_all_close(params["forward"], params["reverse"], atol=2e-6, rtol=0)
    chex.assert_trees_all_close(params["jax"], params["reverse"], atol=2e-6, rtol=0)


@pytest.mark.parametrize("loss", ["svm", "softmax"])
@pytest.mark.parametrize("model", ["linear", "two_layer"])
def test_plain_twins_match_the_gate_models_and_losses(model, loss):
    x = jax.random.normal(jax.random.key(0), (5, 4), jnp.float32)
    y = jnp.array([0, 2, 1, 2, 0], jnp.int32)
    params = MODELS[model].init(jax.random.key(1), 4, 3, hidden_dim=6, weight_scale=None,
                                bias=True, dtype=jnp.float32)
    params = jax.tree.map(lambda p: p + 0.5 * jax.random.normal(jax.random.key(2), p.shape,
                                                                p.dtype), params)
    reg = jnp.float32(0.1)
    gated = engine.objective_fn(MODELS[model], LOSSES[loss])
    ours = jax.jit(jaxprop.reverse.value_and_grad(gated))(params, x, y, reg)
    twin = engine.objective_fn(MODELS[model], LOSSES[loss], twin=True)
    with jaxprop.observe(lambda e: pytest.fail(f"plain twin ran gate {e.kind}")):
        theirs = jax.jit(jax.value_and_grad(twin))(params, x, y, reg)
    chex.assert_trees_all_close(theirs, ours, rtol=1e-5, atol=1e-6)
    # every model and loss has its twin in jaxprop.reference
    for entry in (*MODELS.values(), *LOSSES.values()):
        assert getattr(reference, entry.reference.__name__) is entry.reference


def test_forward_pipeline_warns_for_big_models():
    with pytest.warns(UserWarning, match="one JVP per parameter: 38410 JVPs per step"):
        engine.value_and_grad_fn("forward", MODELS["two_layer"], LOSSES["softmax"],
                                 num_params=38410)


def test_same_config_same_bits(digits, tmp_path):
    cfg = load_config("digits_linear_svm", ["train.epochs=3"])
    a = train(cfg, tmp_path / "a", dataset=digits, progress=False, write_plots=False)
    b = train(cfg, tmp_path / "b", dataset=digits, progress=False, write_plots=False)
    chex.assert_trees_all_equal(a.params, b.params)
    c = train(load_config("digits_linear_svm", ["train.epochs=3", "seed=1"]), tmp_path / "c",
              dataset=digits, progress=False, write_plots=False)
    assert not np.array_equal(a.params["W"], c.params["W"])


def test_outputs_of_a_run(digits, tmp_path):
    cfg = load_config("digits_linear_softmax", ["train.epochs=2", "data.bias_trick=true"])
    ds = load_data(cfg)
    result = train(cfg, tmp_path, dataset=ds, progress=False)
    assert load_config(tmp_path / "config.toml") == cfg
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [1, 2]
    assert set(lines[0]) == {"epoch", "train_loss", "train_acc", "val_acc", "lr", "seconds"}
    assert lines[1]["lr"] == pytest.approx(cfg.optimizer.lr * cfg.optimizer.lr_decay)
    summary = json.loads((tmp_path / "summary.json").read_text())
    for key in ("test_accuracy", "val_accuracy", "train_seconds", "steps", "devices",
                "pipeline"):
        assert key in summary
    assert summary["steps"] == 2 * (ds.x_train.shape[0] // cfg.train.batch_size)
    assert summary["devices"] == jax.device_count()
    with np.load(tmp_path / "params.npz") as z:
        # bias trick: no separate b, the last row of W is the bias (CS231n LinearClassifier)
        assert sorted(z.files) == ["W"]
        chex.assert_shape(z["W"], (65, 10))  # 64 pixels + the bias-trick row
        np.testing.assert_array_equal(z["W"], result.params["W"])
    for name in ("loss.svg", "accuracy.svg", "templates.svg"):
        root = ET.parse(tmp_path / name).getroot()
        assert root.tag.endswith("svg"), name
    svg = "{http://www.w3.org/2000/svg}"
    curves = {g.get("id"): g for g in ET.parse(tmp_path / "accuracy.svg").getroot().iter(
        f"{svg}g") if g.get("id", "").startswith("curve ")}
    assert sorted(curves) == ["curve train", "curve val"]
    assert all(len(list(g.iter(f"{svg}use"))) == len(result.metrics)  # a marker per epoch
               for g in curves.values())
    images = list(ET.parse(tmp_path / "templates.svg").getroot().iter(f"{svg}image"))
    assert [i.get("id") for i in images] == [f"template {c}" for c in ds.class_names]
    href = "{http://www.w3.org/1999/xlink}href"
    assert all(base64.b64decode(i.get(href).split(",", 1)[1])[:4] == b"\x89PNG"
               for i in images)


def _init(cfg, in_dim, num_classes):
    """The config's initial parameters, as the Trainer makes them."""
    return MODELS[cfg.model.kind].init(jax.random.key(0), in_dim, num_classes,
                                       hidden_dim=cfg.model.hidden_dim,
                                       weight_scale=cfg.model.weight_scale,
                                       bias=not cfg.data.bias_trick, dtype=jnp.float32)


def test_bias_trick_initialises_w_only_and_regularises_the_bias_row():
    trick = load_config(None, ["model.kind=linear", "data.bias_trick=true"])
    params = _init(trick, 65, 10)
    assert sorted(params) == ["W"]
    chex.assert_shape(params["W"], (65, 10))
    no_trick = load_config(None, ["model.kind=linear"])
    assert sorted(_init(no_trick, 64, 10)) == ["W", "b"]
    # the bias row is regularised with W: the penalty's gradient 2 * reg * W reaches row 64
    x = jnp.zeros((4, 65), jnp.float32)
    y = jnp.zeros((4,), jnp.int32)
    w = {"W": jnp.ones((65, 10), jnp.float32)}
    reg = jnp.float32(0.5)
    for pipeline in ("reverse", "jax"):
        cfg = load_config(None, ["model.kind=linear", "data.bias_trick=true",
                                 f"train.pipeline={pipeline}"])
        vg = engine.value_and_grad_fn(cfg.train.pipeline, MODELS["linear"], LOSSES["softmax"])
        _, grads = jax.jit(vg)(w, x, y, reg)
        assert sorted(grads) == ["W"]
        # x = 0: the data loss sends no gradient to W; 2 * reg * W = 1 on every row
        chex.assert_trees_all_close(grads["W"][64], jnp.ones((10,), jnp.float32), atol=1e-6)


def test_class_templates_drop_the_bias_row_and_rescale():
    w = np.arange(65 * 10, dtype=np.float32).reshape(65, 10)
    t = class_templates(w, (8, 8), bias_trick=True)
    chex.assert_shape(t, (10, 8, 8))
    assert t.min() == 0.0 and t.max() == 1.0
    np.testing.assert_allclose(t[3].reshape(-1), (w[:64, 3] - w[:64].min()) / np.ptp(w[:64]))
    with pytest.raises(ValueError, match=r"W has 65 rows .*need 64"):
        class_templates(w, (8, 8), bias_trick=False)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(digits, tmp_path):
    cfg = load_config("digits_linear_svm", ["optimizer.lr=1e30", "train.epochs=5"])
    result = train(cfg, tmp_path, dataset=digits, progress=False, write_plots=False)
    assert result.status == "diverged" and result.exit_code == EXIT_DIVERGED
    assert "diverged in epoch" in result.message
    assert "learning rate is likely too high (optimizer.lr=1e+30)" in result.message
    epoch = int(result.message.split("diverged in epoch ")[1].split(":")[0])
    assert result.summary["epochs"] == epoch - 1
    with np.load(tmp_path / "params.npz") as z:
        assert np.isfinite(z["W"]).all()
        np.testing.assert_array_equal(z["W"], result.params["W"])
    with np.load(tmp_path / "checkpoint.npz") as z:
        assert int(z["epoch"]) == epoch - 1


def test_batch_larger_than_the_training_set(digits):
    with pytest.raises(ValueError, match=r"'train\.batch_size' \(5000\) exceeds the 1444"):
        Trainer(load_config(None, ["train.batch_size=5000"]), digits)


def test_sigterm_finishes_the_epoch_saves_and_resumes(digits, tmp_path):
    cfg = load_config("digits_linear_svm", ["train.epochs=4"])

    def stop(epoch, stats):
        if epoch == 1:
            signal.raise_signal(signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    result = train(cfg, tmp_path, dataset=digits, progress=False, write_plots=False,
                   on_epoch_end=stop)
    assert signal.getsignal(signal.SIGTERM) is before  # handler restored
    assert result.status == "interrupted" and result.exit_code == 128 + signal.SIGTERM
    assert "stopped after epoch 1 of 4" in result.message and "--resume" in result.message
    assert result.summary["epochs"] == 1
    resumed = train(cfg, tmp_path, dataset=digits, progress=False, write_plots=False,
                     resume=True)
    full = train(cfg, tmp_path / "full", dataset=digits, progress=False, write_plots=False)
    chex.assert_trees_all_equal(resumed.params, full.params)
    assert [m["epoch"] for m in resumed.metrics] == [1, 2, 3, 4]


def test_torn_last_metrics_line_is_dropped_on_resume(digits, tmp_path):
    cfg = load_config("digits_linear_svm", ["train.epochs=2"])
    train(load_config("digits_linear_svm", ["train.epochs=1"]), tmp_path, dataset=digits,
          progress=False, write_plots=False)
    metrics = tmp_path / "metrics.jsonl"
    with open(metrics, "a") as f:
        f.write('{"epoch": 2, "train_lo')  # a crash in the middle of an append
    resumed = train(cfg, tmp_path, dataset=digits, progress=False, write_plots=False,
                    resume=True)
    assert [m["epoch"] for m in resumed.metrics] == [1, 2]
    lines = metrics.read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2]  # rewritten without the tear


def test_damaged_metrics_line_before_the_last_names_file_and_line(tmp_path):
    from jaxprop.train.rundir import read_metrics as _read_metrics

    metrics = tmp_path / "metrics.jsonl"
    good = '{"epoch": 1, "train_loss": 1.0}\n{"epoch": 2, "train_loss": 0.5}\n'
    metrics.write_text(good + '{"epoch": 3, "tra')
    assert [m["epoch"] for m in _read_metrics(metrics, upto=5)] == [1, 2]
    metrics.write_text("not json\n" + good)
    with pytest.raises(ValueError, match=r"metrics\.jsonl' line 1 is not a metrics record"):
        _read_metrics(metrics, upto=5)
    metrics.write_text(good.replace("\n", "\n\n[1, 2]\n", 1))
    with pytest.raises(ValueError, match=r"metrics\.jsonl' line 3 is not a metrics record"):
        _read_metrics(metrics, upto=5)


def test_absurd_size_is_refused_before_compiling(digits):
    cfg = load_config(None, ["model.hidden_dim=100000000"])
    with pytest.raises(ValueError, match=r"needs about \d+\.\d GiB \(model\.hidden_dim="
                                         r"100000000, train\.batch_size=64.*over the budget"):
        Trainer(cfg, digits)
    est = memory.estimate_bytes(load_config(), 64, 10, num_eval=1444)
    assert est["total"] < 2**24  # the default run: a few MB
    assert est["params"] == 4 * 3 * (64 * 128 + 128 + 128 * 10 + 10)
    with pytest.raises(ValueError, match=r"train\.batch_size=64.*budget of 0\.0 GiB"):
        memory.check_memory(load_config(), 64, 10, num_eval=1444, budget=1000)


# --------------------------------------------------------------- divergence bookkeeping


@pytest.mark.parametrize("sets, culprit, where", [
    (["loss.reg=1e30", "optimizer.lr=0.1"], "The regularisation is likely too strong "
     "(loss.reg=1e+30", "the loss, at step 2 of the epoch"),
    (["model.weight_scale=1e20"], "The initial weights are likely too large "
     "(model.weight_scale=1e+20)", "the loss, at step 1 of the epoch"),
])
def test_divergence_names_the_likely_culprit_and_where(sets, culprit, where, digits, tmp_path):
    cfg = load_config("digits_linear_svm", ["train.epochs=3", *sets])
    result = train(cfg, tmp_path, dataset=digits, progress=False, write_plots=False)
    assert result.status == "diverged" and result.exit_code == EXIT_DIVERGED
    assert culprit in result.message and where in result.message
    assert "learning rate" not in result.message  # not blamed when it is not the cause
    with np.load(tmp_path / "checkpoint.npz") as z:  # the last good one is finite
        assert all(np.isfinite(z[k]).all() for k in z.files if k.startswith("leaf_"))


def test_culprit_from_the_config_and_the_first_non_finite_value():
    from jaxprop.train import divergence

    small = {"W": np.full((4, 3), 1e-3, np.float32), "b": np.zeros(3, np.float32)}
    huge = {"W": np.full((4, 3), 1e20, np.float32), "b": np.zeros(3, np.float32)}
    first_loss = {"step": 1, "what": "loss", "leaves": []}
    later_grad = {"step": 4, "what": "gradient", "leaves": ["W"]}

    def cfg(*sets):
        return load_config("digits_linear_svm", list(sets))

    # before any update the learning rate cannot be to blame
    assert divergence.culprit(cfg("optimizer.lr=1e30", "model.weight_scale=1e20"), 0,
                              first_loss, huge) == "model.weight_scale"
    assert divergence.culprit(cfg("loss.reg=1e36"), 0, first_loss, small) == "loss.reg"
    assert divergence.culprit(cfg(), 0, first_loss, small) == "inputs"
    # later: the key furthest above its usual range; the learning rate when none is
    assert divergence.culprit(cfg("optimizer.lr=1e30"), 2, later_grad, small) == "optimizer.lr"
    assert divergence.culprit(cfg("loss.reg=1e20", "optimizer.lr=10"), 2, later_grad,
                              small) == "loss.reg"
    assert divergence.culprit(cfg(), 2, later_grad, small) == "optimizer.lr"
    assert divergence.where_text(later_grad) == (
        "the first values that were not finite were the gradients of W, at step 4 of the "
        "epoch (the loss was still finite)")
    assert "parameters W1, b1, after the update of step 2" in divergence.where_text(
        {"step": 2, "what": "parameters", "leaves": ["W1", "b1"]})


def test_the_replay_finds_the_step_and_the_leaf(digits):
    cfg = load_config("digits_linear_svm", ["optimizer.lr=1e30"])
    trainer = Trainer(cfg, digits)
    state = trainer.init_state()
    new, stats, _ = trainer.run_epoch(state, 0)
    assert not stats["finite"]
    where = trainer.diagnose(state, 0)
    assert where["step"] is not None and where["what"] in ("loss", "gradient", "parameters")
    # the steps before it were finite: running them alone stays finite
    assert where["step"] > 1


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_initial_parameters_that_are_not_finite_are_never_saved(digits, tmp_path):
    import dataclasses

    cfg = load_config("digits_linear_svm", ["train.epochs=2"])
    # past the config's float32 check (model.weight_scale=1e39 is refused there), the run
    # itself refuses to save an initial state full of Inf as "epoch 0"
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, weight_scale=1e39))
    with pytest.raises(ValueError, match=r"the initial parameters are not finite \(W holds NaN "
                                         r"or Inf\): model\.weight_scale=1e\+39 is too large"):
        train(cfg, tmp_path / "R", dataset=digits, progress=False, write_plots=False)
    assert not (tmp_path / "R").exists()


def test_preprocess_none_means_none(digits, tmp_path):
    cfg = load_config("digits_linear_svm", ["data.preprocess=none", "train.epochs=1"])
    assert cfg.data.preprocess == "none"
    raw = load_data(cfg)
    assert raw.preprocess == "none"
    assert raw.x_train.min() == 0.0 and raw.x_train.max() == 16.0  # pixels as they are
    np.testing.assert_array_equal(raw.mean, np.zeros(64, np.float32))
    from jaxprop.train.experiment import to_toml

    path = tmp_path / "none.toml"
    path.write_text(to_toml(cfg))
    assert 'preprocess = "none"' in path.read_text()
    assert load_config(path).data.preprocess == "none"  # and back through TOML
    a = train(cfg, tmp_path / "none", progress=False, write_plots=False)
    b = train(load_config("digits_linear_svm", ["train.epochs=1"]), tmp_path / "course",
              dataset=digits, progress=False, write_plots=False)
    assert not np.array_equal(a.params["W"], b.params["W"])


@pytest.mark.parametrize("gemm", ["eigen", "onednn"])
def test_each_cpu_gemm_backend_trains_to_the_default_numbers(gemm):
    """train.cpu_gemm compiles the epoch with other matmul kernels: float32 rounding apart,
    the same training (and it reaches the compiled program: eigen has no library fusion)."""
    sets = ["data.num_train=256", "model.hidden_dim=16", "train.batch_size=32",
            "train.epochs=2"]
    cfg = load_config(None, sets)
    ds = load_data(cfg)

    def fit(cfg):
        trainer = Trainer(cfg, ds)
        state = trainer.init_state()
        for epoch in range(cfg.train.epochs):
            state, stats, _ = trainer.run_epoch(state, epoch)
        return trainer, jax.device_get(state[0]), stats

    base, p0, s0 = fit(cfg)
    other, p1, s1 = fit(load_config(None, [*sets, f"train.cpu_gemm={gemm}"]))
    assert other._compiled is not base._compiled
    if gemm == "eigen":
        assert "ynn_fusion" not in other._compiled.as_text()
    for name in p0:
        np.testing.assert_allclose(p1[name], p0[name], rtol=1e-4, atol=1e-6, err_msg=name)
    assert abs(s1["train_loss"] - s0["train_loss"]) <= 1e-5 * abs(s0["train_loss"])


def test_an_unknown_cpu_gemm_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="train.cpu_gemm.*default.*eigen.*onednn"):
        load_config(None, ["train.cpu_gemm=mkl"])
