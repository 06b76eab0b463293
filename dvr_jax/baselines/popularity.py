"""Most-popular ranking: every user gets the items ordered by training popularity.

A parameter-free `Backbone`, so the evaluator and CLI treat it like any model; it is the
floor every trained method must beat (`--method pop`).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from dvr_jax.backbones.base import Backbone
from dvr_jax.typing import Array


def make_popularity(n_users: int, n_items: int) -> Backbone:
    """The most-popular recommender over I items (U is unused; kept for the factory signature)."""
    del n_users

    def build_graph(train_pairs: np.ndarray) -> Array:
        counts = np.bincount(np.asarray(train_pairs)[:, 1], minlength=n_items)
        return jnp.asarray(counts, jnp.float32)

    def score_pairs(reps: Array, users: Array, items: Array, key=None) -> Array:
        del users, key
        return reps[items]

    def score_all(reps: Array, users: Array) -> Array:
        return jnp.broadcast_to(reps[None, :], (users.shape[0], n_items))

    def unused(*args):
        raise NotImplementedError("the popularity ranking has no trainable parameters")

    return Backbone(
        name="pop",
        init=lambda key: {},
        build_graph=build_graph,
        encode=lambda params, graph, key=None: graph,
        score_pairs=score_pairs,
        score_all=score_all,
        pair_features=unused,
        regularizer=unused,
        weight_decay=0.0,
    )
