"""Data-parallel execution of any train step with `jax.jit` + `jax.sharding` (pjit's modern form).

The batch of training-pair indices is sharded over the mesh axis "data"; the state, keys and
training arrays are replicated. XLA's SPMD partitioner then runs the gathers, scores and
per-sample losses of each shard on its own device and all-reduces the gradient, so the same
step function runs on 1 or N devices (or hosts, after `jax.distributed.initialize()`).
The mesh uses `AxisType.Auto`, under which replicated table lookups need no annotations.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
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
