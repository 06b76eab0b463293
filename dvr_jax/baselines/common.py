"""What the baselines share beyond the step: the step data name and a one-off weighted update.

Every baseline changes only which negatives are drawn (its `Sampler`) and how the per-triplet
BPR terms are weighted (its `Weighter`), so each one is the shared step of `dvr_jax.step`
(docs/baselines.md §1, docs/engineering.md §12). `pairwise_update` runs that step's forward
and weighted update once, outside a step, on given triplets (tests and notebooks).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from dvr_jax import losses
from dvr_jax.backbones.base import Backbone, Graph, Reps
from dvr_jax.state import LearnerState
from dvr_jax.step import Batch, StepData, forward, reduction_scale, weighted_update
from dvr_jax.typing import Array, PRNGKey

BaselineData = StepData  # the shared step data; `aux` is a dict of the method's device arrays
WeightsFn = Callable[[Array, Array, Array], Array]


def pairwise_update(
    state: LearnerState,
    backbone: Backbone,
    graph: Graph,
    key: PRNGKey | None,
    users: Array,
    pos_items: Array,
    negatives: Array | Callable[[Reps], tuple[Array, object]],
    weights_fn: WeightsFn | None = None,
    *,
    reduction: str = "sum",
) -> tuple[LearnerState, dict[str, Array]]:
    """One weighted BPR update of the backbone learner on given triplets (`dvr_jax.step`'s pieces).

    The loss is `reduce_b Σ_l sg(w_bl) ℓ_bl + regulariser`, with `w = weights_fn(ℓ, pos,
    neg)` (all ones when None).

    Args:
      state: backbone learner.
      backbone, graph: the backbone and its graph.
      key: dropout key (None: deterministic).
      users, pos_items: int32[B].
      negatives: int32[B] / int32[B, L] negatives, or `negatives(sg(reps)) -> (int32[...],
        extra)` drawn from the current representations; `extra` is returned under "extra".
      weights_fn: `(per_sample, pos, neg) -> weights` of per_sample's shape, or None.
      reduction: "sum" or "mean" over the B rows.

    Returns:
      (new state, {"per_sample", "weights", "neg_items", "total": f32[], "extra"}).
    """
    uses_reps = callable(negatives)

    def draw(reps):
        neg_items, extra = negatives(reps) if uses_reps else (negatives, None)
        return Batch(users, pos_items, neg_items), extra

    batch, extra, fwd = forward(backbone, state.params, graph, key, draw, uses_reps=uses_reps)
    ones = jnp.ones_like(fwd.per_sample)
    weights = jax.lax.stop_gradient(ones if weights_fn is None else weights_fn(fwd.per_sample, fwd.pos, fwd.neg))
    scale = reduction_scale(reduction, users.shape[0])
    new_state, _ = weighted_update(state, fwd, weights, scale)
    rows = fwd.per_sample * weights
    rows = jnp.sum(rows, axis=1) if rows.ndim == 2 else rows
    total = losses.reduce_loss(rows, reduction=reduction) + fwd.regularizer
    aux = {"per_sample": fwd.per_sample, "weights": weights, "neg_items": batch.neg_items, "total": total}
    return new_state, {**aux, "extra": extra}
