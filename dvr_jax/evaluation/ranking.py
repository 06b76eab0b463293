"""Chunked full-ranking evaluation on device: mask, top-K and metrics in one jit.

For each chunk of C users: score all items (`backbone.score_all`), set the excluded
items to -inf with one scatter into the score matrix, take `jax.lax.top_k` (ties: lower
item index first), find the held-out items among the top-K_max, and compute every
(metric, K) from that one list (docs/metrics.md). Per-user values are summed over
chunks; means are over evaluated users, and Gini@K comes from the pooled top-K exposure
counts of all of them.

Three entry points:
  * `evaluate_chunk`: pure per-chunk metrics (traceable).
  * `evaluate_on_device`: pure, traceable loop over chunks with `lax.scan`, for use
    inside another jitted function (DVR's metric rewards); no host syncs.
  * `evaluate` / `topk_lists`: host drivers that jit the chunk step once per shape and
    return Python floats / NumPy lists.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from dvr_jax.backbones.base import Backbone, Graph, Reps
from dvr_jax.evaluation import metrics
from dvr_jax.evaluation.eval_arrays import EvalArrays, make_eval_arrays
from dvr_jax.typing import Array, Params

ScoreAll = Callable[[Reps, Array], Array]
Totals = dict[str, dict[str, Array]]

CATEGORY_METRICS = ("cc", "cc_global", "ild")


class EvalChunk(NamedTuple):
    """One chunk of `EvalArrays` (the same fields without the leading n_chunks axis)."""

    users: Array  # int32[C]
    user_mask: Array  # bool[C]
    n_pos: Array  # int32[C]
    exclude_rows: Array  # int32[L_E]
    exclude_items: Array  # int32[L_E]
    heldout_rows: Array  # int32[L_G]
    heldout_items: Array  # int32[L_G]


def stacked_chunks(eval_arrays: EvalArrays) -> EvalChunk:
    """All chunks as one `EvalChunk` with a leading n_chunks axis (scan xs)."""
    return EvalChunk(*(getattr(eval_arrays, name) for name in EvalChunk._fields))


def chunk_at(eval_arrays: EvalArrays, index: Array | int) -> EvalChunk:
    """Chunk `index` (a traced int32[] is fine) of the evaluation arrays."""
    return jax.tree.map(lambda array: array[index], stacked_chunks(eval_arrays))


def rank_chunk(score_all: ScoreAll, reps: Reps, chunk: EvalChunk, k: int) -> tuple[Array, Array]:
    """Top-K items of a chunk of users with the exclusion set ranked at -inf.

    If a user has fewer than K non-excluded items, the list is completed with excluded
    items (score -inf), lower index first.

    Args:
      score_all: `score_all(reps, users int32[C]) -> float32[C, I]`.
      reps: the backbone representations (output of `encode`).
      chunk: the chunk's users and (row, item) lists.
      k: K, the list length.

    Returns:
      (items int32[C, K], scores float32[C, K]) sorted by descending score.
    """
    scores = score_all(reps, chunk.users).astype(jnp.float32)
    excluded = (chunk.exclude_rows, chunk.exclude_items)
    scores = scores.at[excluded].set(-jnp.inf, mode="drop")
    top_scores, top_items = jax.lax.top_k(scores, k)
    # XLA lowers top_k to sort + slice and rewrites that back into a fast TopK kernel
    # only if the slice is the sort's sole user; a caller slicing the result
    # (top_items[:, :10]) would merge into the slice and leave a full [C, I] sort
    # (~40x slower on CPU).
    # One barrier per array: a barrier over the (scores, items) tuple crashes XLA's SPMD
    # partitioner when the step runs on several devices (a GetTupleElement check).
    top_scores, top_items = jax.lax.optimization_barrier(top_scores), jax.lax.optimization_barrier(top_items)
    return top_items.astype(jnp.int32), top_scores


def heldout_hits(chunk: EvalChunk, top_items: Array) -> Array:
    """hits[c, r] = [top_items[c, r] ∈ G_u], from the chunk's held-out pair list.

    Compares each held-out pair with its row's top-K (L_G x K work) and scatters the
    matches back, so no dense [C, I] held-out matrix is built.

    Args:
      chunk: the chunk; held-out pairs are unique per user.
      top_items: int32[C, K].

    Returns:
      bool[C, K].
    """
    n_rows = top_items.shape[0]
    rows = jnp.minimum(chunk.heldout_rows, n_rows - 1)  # pads gather any row ...
    matches = top_items[rows] == chunk.heldout_items[:, None]  # [L_G, K]
    counts = jnp.zeros(top_items.shape, jnp.int32)
    # ... and are dropped here (their row index is C).
    counts = counts.at[chunk.heldout_rows].add(matches.astype(jnp.int32), mode="drop")
    return counts > 0


def _category_metrics(
    chunk: EvalChunk, top_items: Array, ks: Sequence[int], item_categories: Array
) -> dict[str, Array]:
    """cc@k, cc_global@k, ild@k per user, float32[C] each."""
    n_rows = top_items.shape[0]
    rec_categories = item_categories[top_items]  # [C, K_max, n_cat]
    target = jax.ops.segment_sum(
        item_categories[chunk.heldout_items], chunk.heldout_rows, num_segments=n_rows
    )  # pad rows (= C) are dropped
    target = target > 0
    out = {}
    for k in ks:
        cats_k = rec_categories[:, :k]
        out[f"cc@{k}"] = metrics.category_coverage_at_k(cats_k, target)
        out[f"cc_global@{k}"] = metrics.category_coverage_global_at_k(cats_k)
        out[f"ild@{k}"] = metrics.intra_list_distance_at_k(cats_k)
    return out


def chunk_metrics(
    chunk: EvalChunk, top_items: Array, *, ks: Sequence[int] = (10, 20), item_categories: Array | None = None
) -> dict[str, Array]:
    """Per-user metrics of a ranked chunk for every (metric, K), from its top-K_max list.

    Args:
      chunk: the chunk (see `chunk_at`).
      top_items: int32[C, max(ks)] the chunk's ranked lists (`rank_chunk`).
      ks: cut-offs K.
      item_categories: optional float32[I, n_cat] multi-hot categories; adds cc,
        cc_global and ild.

    Returns:
      "recall@K", "recall_norm@K", "ndcg@K", "precision@K", "hit@K" (and the category
      metrics) to float32[C], zero on pad rows.
    """
    hits = heldout_hits(chunk, top_items)
    per_user = {f"{name}@{k}": fn(hits[:, :k], chunk.n_pos) for k in ks for name, fn in metrics.HIT_METRICS.items()}
    if item_categories is not None:
        per_user.update(_category_metrics(chunk, top_items, ks, item_categories))
    weight = chunk.user_mask.astype(jnp.float32)
    return {key: value * weight for key, value in per_user.items()}


def evaluate_chunk(
    score_all: ScoreAll,
    reps: Reps,
    chunk: EvalChunk,
    *,
    ks: Sequence[int] = (10, 20),
    item_categories: Array | None = None,
) -> tuple[dict[str, Array], Array]:
    """Per-user metrics of one chunk for every (metric, K), from one top-K_max list.

    Args:
      score_all: `score_all(reps, users int32[C]) -> float32[C, I]`.
      reps: the backbone representations.
      chunk: the chunk (see `chunk_at`).
      ks: cut-offs K; the list has length max(ks).
      item_categories: optional float32[I, n_cat] multi-hot categories; adds cc,
        cc_global and ild.

    Returns:
      (per_user, top_items): per_user as in `chunk_metrics`; top_items is int32[C, max(ks)].
    """
    top_items, _ = rank_chunk(score_all, reps, chunk, max(ks))
    return chunk_metrics(chunk, top_items, ks=ks, item_categories=item_categories), top_items


def add_ranked_chunk(
    totals: Totals, chunk: EvalChunk, top_items: Array, ks: tuple[int, ...], item_categories: Array | None
) -> Totals:
    """Adds a ranked chunk's per-user metric sums and top-K exposure counts to the totals."""
    per_user = chunk_metrics(chunk, top_items, ks=ks, item_categories=item_categories)
    sums = {key: totals["sums"][key] + jnp.sum(val) for key, val in per_user.items()}
    weight = chunk.user_mask.astype(jnp.float32)
    exposure = {}
    for k in ks:
        ones = jnp.broadcast_to(weight[:, None], (weight.shape[0], k))
        exposure[str(k)] = totals["exposure"][str(k)].at[top_items[:, :k]].add(ones)
    return {"sums": sums, "exposure": exposure}


