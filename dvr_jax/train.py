"""Training-step factories: pure functions `step(state, key, batch, data)`; the caller jits.

One BPR step: sample negatives on device -> encode (graph propagation once) -> score the
positive and negative pairs -> per-sample BPR loss -> (optional per-sample weights) ->
gradient of the reduced loss + backbone regulariser -> Adam update. Everything is static
shape; large arrays (training CSR, graph) are arguments, never closure constants, so one
compiled program serves every step (docs/engineering.md §3).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from dvr_jax import losses, sampler
from dvr_jax.backbones.base import Backbone, Graph
from dvr_jax.state import LearnerState, make_adam
from dvr_jax.typing import Array, Params, PRNGKey


class StepData(NamedTuple):
    """Arrays every step reads: training positives and the backbone's graph (may be None)."""

    train: sampler.TrainArrays
    graph: Graph


def create_backbone_state(
    key: PRNGKey, backbone: Backbone, *, learning_rate: float = 1e-3, decoupled_weight_decay: bool = False
) -> LearnerState:
    """Initial backbone learner with Adam and the backbone's coupled weight decay."""
    tx = make_adam(learning_rate, backbone.weight_decay, decoupled=decoupled_weight_decay)
    return LearnerState.create(backbone.init(key), tx)


def make_learner_init(
    backbone: Backbone, *, learning_rate: float = 1e-3, init_params: Params | None = None
) -> Callable[[PRNGKey], LearnerState]:
    """`init(key) -> LearnerState`: Adam with the backbone's coupled weight decay; `init_params`
    warm-starts the parameters (with fresh Adam moments)."""

    def init(key: PRNGKey) -> LearnerState:
        if init_params is None:
            return create_backbone_state(key, backbone, learning_rate=learning_rate)
        return LearnerState.create(init_params, make_adam(learning_rate, backbone.weight_decay))

    return init


def per_sample_bpr(
    params, backbone: Backbone, graph: Graph, users: Array, pos_items: Array, neg_items: Array, key: PRNGKey | None
) -> tuple[Array, Array]:
    """Encodes once and returns (per-sample BPR losses f32[B], backbone regulariser f32[]).

    Args:
      params: backbone params.
      backbone: the backbone.
      graph: its graph.
      users, pos_items, neg_items: int32[B] triplets.
      key: dropout key (None: deterministic).
    """
    k_encode, k_pos, k_neg = (None, None, None) if key is None else jax.random.split(key, 3)
    reps = backbone.encode(params, graph, k_encode)
    pos = backbone.score_pairs(reps, users, pos_items, k_pos)
    neg = backbone.score_pairs(reps, users, neg_items, k_neg)
    return losses.bpr_per_sample(pos, neg), backbone.regularizer(params, reps, users, pos_items, neg_items)


def bpr_batch_loss(
    params,
    backbone: Backbone,
    graph: Graph,
    users: Array,
    pos_items: Array,
    neg_items: Array,
    key: PRNGKey | None,
    *,
    reduction: str = "sum",
    weights: Array | None = None,
) -> tuple[Array, Array]:
    """Reduced BPR loss of a batch plus the backbone regulariser.

    Args:
      params: backbone params.
      backbone: the backbone.
      graph: its graph.
      users, pos_items, neg_items: int32[B] triplets.
      key: dropout key (None for deterministic scoring).
      reduction: "sum" or "mean".
      weights: optional float32[B] / bool[B] per-sample weights or selection mask.

    Returns:
      (loss f32[], per-sample losses f32[B]).
    """
    per_sample, regularizer = per_sample_bpr(params, backbone, graph, users, pos_items, neg_items, key)
    return losses.reduce_loss(per_sample, weights, reduction=reduction) + regularizer, per_sample


def make_bpr_step(backbone: Backbone, *, reduction: str = "sum", dropout: bool = True):
    """Builds the plain-BPR train step.

    Args:
      backbone: any registered backbone.
      reduction: "sum" (authors' code, default) or "mean".
      dropout: pass a dropout key to the backbone while training (NeuMF).

    Returns:
      `step(state, key, pair_index, data) -> (state, metrics)`, where `key` is the run key
      (the step folds in `state.step`, so results depend only on (seed, step)),
      `pair_index` int32[B] indexes the training pairs and `data` is a `StepData`.
      metrics: {"loss": mean per-sample BPR loss f32[], "finite": bool[]}.
    """

    def step(state: LearnerState, key: PRNGKey, pair_index: Array, data: StepData):
        step_key = jax.random.fold_in(key, state.step)
        k_negative, k_dropout = jax.random.split(step_key)
        users, pos_items, neg_items = sampler.sample_triplets(k_negative, data.train, pair_index)

        def loss_fn(params):
            return bpr_batch_loss(
                params, backbone, data.graph, users, pos_items, neg_items,
                k_dropout if dropout else None, reduction=reduction,
            )

        (loss, per_sample), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        new_state = state.apply_gradients(grads)
        metrics = {"loss": jnp.mean(per_sample), "finite": jnp.isfinite(loss)}
        return new_state, metrics

    return step
