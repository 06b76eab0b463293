"""Shared step machinery of the baselines: step data, triplet scoring, the weighted BPR update.

Every baseline changes only which negatives are drawn and how the per-triplet BPR terms are
weighted (docs/baselines.md §1), so they share `pairwise_update`: encode once, score the positive
and the negative(s), per-sample BPR losses, detached weights, reduced loss plus the backbone
regulariser, one Adam update. When the negatives depend on the current representations
(AOBPR), the encoder runs once under `jax.vjp` and its pullback carries the gradient back to
the parameters, so graph propagation is never done twice.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from dvr_jax import losses, sampler
from dvr_jax.backbones.base import Backbone, Graph, Reps
from dvr_jax.state import LearnerState
from dvr_jax.train import make_learner_init  # noqa: F401  (re-exported for the baselines)
from dvr_jax.typing import Array, PRNGKey

WeightsFn = Callable[[Array, Array, Array], Array]


class BaselineData(NamedTuple):
    """Arrays a baseline step reads.

    Attributes:
      train: training positives.
      graph: the backbone's graph.
      aux: method-specific device arrays (a dict; e.g. item popularity, validation pairs).
    """

    train: sampler.TrainArrays
    graph: Graph
    aux: dict[str, Any]


def score_triplets(
    backbone: Backbone, reps: Reps, users: Array, pos_items: Array, neg_items: Array, key: PRNGKey | None
) -> tuple[Array, Array]:
    """Scores of the positives and of one or several negatives per triplet.

    Args:
      backbone: the backbone.
      reps: its representations (`encode` output).
      users: int32[B].
      pos_items: int32[B].
      neg_items: int32[B] or int32[B, L].
      key: dropout key or None.

    Returns:
      (pos f32[B], neg f32[B] or f32[B, L]).
    """
    k_pos, k_neg = (None, None) if key is None else jax.random.split(key)
    pos = backbone.score_pairs(reps, users, pos_items, k_pos)
    if neg_items.ndim == 1:
        return pos, backbone.score_pairs(reps, users, neg_items, k_neg)
    flat_users = jnp.broadcast_to(users[:, None], neg_items.shape).reshape(-1)
    neg = backbone.score_pairs(reps, flat_users, neg_items.reshape(-1), k_neg)
    return pos, neg.reshape(neg_items.shape)


def per_sample_bpr(pos: Array, neg: Array) -> Array:
    """BPR losses f32[B] (or f32[B, L] against L negatives per positive)."""
    return losses.bpr_per_sample(pos[:, None] if neg.ndim == 2 else pos, neg)


def pairwise_update(
    state: LearnerState,
    backbone: Backbone,
    graph: Graph,
    key: PRNGKey | None,
    users: Array,
    pos_items: Array,
    negatives: Array | Callable[[Reps], Array],
    weights_fn: WeightsFn | None = None,
    *,
    reduction: str = "sum",
) -> tuple[LearnerState, dict[str, Array]]:
    """One weighted BPR update of the backbone learner.

    The loss is `reduce_b Σ_l sg(w_bl) ℓ_bl + regulariser`, with `w = weights_fn(ℓ, pos,
    neg)` (all ones when None).

    Args:
      state: backbone learner.
      backbone: the backbone.
      graph: its graph.
      key: dropout key (None: deterministic).
      users, pos_items: int32[B].
      negatives: int32[B] / int32[B, L] negatives, or `negatives(sg(reps)) -> (int32[...],
        extra pytree)` to draw them from the current representations (one encode, pulled back
        by VJP); `extra` is returned under "extra" (e.g. AOBPR's refreshed rankings).
      weights_fn: `(per_sample, pos, neg) -> weights` of per_sample's shape, or None.
      reduction: "sum" or "mean" over the B rows.

    Returns:
      (new state, {"per_sample": f32[B(, L)], "weights": f32[B(, L)], "neg_items",
      "total": f32[], "extra": pytree or None}).
    """
    k_encode, k_score = (None, None) if key is None else jax.random.split(key)

    def loss_fn(params, reps, neg_items):
        pos, neg = score_triplets(backbone, reps, users, pos_items, neg_items, k_score)
        per_sample = per_sample_bpr(pos, neg)
        weights = jnp.ones_like(per_sample) if weights_fn is None else weights_fn(per_sample, pos, neg)
        weights = jax.lax.stop_gradient(weights)
        rows = per_sample * weights
        rows = jnp.sum(rows, axis=1) if rows.ndim == 2 else rows
        total = losses.reduce_loss(rows, reduction=reduction)
        total = total + backbone.regularizer(params, reps, users, pos_items, neg_items)
        return total, {"per_sample": per_sample, "weights": weights, "neg_items": neg_items}

    if callable(negatives):
        reps, pullback = jax.vjp(lambda p: backbone.encode(p, graph, k_encode), state.params)
        neg_items, extra = negatives(jax.lax.stop_gradient(reps))
        grad_fn = jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)
        (total, aux), (g_params, g_reps) = grad_fn(state.params, reps, neg_items)
        grads = jax.tree.map(jnp.add, g_params, pullback(g_reps)[0])
    else:
        extra = None

        def from_params(params):
            return loss_fn(params, backbone.encode(params, graph, k_encode), negatives)

        (total, aux), grads = jax.value_and_grad(from_params, has_aux=True)(state.params)
    return state.apply_gradients(grads), {**aux, "total": total, "extra": extra}


def step_metrics(out: dict[str, Array], **extra: Array) -> dict[str, Array]:
    """The scalar metrics every baseline reports: mean unweighted BPR loss, finiteness, extras."""
    return {
        "loss": jnp.mean(out["per_sample"]),
        "finite": jnp.isfinite(out["total"]) & jnp.all(jnp.isfinite(out["per_sample"])),
        **extra,
    }