def _accumulate(
    score_all: ScoreAll,
    ks: tuple[int, ...],
    totals: Totals,
    reps: Reps,
    chunk: EvalChunk,
    item_categories: Array | None,
) -> Totals:
    """Ranks a chunk and adds its per-user metric sums and top-K exposure counts to the totals."""
    top_items, _ = rank_chunk(score_all, reps, chunk, max(ks))
    return add_ranked_chunk(totals, chunk, top_items, ks, item_categories)


def _init_totals(ks: tuple[int, ...], n_items: int, with_categories: bool) -> Totals:
    """Zero sums for every metric key and zero exposure counts float32[I] per K."""
    names = list(metrics.HIT_METRICS)
    if with_categories:
        names += list(CATEGORY_METRICS)
    sums = {f"{name}@{k}": jnp.zeros((), jnp.float32) for k in ks for name in names}
    exposure = {str(k): jnp.zeros((n_items,), jnp.float32) for k in ks}
    return {"sums": sums, "exposure": exposure}


def _finalize(totals: Totals, n_users: int) -> dict[str, Array]:
    """Means over evaluated users plus gini@K from the pooled exposure counts."""
    out = {key: value / jnp.float32(n_users) for key, value in totals["sums"].items()}
    for k, counts in totals["exposure"].items():
        out[f"gini@{k}"] = metrics.gini_index(counts)
    return out


