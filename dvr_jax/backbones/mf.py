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
    row_multiple: int = 1,
) -> Backbone:
    """Builds the BPRMF backbone.

    Args:
      n_users: U.
      n_items: I.
      dim: D, embedding dimension.
      init_std: std of the normal init; default 1/D as in the authors' code.
      weight_decay: coupled L2 weight decay (added to the gradient before Adam).
      row_multiple: pad both tables with zero rows to a multiple of this (tables split over
        that many model shards, `dvr_jax.sharding`). The real rows are the unpadded init's;
        pad rows are never looked up (samplers draw real items), so they stay zero, and
        `score_all` ranks only the I real items.

    Returns:
      A `Backbone` whose params are `{"user": f32[U', D], "item": f32[I', D]}`, U' and I' the
      counts rounded up to `row_multiple` (U and I by default).
    """
    std = 1.0 / dim if init_std is None else init_std
    if row_multiple < 1:
        raise ValueError(f"row_multiple must be >= 1, got {row_multiple}")

    def table(key: PRNGKey, n_rows: int) -> Array:
        rows = std * jax.random.normal(key, (n_rows, dim), jnp.float32)
        return jnp.pad(rows, ((0, -n_rows % row_multiple), (0, 0)))

    def init(key: PRNGKey) -> Params:
        k_user, k_item = jax.random.split(key)
        return {"user": table(k_user, n_users), "item": table(k_item, n_items)}

    def build_graph(train_pairs: np.ndarray) -> None:
        del train_pairs
        return None

    def encode(params: Params, graph: None, key: PRNGKey | None = None) -> Params:
        del graph, key
        return params

    def real_items_score_all(reps: Params, users: Array) -> Array:
        """Inner-product scores of the I real items of a padded item table; f32[C, I]."""
        return reps["user"][users] @ reps["item"][:n_items].T

    def regularizer(params, reps, users, pos, neg) -> Array:
        del params, reps, users, pos, neg
        return jnp.zeros((), jnp.float32)

    return Backbone(
        name="mf",
        init=init,
        build_graph=build_graph,
        encode=encode,
        score_pairs=dot_score_pairs,
        score_all=dot_score_all if n_items % row_multiple == 0 else real_items_score_all,
        pair_features=ego_pair_features,
        regularizer=regularizer,
        weight_decay=weight_decay,
    )
