"""TIL building blocks: the weight generator, the UI / MI triplet states, on-device k-means.

Pure functions on plain parameter dicts (no Flax), used by `dvr_jax.baselines.til`, whose
docstring records the sources. Shapes: E is the width of one entity's ego embedding (the
backbone's `pair_features` width / 3), S = 2E the state width, H the generator width, n_c
the number of item communities.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from dvr_jax.backbones import propagation
from dvr_jax.backbones.base import Backbone
from dvr_jax.sampler import TrainArrays
from dvr_jax.typing import Array, Params, PRNGKey

OUTPUTS = ("softplus", "sigmoid")
MI_STATES = ("centroid", "user")
_LN_EPS = 1e-12  # LN must stay scale-free: ego-embedding products have variance ~1e-8


def init_generator(key: PRNGKey, state_dim: int, hidden: int) -> Params:
    """Generator params: layer norm over S, Dense S→H (ReLU), Dense H→1; Xavier-uniform weights."""
    k1, k2 = jax.random.split(key)
    glorot = jax.nn.initializers.glorot_uniform()
    return {
        "ln_scale": jnp.ones((state_dim,), jnp.float32), "ln_bias": jnp.zeros((state_dim,), jnp.float32),
        "w1": glorot(k1, (state_dim, hidden), jnp.float32), "b1": jnp.zeros((hidden,), jnp.float32),
        "w2": glorot(k2, (hidden, 1), jnp.float32), "b2": jnp.zeros((1,), jnp.float32),
    }  # fmt: skip


def generator_weights(params: Params, states: Array, output: str = "softplus") -> Array:
    """w = act(W_2 ReLU(W_1 LN(s) + b_1) + b_2).

    Args:
      params: from `init_generator`.
      states: f32[B, S] triplet states.
      output: "softplus" (TIL's released code) or "sigmoid".

    Returns:
      f32[B] positive weights.
    """
    mean = jnp.mean(states, axis=-1, keepdims=True)
    var = jnp.var(states, axis=-1, keepdims=True)
    normed = (states - mean) * jax.lax.rsqrt(var + _LN_EPS) * params["ln_scale"][None, :] + params["ln_bias"][None, :]
    hidden = jax.nn.relu(normed @ params["w1"] + params["b1"][None, :])
    logits = (hidden @ params["w2"])[:, 0] + params["b2"][0]
    return jax.nn.softplus(logits) if output == "softplus" else jax.nn.sigmoid(logits)


def entity_embeddings(backbone: Backbone, params: Params, users: Array, pos: Array, neg: Array, n_items: int):
    """Ego embeddings of the batch and the whole item table, from `backbone.pair_features`.

    Returns:
      (user f32[B, E], pos f32[B, E], neg f32[B, E], item_table f32[I, E]).
    """
    feats = backbone.pair_features(params, users, pos, neg)
    width = feats.shape[-1] // 3
    ids = jnp.arange(n_items, dtype=jnp.int32)
    table = backbone.pair_features(params, jnp.zeros_like(ids), ids, ids)[:, width : 2 * width]
    return feats[:, :width], feats[:, width : 2 * width], feats[:, 2 * width :], table


def ui_state(user: Array, pos: Array, neg: Array, interest: Array) -> Array:
    """Uni-interest state [e_i ⊙ e_u + e_i ⊙ ν_u ; e_j ⊙ e_u + e_j ⊙ ν_u], f32[B, 2E]."""
    return jnp.concatenate([pos * user + pos * interest, neg * user + neg * interest], axis=-1)


def centroid_state(user: Array, pos: Array, neg: Array, pos_center: Array, neg_center: Array) -> Array:
    """MI state of the released code: [u⊙i + u⊙c_i + c_i⊙i ; u⊙j + u⊙c_j + c_j⊙j], f32[B, 2E]."""
    return jnp.concatenate(
        [user * pos + user * pos_center + pos_center * pos, user * neg + user * neg_center + neg_center * neg], axis=-1
    )


def user_interest(mean_op: propagation.SparseOp, item_table: Array) -> Array:
    """ν_u: mean ego embedding of each user's training positives, f32[U, E] (0 if none)."""
    return propagation.spmm(mean_op, item_table)


def community_centroids(item_table: Array, clusters: Array, n_clusters: int) -> Array:
    """Mean item embedding of each community, f32[n_c, E] (0 for an empty community)."""
    sums = jax.ops.segment_sum(item_table, clusters, num_segments=n_clusters)
    counts = jax.ops.segment_sum(jnp.ones_like(clusters, jnp.float32), clusters, num_segments=n_clusters)
    return sums / jnp.maximum(counts, 1.0)[:, None]


def user_community_interest(
    train: TrainArrays, item_table: Array, clusters: Array, n_clusters: int, users: Array, items: Array,
    fallback: Array,
) -> Array:  # fmt: skip
    """ν_u^{(c(i))}: mean of u's training positives inside item i's community, f32[B, E].

    Args:
      train: training positives.
      item_table: f32[I, E].
      clusters: int32[I] community of each item.
      n_clusters: n_c.
      users, items: int32[B].
      fallback: f32[B, E] used where u has no positive in c(i) (ν_u).

    Returns:
      f32[B, E].
    """
    n_users = train.indptr.shape[0] - 1
    segment = train.users * n_clusters + clusters[train.items]
    sums = jax.ops.segment_sum(item_table[train.items], segment, num_segments=n_users * n_clusters)
    counts = jax.ops.segment_sum(jnp.ones_like(segment, jnp.float32), segment, num_segments=n_users * n_clusters)
    cell = users * n_clusters + clusters[items]
    return jnp.where(counts[cell][:, None] > 0, sums[cell] / jnp.maximum(counts[cell], 1.0)[:, None], fallback)


def kmeans_plus_plus(key: PRNGKey, points: Array, n_clusters: int) -> Array:
    """k-means++ seeding: each next centre drawn with probability ∝ squared distance, f32[n_c, E]."""
    keys = jax.random.split(key, n_clusters)
    first = points[jax.random.randint(keys[0], (), 0, points.shape[0])]
    centers = jnp.zeros((n_clusters, points.shape[1]), points.dtype).at[0].set(first)
    nearest = jnp.sum((points - first[None, :]) ** 2, axis=-1)

    def add(index, carry):
        centers, nearest = carry
        logits = jnp.where(nearest > 0, jnp.log(jnp.maximum(nearest, 1e-30)), -jnp.inf)
        logits = jnp.where(jnp.any(nearest > 0), logits, 0.0)  # all points coincide: uniform
        chosen = points[jax.random.categorical(keys[index], logits)]
        distance = jnp.sum((points - chosen[None, :]) ** 2, axis=-1)
        return centers.at[index].set(chosen), jnp.minimum(nearest, distance)

    centers, _ = jax.lax.fori_loop(1, n_clusters, add, (centers, nearest))
    return centers


def kmeans(key: PRNGKey, points: Array, n_clusters: int, iterations: int = 10) -> Array:
    """k-means on device (Euclidean): k-means++ seeding, then Lloyd iterations.

    Args:
      key: PRNG key.
      points: f32[I, E].
      n_clusters: n_c <= I.
      iterations: Lloyd iterations (static).

    Returns:
      int32[I] cluster of each point; an emptied cluster keeps its previous centre.
    """
    squared = jnp.sum(points**2, axis=-1, keepdims=True)

    def assign(centers: Array) -> Array:
        distance = squared - 2.0 * points @ centers.T + jnp.sum(centers**2, axis=-1)[None, :]
        return jnp.argmin(distance, axis=-1).astype(jnp.int32)

    def lloyd(_, centers: Array) -> Array:
        labels = assign(centers)
        sums = jax.ops.segment_sum(points, labels, num_segments=n_clusters)
        counts = jax.ops.segment_sum(jnp.ones_like(labels, jnp.float32), labels, num_segments=n_clusters)
        return jnp.where(counts[:, None] > 0, sums / jnp.maximum(counts, 1.0)[:, None], centers)

    return assign(jax.lax.fori_loop(0, iterations, lloyd, kmeans_plus_plus(key, points, n_clusters)))