def evaluate_on_device(
    backbone: Backbone,
    reps: Reps,
    eval_arrays: EvalArrays,
    *,
    ks: Sequence[int] = (10, 20),
    item_categories: Array | None = None,
) -> dict[str, Array]:
    """Mean metrics over all evaluated users; pure and traceable (scan over chunks).

    Call it inside a jitted function with `eval_arrays` (and `item_categories`) passed
    as arguments of that function, not closed over, e.g.
    `evaluate_on_device(backbone, backbone.encode(params, graph), eval_arrays,
    ks=(20,))`.

    Args:
      backbone: supplies `score_all` (static, Python-level).
      reps: `backbone.encode(params, graph)`.
      eval_arrays: from `make_eval_arrays`.
      ks: cut-offs K (static).
      item_categories: optional float32[I, n_cat] multi-hot categories.

    Returns:
      Dict of float32[] scalars: "{recall,recall_norm,ndcg,precision,hit}@K",
      "gini@K", and with categories "{cc,cc_global,ild}@K".
    """
    ks = tuple(int(k) for k in ks)
    init = _init_totals(ks, eval_arrays.n_items, item_categories is not None)

    def body(totals: Totals, chunk: EvalChunk) -> tuple[Totals, None]:
        score_all = backbone.score_all
        return _accumulate(score_all, ks, totals, reps, chunk, item_categories), None

    totals, _ = jax.lax.scan(body, init, stacked_chunks(eval_arrays))
    return _finalize(totals, eval_arrays.n_users)


def pad_chunks(eval_arrays: EvalArrays, multiple: int) -> EvalArrays:
    """The same arrays with empty chunks appended so that `n_chunks` divides by `multiple`.

    An empty chunk holds only pad rows (user 0, masked out, no held-out or excluded pair), so
    it adds nothing to any sum or exposure count; `n_users` is unchanged.
    """
    extra = -eval_arrays.n_chunks % multiple
    if extra == 0:
        return eval_arrays
    size = eval_arrays.chunk_size
    fills = {"users": 0, "user_mask": False, "n_pos": 0, "exclude_rows": size, "exclude_items": 0,
             "heldout_rows": size, "heldout_items": 0}  # fmt: skip
    padded = {}
    for name, fill in fills.items():
        value = getattr(eval_arrays, name)
        padded[name] = jnp.concatenate([value, jnp.full((extra, *value.shape[1:]), fill, value.dtype)])
    return eval_arrays.replace(**padded)


