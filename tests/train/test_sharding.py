"""Data parallelism: 4 CPU devices (in a subprocess) train to the parameters of 1 device, and
a sweep spreads its models over them."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np

from jaxprop.train import sharding

SCRIPT = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    from jaxprop.train.experiment import load_config
    from jaxprop.train import Trainer, load_data, sharding, train
    from jaxprop.train.sweep import run_sweep, sweep_trainer

    assert jax.device_count() == 4, jax.devices()
    cfg = load_config(None, ["data.num_train=256", "model.hidden_dim=16",
                             "train.batch_size=32", "train.epochs=2"])
    ds = load_data(cfg)

    def fit(mesh):
        trainer = Trainer(cfg, ds, mesh)
        state = trainer.init_state()
        for epoch in range(cfg.train.epochs):
            state, stats, _ = trainer.run_epoch(state, epoch)
        return trainer, jax.device_get(state[0]), state[0]

    four, p4, live = fit(sharding.make_mesh())
    one, p1, _ = fit(sharding.make_mesh(jax.devices()[:1]))
    result = train(cfg, sys.argv[1], dataset=ds, progress=False, write_plots=False)
    try:
        Trainer(load_config(None, ["train.batch_size=30"]), ds)
        error = ""
    except ValueError as err:
        error = str(err)
    sweep_cfg = load_config(None, ["data.num_train=256", "model.hidden_dim=16",
                                   "train.batch_size=30", "train.epochs=2",
                                   "sweep.lr=[1e-3, 3e-3]", "sweep.reg=[0.0, 1e-3]"])

    def sweep(mesh):
        trainer = sweep_trainer(sweep_cfg, ds, mesh)
        result = run_sweep(sweep_cfg, progress=False, write=False, trainer=trainer)
        return trainer, np.array([r["train_loss"] for r in result.rows]), result.params

    g4, loss4, best4 = sweep(sharding.make_mesh())
    g1, loss1, best1 = sweep(sharding.make_mesh(jax.devices()[:1]))
    state = g4.init_state()
    print(json.dumps({
        "grid_split": g4.split_grid and not g1.split_grid,
        "grid_spec": str(state[0]["W1"].sharding.spec),
        "grid_devices": len(state[0]["W1"].sharding.device_set),
        "grid_all_reduce": "all-reduce" in g4._compiled.as_text(),
        "grid_loss_diff": float(np.max(np.abs(loss4 - loss1) / np.abs(loss1))),
        "grid_best_diff": max(float(np.max(np.abs(best4[k] - best1[k]))) for k in best1),
        "max_abs_diff": max(float(np.max(np.abs(p4[k] - p1[k]))) for k in p1),
        "max_abs": max(float(np.max(np.abs(p1[k]))) for k in p1),
        "param_devices": len(live["W1"].sharding.device_set),
        "replicated": live["W1"].sharding.is_fully_replicated,
        "all_reduce": "all-reduce" in four._compiled.as_text(),
        "all_reduce_single": "all-reduce" in one._compiled.as_text(),
        "summary_devices": result.summary["devices"],
        "error": error,
    }))
""")


def test_four_devices_match_one_device(tmp_path):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               JAX_PLATFORMS="cpu", JAXPROP_CACHE_DIR="off")
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "run")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    # the gradient all-reduce sums the 4 shards in another order: float32 rounding only,
    # O(1e-7) relative per step, over 16 Adam steps
    assert out["max_abs_diff"] <= 1e-5 * max(1.0, out["max_abs"])
    assert out["param_devices"] == 4 and out["replicated"]
    assert out["all_reduce"] and not out["all_reduce_single"]
    assert out["summary_devices"] == 4
    assert "'train.batch_size' (30) must be divisible by the number of devices (4)" in \
        out["error"]
    assert "try 28 or 32" in out["error"]
    # a 2 x 2 sweep on 4 devices: one model per device, whole batches (30, not divisible by
    # 4, is fine), no communication; the same numbers as on one device up to float32
    # rounding of the differently blocked products
    assert out["grid_split"] and out["grid_spec"] == "P('data',)"
    assert out["grid_devices"] == 4 and not out["grid_all_reduce"]
    assert out["grid_loss_diff"] <= 1e-5 and out["grid_best_diff"] <= 1e-5


def test_single_device_mesh_accepts_any_batch_size():
    import jax

    mesh = sharding.make_mesh(jax.devices()[:1])
    assert mesh.axis_names == ("data",) and mesh.devices.size == 1
    sharding.check_batch_size(33, mesh)  # no error: one device takes the whole batch
    assert sharding.batch_sharding(mesh).spec == jax.sharding.PartitionSpec("data")
    assert sharding.replicated(mesh).is_fully_replicated


def test_batches_from_host_are_the_gathered_batches():
    """The host path of a multi-process run, on one process: its part is every batch."""
    x = np.arange(40, dtype=np.float32).reshape(10, 4)
    order = np.array([[3, 1], [0, 9], [7, 7]])
    mesh = sharding.make_mesh()
    xb = sharding.batches_from_host(x, order, mesh)
    assert sharding.local_batch_slice(mesh, 2) == slice(0, 2)
    np.testing.assert_array_equal(np.asarray(xb), x[order])
    assert xb.sharding.spec == sharding.batches_sharding(mesh).spec
