"""Data-parallel execution of any train step with `jax.jit` + `jax.sharding` (pjit's modern form).

The batch of training-pair indices is sharded over the mesh axis "data"; the state, keys and
training arrays are replicated. XLA's SPMD partitioner then runs the gathers, scores and
per-sample losses of each shard on its own device and all-reduces the gradient, so the same
step function runs on 1 or N devices (or hosts, after `jax.distributed.initialize()`).
The mesh uses `AxisType.Auto`, under which replicated table lookups need no annotations.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P


def make_data_mesh(n_devices: int | None = None) -> Mesh:
    """A 1-D mesh named "data" over the first `n_devices` devices (default all)."""
    n_devices = n_devices or len(jax.devices())
    return jax.make_mesh((n_devices,), ("data",), axis_types=(AxisType.Auto,))


def shard_step(step: Callable, mesh: Mesh, *, donate: bool = True) -> Callable:
    """Jits `step(state, key, pair_index, data)` with the batch sharded over `mesh`.

    Args:
      step: a pure train step; `pair_index` is int32[B] with B divisible by the mesh size.
      mesh: from `make_data_mesh`.
      donate: donate the state buffers.

    Returns:
      The jitted, sharded step with the same signature; outputs are replicated.
    """
    replicated = NamedSharding(mesh, P())
    batch = NamedSharding(mesh, P("data"))
    return jax.jit(
        step,
        in_shardings=(replicated, replicated, batch, replicated),
        out_shardings=(replicated, replicated),
        donate_argnums=(0,) if donate else (),
    )


def replicate(tree: Any, mesh: Mesh) -> Any:
    """`tree` replicated on every device of `mesh`, each process placing its own copy of every leaf.

    Over several processes each holds the same values (the same data, keys and checkpoints), so
    each puts its copy on its own devices and nothing crosses processes. `jax.device_put` would
    first compare the copies of every leaf across processes, one all-gather per leaf, each
    compiled for its shape and holding a copy from every process.
    """
    sharding = NamedSharding(mesh, P())
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)

    def place(leaf: Any) -> jax.Array:
        if isinstance(leaf, jax.Array) and leaf.sharding.is_equivalent_to(sharding, leaf.ndim):
            return leaf
        devices = sharding.addressable_devices_indices_map(np.shape(leaf))
        copies = [jax.device_put(leaf, device) for device in devices]
        return jax.make_array_from_single_device_arrays(np.shape(leaf), sharding, copies)

    return jax.tree.map(place, tree)