def evaluate_sharded(
    backbone: Backbone,
    reps: Reps,
    eval_arrays: EvalArrays,
    mesh: jax.sharding.Mesh,
    *,
    ks: Sequence[int] = (10, 20),
    item_categories: Array | None = None,
) -> dict[str, Array]:
    """`evaluate_on_device` with the chunks of users split over the mesh's `data` axis.

    Each device ranks the items for its own chunks (`jax.shard_map`); the per-user sums and
    the exposure counts are then summed over devices (`psum`), so the result equals
    `evaluate_on_device` up to float summation order. Traceable, for use inside a jitted step
    that runs on `mesh` (DVR's reward) or on its own. `eval_arrays.n_chunks` must divide by the
    mesh size (`pad_chunks`); `reps` and `item_categories` are replicated.

    On a mesh with a "model" axis of more than one device, `reps` are MF's tables split by rows
    over it and the items are ranked by `table_sharded.evaluate_table_sharded` (same result).
    """
    ks = tuple(int(k) for k in ks)
    if dict(mesh.shape).get("model", 1) > 1:
        from dvr_jax.evaluation import table_sharded  # noqa: PLC0415  (it builds on this module)

        return table_sharded.evaluate_table_sharded(reps, eval_arrays, mesh, ks=ks, item_categories=item_categories)
    n_devices = mesh.shape["data"]
    if eval_arrays.n_chunks % n_devices:
        raise ValueError(f"{eval_arrays.n_chunks} chunks do not divide over {n_devices} devices (pad_chunks)")
    init = _init_totals(ks, eval_arrays.n_items, item_categories is not None)

    def local(reps: Reps, chunks: EvalChunk, categories: Array | None) -> Totals:
        def body(totals: Totals, chunk: EvalChunk) -> tuple[Totals, None]:
            return _accumulate(backbone.score_all, ks, totals, reps, chunk, categories), None

        start = jax.tree.map(lambda x: jax.lax.pcast(x, ("data",), to="varying"), init)  # a per-device carry
        totals, _ = jax.lax.scan(body, start, chunks)
        return jax.lax.psum(totals, "data")

    specs = (P(), P("data"), P())
    totals = jax.shard_map(local, mesh=mesh, in_specs=specs, out_specs=P())(
        reps, stacked_chunks(eval_arrays), item_categories
    )
    return _finalize(totals, eval_arrays.n_users)


@functools.partial(jax.jit, static_argnames=("score_all", "ks", "mesh", "encode"))
def _evaluate_sharded_jit(params, graph, eval_arrays, item_categories, *, score_all, ks, mesh, encode):
    """One jit per backbone, ks, mesh and shapes: encode, then `evaluate_sharded`."""
    reps = encode(params, graph)
    backbone = _ScoreOnly(score_all)
    return evaluate_sharded(backbone, reps, eval_arrays, mesh, ks=ks, item_categories=item_categories)


class _ScoreOnly(NamedTuple):
    """The part of a backbone `evaluate_sharded` reads."""

    score_all: ScoreAll


@functools.partial(jax.jit, static_argnames=("encode",))
def _encode(params: Params, graph: Graph, *, encode: Callable[..., Reps]) -> Reps:
    """Jitted `backbone.encode` (compiled once per backbone and shapes)."""
    return encode(params, graph)


@functools.partial(jax.jit, static_argnames=("score_all", "ks"))
def _accumulate_step(
    totals: Totals,
    reps: Reps,
    eval_arrays: EvalArrays,
    item_categories: Array | None,
    index: Array,
    *,
    score_all: ScoreAll,
    ks: tuple[int, ...],
) -> Totals:
    """One chunk of `evaluate`: the jit unit, compiled once per backbone, ks, shapes."""
    chunk = chunk_at(eval_arrays, index)
    return _accumulate(score_all, ks, totals, reps, chunk, item_categories)


@functools.partial(jax.jit, static_argnames=("n_users",))
def _finalize_jit(totals: Totals, *, n_users: int) -> dict[str, Array]:
    return _finalize(totals, n_users)


@functools.partial(jax.jit, static_argnames=("score_all", "k"))
def _topk_step(
    reps: Reps, eval_arrays: EvalArrays, index: Array, *, score_all: ScoreAll, k: int
) -> tuple[Array, Array]:
    """Top-K items and scores of chunk `index`."""
    return rank_chunk(score_all, reps, chunk_at(eval_arrays, index), k)


