"""Full ranking with the embedding tables split by rows over the mesh's "model" axis.

On a `data × model` mesh (`dvr_jax.sharding.make_mesh`) each device holds 1/M of the user
table and of the item table (M model shards, rows `P("model", None)`) and ranks a share of
the users' chunks (the "data" axis). Under `jax.shard_map`, for each chunk of C users:

  1. the chunk's user rows: each model shard gathers the rows it owns, zeros elsewhere, and a
     `psum` over "model" assembles them (one row plus zeros: exact);
  2. each model shard scores its own I/M item rows (f32[C, I/M]), sets its part of the
     exclusion list and the pad rows of the table (global index >= I) to -inf, and takes a
     local top-K;
  3. the M local lists are gathered (`all_gather` over "model", K·M candidates per user, in
     shard order) and a second `lax.top_k` over the candidates gives the global list.

Step 3 is exact, ties included. An item of the global top-K has fewer than K items before it
in the order (score descending, index ascending), so it is in its own shard's local top-K;
and candidates of equal score sit in global index order (shards hold consecutive index
ranges, and each local list is ordered by index among equal scores), so `top_k`'s rule
(lower position first) is the unsharded rule (lower item index first). Pad items are -inf
and come after every real item of the same score, so they are never ranked while real items
remain. No device ever holds a whole table: the largest arrays are the [C, I/M] score block
and the [C, K·M] candidates.

The metrics and the exposure counts of the global lists are those of `ranking.py`; their
sums over the chunks are `psum`med over "data", as in `ranking.evaluate_sharded`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from dvr_jax.evaluation.eval_arrays import EvalArrays
from dvr_jax.evaluation.ranking import EvalChunk, Totals, _finalize, _init_totals, add_ranked_chunk, stacked_chunks
from dvr_jax.typing import Array, Params

TABLE_SPEC = P("model", None)


def _check(reps: Params, eval_arrays: EvalArrays, mesh: Mesh) -> None:
    """The tables and chunks fit the mesh: "user"/"item" tables, chunks dividing over "data"."""
    if set(reps) != {"user", "item"}:
        raise ValueError(f"table-sharded ranking needs {{'user', 'item'}} tables (MF), got {sorted(reps)}")
    n_model, n_data = mesh.shape["model"], mesh.shape["data"]
    for name, table in reps.items():
        if table.shape[0] % n_model:
            raise ValueError(f"{name} table of {table.shape[0]} rows does not divide over {n_model} model shards")
    if eval_arrays.n_chunks % n_data:
        raise ValueError(f"{eval_arrays.n_chunks} chunks do not divide over {n_data} data shards (pad_chunks)")


def local_user_rows(user_rows: Array, users: Array) -> Array:
    """f32[C, D] rows of `users` from a user table split over "model" (inside `shard_map`).

    Args:
      user_rows: f32[U/M, D] this shard's rows of the user table.
      users: int32[C] global user ids.
    """
    n_rows = user_rows.shape[0]
    local = users - jax.lax.axis_index("model") * n_rows
    owned = (local >= 0) & (local < n_rows)
    rows = jnp.where(owned[:, None], user_rows[jnp.clip(local, 0, n_rows - 1)], jnp.zeros((), user_rows.dtype))
    return jax.lax.psum(rows, "model")


def rank_chunk_sharded(tables: Params, chunk: EvalChunk, k: int, n_items: int) -> tuple[Array, Array]:
    """Top-K items of a chunk with the tables split over "model" (inside `shard_map`).

    The same lists and scores as `ranking.rank_chunk` with the MF score `<e_u, e_i>` (see the
    module docstring for the merge and its tie rule).

    Args:
      tables: this shard's rows `{"user": f32[U/M, D], "item": f32[I'/M, D]}`; I' >= I rows,
        the rows from I on are padding.
      chunk: the chunk's users and (row, item) lists, global item ids.
      k: K, the list length (<= I).
      n_items: I, the real items.

    Returns:
      (items int32[C, K], scores float32[C, K]) sorted by descending score, the same on every
      model shard.
    """
    item_rows = tables["item"]
    n_local, n_users = item_rows.shape[0], chunk.users.shape[0]
    offset = jax.lax.axis_index("model") * n_local
    scores = (local_user_rows(tables["user"], chunk.users) @ item_rows.T).astype(jnp.float32)
    columns = chunk.exclude_items - offset
    mine = (columns >= 0) & (columns < n_local)
    rows = jnp.where(mine, chunk.exclude_rows, n_users)  # other shards' items: row C, dropped
    scores = scores.at[rows, jnp.clip(columns, 0, n_local - 1)].set(-jnp.inf, mode="drop")
    n_pad = n_local * jax.lax.axis_size("model") - n_items  # static: the table's pad rows, global [I, I')
    if n_pad:  # rank them last, written in place like the exclusions (a `where` would copy the score block)
        pad = n_items - offset + jnp.arange(n_pad, dtype=offset.dtype)
        pad = jnp.where((pad >= 0) & (pad < n_local), pad, n_local)  # other shards' pad rows: dropped
        scores = scores.at[:, pad].set(-jnp.inf, mode="drop")
    local_scores, local_items = jax.lax.top_k(scores, min(k, n_local))
    # As in `ranking.rank_chunk`: keep each top_k the sole user of its sort (one barrier per array).
    local_scores = jax.lax.optimization_barrier(local_scores)
    local_items = jax.lax.optimization_barrier(local_items) + offset
    candidates = jax.lax.all_gather(local_scores, "model", axis=1, tiled=True, to="invarying")
    candidate_items = jax.lax.all_gather(local_items, "model", axis=1, tiled=True, to="invarying")
    top_scores, position = jax.lax.top_k(candidates, k)
    top_scores, position = jax.lax.optimization_barrier(top_scores), jax.lax.optimization_barrier(position)
    return jnp.take_along_axis(candidate_items, position, axis=1).astype(jnp.int32), top_scores


def evaluate_table_sharded(
    tables: Params,
    eval_arrays: EvalArrays,
    mesh: Mesh,
    *,
    ks: Sequence[int] = (10, 20),
    item_categories: Array | None = None,
) -> dict[str, Array]:
    """`ranking.evaluate_on_device` with the tables split over "model" and the chunks over "data".

    Traceable. Equal to the unsharded evaluation of the same tables (the same top-K lists;
    sums up to float summation order).

    Args:
      tables: `{"user": f32[U', D], "item": f32[I', D]}`, rows divisible by the model axis
        (sharded `P("model", None)`, or resharded on entry).
      eval_arrays: chunks divisible by the data axis (`ranking.pad_chunks`).
      mesh: a `data × model` mesh.
      ks: cut-offs K (static).
      item_categories: optional float32[I, n_cat] multi-hot categories (replicated).

    Returns:
      The dict of `ranking.evaluate_on_device`.
    """
    _check(tables, eval_arrays, mesh)
    ks = tuple(int(k) for k in ks)
    init = _init_totals(ks, eval_arrays.n_items, item_categories is not None)

    def local(tables: Params, chunks: EvalChunk, categories: Array | None) -> Totals:
        def body(totals: Totals, chunk: EvalChunk) -> tuple[Totals, None]:
            top_items, _ = rank_chunk_sharded(tables, chunk, max(ks), eval_arrays.n_items)
            return add_ranked_chunk(totals, chunk, top_items, ks, categories), None

        start = jax.tree.map(lambda x: jax.lax.pcast(x, ("data",), to="varying"), init)  # a per-device carry
        totals, _ = jax.lax.scan(body, start, chunks)
        return jax.lax.psum(totals, "data")

    specs = ({"user": TABLE_SPEC, "item": TABLE_SPEC}, P("data"), P())
    totals = jax.shard_map(local, mesh=mesh, in_specs=specs, out_specs=P())(
        tables, stacked_chunks(eval_arrays), item_categories
    )
    return _finalize(totals, eval_arrays.n_users)


@functools.partial(jax.jit, static_argnames=("k", "mesh"))
def topk_table_sharded(tables: Params, eval_arrays: EvalArrays, *, k: int, mesh: Mesh) -> tuple[Array, Array]:
    """Top-K lists of every chunk with the tables split over "model" and the chunks over "data".

    Returns:
      (items int32[n_chunks, C, K], scores float32[n_chunks, C, K]), as `ranking.rank_chunk`
      gives them chunk by chunk.
    """
    _check(tables, eval_arrays, mesh)

    def local(tables: Params, chunks: EvalChunk) -> tuple[Array, Array]:
        return jax.lax.map(lambda chunk: rank_chunk_sharded(tables, chunk, k, eval_arrays.n_items), chunks)

    specs = ({"user": TABLE_SPEC, "item": TABLE_SPEC}, P("data"))
    return jax.shard_map(local, mesh=mesh, in_specs=specs, out_specs=P("data"))(tables, stacked_chunks(eval_arrays))
