"""BPRMF: matrix factorisation scored by an inner product, trained with BPR.

Reference: Koren et al., "Matrix factorization techniques for recommender systems", 2009;
Rendle et al., "BPR: Bayesian personalized ranking from implicit feedback", UAI 2009.
docs/algorithm.md §3.2: no biases, d = 64, init N(0, (1/d)^2), coupled L2 weight decay 1e-3.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from dvr_jax.backbones.base import Backbone, dot_score_all, dot_score_pairs, ego_pair_features
from dvr_jax.typing import Array, Params, PRNGKey


def make_mf(
    n_users: int,
    n_items: int,
    *,
    dim: int = 64,
    init_std: float | None = None,
    weight_decay: float = 1e-3,
) -> Backbone:
    """Builds the BPRMF backbone.

    Args:
      n_users: U.
      n_items: I.
      dim: D, embedding dimension.
      init_std: std of the normal init; default 1/D as in the authors' code.
      weight_decay: coupled L2 weight decay (added to the gradient before Adam).

    Returns:
      A `Backbone` whose params are `{"user": f32[U, D], "item": f32[I, D]}`.
    """
    std = 1.0 / dim if init_std is None else init_std

    def init(key: PRNGKey) -> Params:
        k_user, k_item = jax.random.split(key)
        return {
            "user": std * jax.random.normal(k_user, (n_users, dim), jnp.float32),
            "item": std * jax.random.normal(k_item, (n_items, dim), jnp.float32),
        }

    def build_graph(train_pairs: np.ndarray) -> None:
        del train_pairs
        return None

    def encode(params: Params, graph: None, key: PRNGKey | None = None) -> Params:
        del graph, key
        return params

    def regularizer(params, reps, users, pos, neg) -> Array:
        del params, reps, users, pos, neg
        return jnp.zeros((), jnp.float32)

    return Backbone(
        name="mf",
        init=init,
        build_graph=build_graph,
        encode=encode,
        score_pairs=dot_score_pairs,
        score_all=dot_score_all,
        pair_features=ego_pair_features,
        regularizer=regularizer,
        weight_decay=weight_decay,
    )
