"""Device meshes and the placement of a train step: batch over "data", embedding tables over "model".

Data parallelism (`make_data_mesh`, `shard_step`): the batch of training-pair indices is
sharded over the mesh axis "data"; the state, keys and training arrays are replicated. XLA's
SPMD partitioner then runs the gathers, scores and per-sample losses of each shard on its own
device and all-reduces the gradient, so the same step function runs on 1 or N devices (or
hosts, after `jax.distributed.initialize()`).

Sharded tables (`make_mesh`, `table_specs`, `pad_rows`): on a 2-D mesh `data × model` the
embedding tables [n_rows, D] and their Adam moments are split by rows over "model"
(`PartitionSpec("model", None)`), everything small stays replicated. A table's row count must
divide by the model axis: the backbone pads its tables with zero rows at init (MF's
`row_multiple`, to `pad_rows` rows); zero rows are never looked up, get zero gradients and stay
zero under Adam and L2 decay. The
step is jitted with in/out shardings from the state's spec tree; XLA partitions the row
gathers (each shard looks up the rows it owns, then an all-reduce) and the scatter of the
gradient, so no device ever holds a whole table.

Meshes use `AxisType.Auto`, under which lookups into replicated or sharded tables need no
annotations.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

TABLES = ("user", "item")  # the param-dict keys of embedding tables (MF's `{"user": [U, D], "item": [I, D]}`)
TABLE_SHARDED_BACKBONES = ("mf",)  # backbones whose tables, training and evaluation can be split over "model"


def make_data_mesh(n_devices: int | None = None) -> Mesh:
    """A 1-D mesh named "data" over the first `n_devices` devices (default all)."""
    n_devices = n_devices or len(jax.devices())
    return jax.make_mesh((n_devices,), ("data",), axis_types=(AxisType.Auto,))


def make_mesh(n_data: int, n_model: int) -> Mesh:
    """A 2-D mesh `data × model` over the first `n_data * n_model` devices.

    "model" is the minor axis: a model group (one row of the mesh, whose devices hold the
    shards of one copy of the tables) is M consecutive devices in `jax.make_mesh`'s order.
    """
    return jax.make_mesh((n_data, n_model), ("data", "model"), axis_types=(AxisType.Auto,) * 2)


def model_shards(mesh: Mesh | None) -> int:
    """The size of the mesh's "model" axis (1 without a mesh or without that axis)."""
    return 1 if mesh is None else int(dict(mesh.shape).get("model", 1))


def pad_rows(n_rows: int, multiple: int) -> int:
    """`n_rows` rounded up to a multiple of `multiple` (the row count of a padded table)."""
    return -(-n_rows // multiple) * multiple


def table_specs(tree: Any, n_model: int, *, tables: Sequence[str] = TABLES, min_rows: int = 0) -> Any:
    """The PartitionSpec of every leaf of a state (or params) pytree.

    A leaf is a table when its last dict key is in `tables`, it is 2-D and has at least
    `min_rows` rows: it gets `P("model", None)`. This covers the params and, by the same keys,
    the Adam moments `mu` and `nu`. Every other leaf (step counters, small tables below
    `min_rows`) gets `P()`, replicated.

    Args:
      tree: a pytree of arrays or `jax.ShapeDtypeStruct`s (e.g. `jax.eval_shape(method.init, key)`).
      n_model: the model axis size; every sharded table's row count must divide by it.
      tables: dict keys that name embedding tables.
      min_rows: keep tables with fewer rows replicated.

    Raises:
      ValueError: a table whose row count does not divide by `n_model` (pad it, `pad_rows`).
    """
    return jax.tree_util.tree_map_with_path(lambda path, leaf: _spec(path, leaf, n_model, tables, min_rows), tree)


def _spec(path: tuple, leaf: Any, n_model: int, tables: Sequence[str], min_rows: int) -> P:
    """One leaf's spec (see `table_specs`)."""
    name = getattr(path[-1], "key", None) if path else None
    if name not in tables or len(leaf.shape) != 2 or leaf.shape[0] < min_rows:
        return P()
    if leaf.shape[0] % n_model:
        raise ValueError(f"table {name!r} has {leaf.shape[0]} rows, not a multiple of {n_model} model shards")
    return P("model", None)


def table_shardings(mesh: Mesh, tree: Any, *, tables: Sequence[str] = TABLES, min_rows: int = 0) -> Any:
    """`table_specs` of `tree` as `NamedSharding`s on `mesh` (replicated leaves included)."""
    n_model = model_shards(mesh)
    return jax.tree_util.tree_map_with_path(
        lambda path, leaf: NamedSharding(mesh, _spec(path, leaf, n_model, tables, min_rows)), tree
    )


def table_constraint(mesh: Mesh | None, **kwargs: Any) -> Callable[[Any], Any]:
    """`constrain(tree) -> tree`: inside a jitted step, keeps a params-shaped tree's tables split over "model".

    For intermediates the partitioner would otherwise replicate, such as a gradient that is
    not one of the step's outputs (DVR's influence direction, a dense [n_rows, D] scatter of a
    few looked-up rows): `jax.lax.with_sharding_constraint` with `table_shardings`. The identity
    without a mesh or on a mesh whose "model" axis has one device.
    """
    if model_shards(mesh) == 1:
        return lambda tree: tree
    return lambda tree: jax.lax.with_sharding_constraint(tree, table_shardings(mesh, tree, **kwargs))


def init_sharded(init: Callable[[jax.Array], Any], key: jax.Array, mesh: Mesh, **kwargs: Any) -> Any:
    """`init(key)` computed straight into its table shardings: no device ever holds a whole table.

    The values equal `init(key)` on one device (JAX's random bits do not depend on the sharding).
    """
    shardings = table_shardings(mesh, jax.eval_shape(init, key), **kwargs)
    return jax.jit(init, out_shardings=shardings)(key)


def shard_step(step: Callable, mesh: Mesh, *, donate: bool = True, state_sharding: Any = None) -> Callable:
    """Jits `step(state, key, pair_index, data)` with the batch sharded over `mesh`'s "data" axis.

    Args:
      step: a pure train step; `pair_index` is int32[B] with B divisible by the data axis.
      mesh: from `make_data_mesh` or `make_mesh`.
      donate: donate the state buffers.
      state_sharding: the state's shardings (`table_shardings`), used for the state in and
        out; None: the state is replicated.

    Returns:
      The jitted, sharded step with the same signature; the metrics are replicated.
    """
    replicated = NamedSharding(mesh, P())
    batch = NamedSharding(mesh, P("data"))
    state = replicated if state_sharding is None else state_sharding
    return jax.jit(
        step,
        in_shardings=(state, replicated, batch, replicated),
        out_shardings=(state, replicated),
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
