"""The backbone interface: a NamedTuple of pure functions (optax GradientTransformation style).

Every backbone (MF, NeuMF, MGCF, LightGCN) is built by a factory
`make_<name>(n_users, n_items, **hyperparameters) -> Backbone`. Training steps, samplers,
the valuator and the evaluator only use this interface, so any backbone plugs into any method.

The step calls `encode` once and then looks up as many pairs as it needs, so graph
propagation (LightGCN, MGCF) runs once per step, never per lookup.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

from dvr_jax.typing import Array, Params, PRNGKey

Reps = Any  # backbone-specific pytree of final representations (output of `encode`)
Graph = Any  # backbone-specific pytree of device arrays built once from training pairs


class Backbone(NamedTuple):
    """Pure functions of a recommendation backbone.

    Attributes:
      name: registry name ("mf", "neumf", "mgcf", "lightgcn").
      init: `init(key) -> params`.
      build_graph: host-side, called once: `build_graph(train_pairs int[P, 2]) -> Graph`
        (None for backbones without a graph).
      encode: `encode(params, graph, key=None) -> reps`: final representations (propagation
        for graph backbones; the identity on params for MF and NeuMF). `key` enables
        training-time dropout inside the encoder (MGCF's neighbour dropout); None (the
        default, and what evaluation uses) is deterministic. Other backbones ignore it.
      score_pairs: `score_pairs(reps, users i32[B], items i32[B], key=None) -> f32[B]`
        pre-sigmoid scores; `key` enables dropout (NeuMF) in training, None is deterministic.
      score_all: `score_all(reps, users i32[C]) -> f32[C, I]`.
      pair_features: `pair_features(params, users, pos, neg) -> f32[B, F]`: per-sample
        *ego* (layer-0) embeddings [user; pos; neg] for the data valuator (docs/algorithm.md §3.3;
        F = 3D, 6D for NeuMF's GMF+MLP tables). Callers apply stop_gradient.
      regularizer: `regularizer(params, reps, users, pos, neg) -> f32[]`: batch L2 term added
        to the loss (0 for backbones regularised by coupled weight decay).
      weight_decay: coupled (torch-style) L2 weight decay applied by the optimizer.
    """

    name: str
    init: Callable[[PRNGKey], Params]
    build_graph: Callable[[np.ndarray], Graph]
    encode: Callable[..., Reps]
    score_pairs: Callable[..., Array]
    score_all: Callable[[Reps, Array], Array]
    pair_features: Callable[[Reps, Array, Array, Array], Array]
    regularizer: Callable[..., Array]
    weight_decay: float


def dot_score_pairs(reps: Reps, users: Array, items: Array, key: PRNGKey | None = None) -> Array:
    """Inner-product scores `<reps["user"][u], reps["item"][i]>`; f32[B] (no dropout: `key` unused)."""
    del key
    return jnp.sum(reps["user"][users] * reps["item"][items], axis=-1)


def dot_score_all(reps: Reps, users: Array) -> Array:
    """Inner-product scores of every item for a chunk of users; f32[C, I]."""
    return reps["user"][users] @ reps["item"].T


def ego_pair_features(params: Params, users: Array, pos: Array, neg: Array) -> Array:
    """[e_u; e_i; e_j] from the ego tables `params["user"]`, `params["item"]`; f32[B, 3D]."""
    return jnp.concatenate([params["user"][users], params["item"][pos], params["item"][neg]], axis=-1)


def triplet_squared_norm(tables: Params, users: Array, pos: Array, neg: Array) -> Array:
    """||u||^2 + ||i||^2 + ||j||^2 summed over the batch, from `tables["user"]`, `tables["item"]`; f32[]."""
    return jnp.sum(tables["user"][users] ** 2) + jnp.sum(tables["item"][pos] ** 2) + jnp.sum(tables["item"][neg] ** 2)