def evaluate(
    backbone: Backbone,
    params: Params,
    graph: Graph,
    eval_arrays: EvalArrays,
    *,
    ks: Sequence[int] = (10, 20),
    item_categories: np.ndarray | Array | None = None,
    on_chunk: Callable[[int, int], None] | None = None,
    mesh: jax.sharding.Mesh | None = None,
) -> dict[str, float]:
    """Full-ranking evaluation of a split: host driver over jitted chunk steps.

    Encodes the representations once, dispatches one jitted step per chunk (compiled
    once per backbone, ks and shapes) and syncs once at the end; with `on_chunk` (a
    progress bar), it also waits for each chunk and then calls `on_chunk(done, n_chunks)`.

    Args:
      backbone: the backbone.
      params: its parameters.
      graph: its graph (None for MF).
      eval_arrays: from `make_eval_arrays`.
      ks: cut-offs K.
      item_categories: optional float32[I, n_cat] multi-hot item categories.
      on_chunk: optional host callback `(chunks done, chunks in all)`, after each chunk.
      mesh: a data mesh: the users' chunks are split over its devices in one jitted call
        (`evaluate_sharded`; `on_chunk` is then called once, at the end); `params` and `graph`
        should be replicated on it, or, on a `data × model` mesh, MF's tables split by rows
        over "model" (`dvr_jax.sharding.table_shardings`).

    Returns:
      Dict of Python floats keyed as in `evaluate_on_device`.
    """
    ks = tuple(int(k) for k in ks)
    if item_categories is not None:
        item_categories = jnp.asarray(item_categories, jnp.float32)
    if mesh is not None:
        padded = pad_chunks(eval_arrays, mesh.shape["data"])
        result = _evaluate_sharded_jit(params, graph, padded, item_categories, score_all=backbone.score_all, ks=ks,
                                       mesh=mesh, encode=backbone.encode)  # fmt: skip
        if on_chunk is not None:
            on_chunk(eval_arrays.n_chunks, eval_arrays.n_chunks)
        return {key: float(value) for key, value in jax.device_get(result).items()}
    reps = _encode(params, graph, encode=backbone.encode)
    totals = _init_totals(ks, eval_arrays.n_items, item_categories is not None)
    for index in range(eval_arrays.n_chunks):
        totals = _accumulate_step(
            totals, reps, eval_arrays, item_categories, np.int32(index),
            score_all=backbone.score_all, ks=ks,
        )  # fmt: skip
        if on_chunk is not None:
            jax.block_until_ready(totals)  # the bar shows work done, not work queued
            on_chunk(index + 1, eval_arrays.n_chunks)
    result = jax.device_get(_finalize_jit(totals, n_users=eval_arrays.n_users))
    return {key: float(value) for key, value in result.items()}


def topk_lists(
    backbone: Backbone,
    params: Params,
    graph: Graph,
    eval_arrays: EvalArrays,
    k: int,
    *,
    mesh: jax.sharding.Mesh | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-K recommendation lists of every evaluated user, for export.

    Args:
      backbone: the backbone.
      params: its parameters.
      graph: its graph (None for MF).
      eval_arrays: from `make_eval_arrays` (its exclusion sets are applied).
      k: K.
      mesh: a `data × model` mesh over which MF's tables are split by rows: the lists are
        ranked there (`table_sharded.topk_table_sharded`), never gathering a table. None (or
        a mesh without a "model" axis): chunk by chunk on the device of `params`.

    Returns:
      (users int32[n], items int32[n, K], scores float32[n, K]) sorted by user id, lists
      by descending score.
    """
    reps = _encode(params, graph, encode=backbone.encode)
    if mesh is not None and dict(mesh.shape).get("model", 1) > 1:
        from dvr_jax.evaluation import table_sharded  # noqa: PLC0415  (it builds on this module)

        eval_arrays = pad_chunks(eval_arrays, mesh.shape["data"])
        items, scores = jax.device_get(table_sharded.topk_table_sharded(reps, eval_arrays, k=k, mesh=mesh))
        items, scores = items.reshape(-1, k), scores.reshape(-1, k)
    else:
        outputs = [
            _topk_step(reps, eval_arrays, np.int32(i), score_all=backbone.score_all, k=k)
            for i in range(eval_arrays.n_chunks)
        ]
        items = np.concatenate([np.asarray(item_chunk) for item_chunk, _ in outputs])
        scores = np.concatenate([np.asarray(score_chunk) for _, score_chunk in outputs])
    users = np.asarray(eval_arrays.users).reshape(-1)
    mask = np.asarray(eval_arrays.user_mask).reshape(-1)
    order = np.argsort(users[mask], kind="stable")
    return users[mask][order], items[mask][order], scores[mask][order]


__all__ = [
    "EvalArrays",
    "EvalChunk",
    "add_ranked_chunk",
    "chunk_at",
    "chunk_metrics",
    "evaluate",
    "evaluate_chunk",
    "evaluate_on_device",
    "evaluate_sharded",
    "heldout_hits",
    "make_eval_arrays",
    "pad_chunks",
    "rank_chunk",
    "stacked_chunks",
    "topk_lists",
]
