"""Data parallelism with JAX's own sharding: the batch split over devices, params replicated.

One ``jax.sharding.Mesh`` with a single ``"data"`` axis spans every device that
``jax.devices()`` lists: one CPU, the GPUs of a host, a TPU slice, or, after
``jax.distributed.initialize()``, the devices of every host. Each step's mini-batch is
constrained to ``P("data")`` (example i of the batch lives on device ``i // (B / n)``), the
parameters and optimizer state to ``P()`` (a full copy everywhere), and XLA inserts the
all-reduce of the gradients. The same code runs unchanged on 1 or n devices.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = ["make_mesh", "batch_sharding", "batches_sharding", "grid_sharding",
           "splits_grid", "replicated", "put", "replicate",
           "local_batch_slice", "batches_from_host", "check_batch_size"]


def make_mesh(devices=None) -> Mesh:
    """A 1-D mesh, axis ``"data"``, over ``devices`` (default: all of ``jax.devices()``)."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), ("data",))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split along ``"data"``; other axes whole."""
    return NamedSharding(mesh, PartitionSpec("data"))


def grid_sharding(mesh: Mesh) -> NamedSharding:
    """A sweep's stacked models [G, ...]: the grid axis (axis 0) split along ``"data"``."""
    return NamedSharding(mesh, PartitionSpec("data"))


def splits_grid(mesh: Mesh, copies: int) -> bool:
    """Whether a sweep of ``copies`` models spreads them over the devices (each device
    trains whole models on whole batches, no communication), rather than splitting each
    batch: when there are several devices and they divide the grid."""
    devices = int(mesh.devices.size)
    return jax.process_count() == 1 and 1 < devices <= copies and copies % devices == 0


def batches_sharding(mesh: Mesh) -> NamedSharding:
    """An epoch's batches [steps, B, ...]: the batch axis (axis 1) split along ``"data"``."""
    return NamedSharding(mesh, PartitionSpec(None, "data"))


def local_batch_slice(mesh: Mesh, batch_size: int) -> slice:
    """The positions of every batch that this process's devices hold (all of them in a
    single-process run; the process's contiguous share in a multi-process one)."""
    spans = batch_sharding(mesh).addressable_devices_indices_map((batch_size,)).values()
    starts = [s[0].start or 0 for s in spans]
    stops = [batch_size if s[0].stop is None else s[0].stop for s in spans]
    return slice(min(starts), max(stops))


def batches_from_host(x: np.ndarray, order: np.ndarray, mesh: Mesh):
    """The batches ``x[order]`` ([steps, B, ...]) as one array sharded over the mesh, of
    which this process gathers and sends only its own part of each batch
    (``jax.make_array_from_process_local_data``)."""
    steps, batch_size = order.shape
    local = x[order[:, local_batch_slice(mesh, batch_size)]]
    return jax.make_array_from_process_local_data(batches_sharding(mesh), local,
                                                  (steps, batch_size, *x.shape[1:]))


def replicated(mesh: Mesh) -> NamedSharding:
    """A full copy on every device of the mesh."""
    return NamedSharding(mesh, PartitionSpec())


def replicate(tree, mesh: Mesh):
    """Every leaf of ``tree`` replicated over the mesh (``put(tree, replicated(mesh))``)."""
    return put(tree, replicated(mesh))


def put(tree, sharding: NamedSharding):
    """Host arrays placed with ``sharding``, without talking to other processes.

    In a multi-process run ``jax.device_put`` onto devices of several processes first checks
    that every process holds the same value, which is a collective: a process that stopped
    on its way there would leave the others waiting in it. Here each process fills its own
    devices from its own copy (``jax.make_array_from_callback``); the processes hold the
    same values by construction (the same data, config and seed).
    """
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)

    def one(x):
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    return jax.tree.map(one, jax.device_get(tree))


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
    """Raises unless the batch splits evenly over the mesh's devices."""
    n = mesh.devices.size
    if batch_size % n:
        lower = batch_size - batch_size % n
        raise ValueError(
            f"config key 'train.batch_size' ({batch_size}) must be divisible by the number of "
            f"devices ({n}) so that each device gets the same share of every batch; try "
            f"{lower or n} or {lower + n}")
