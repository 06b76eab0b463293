"""LightGCN: parameter-free propagation of ego embeddings over the normalised bipartite graph.

Reference: He, Deng, Wang, Li, Zhang, Wang, "LightGCN: Simplifying and Powering Graph
Convolution Network for Recommendation", SIGIR 2020; semantics of gusye1234/LightGCN-PyTorch.
docs/algorithm.md §3.2:

.. math::
    E^{(k+1)} = \\tilde A E^{(k)}, \\quad \\tilde A = D^{-1/2} A D^{-1/2}, \\quad
    E = \\frac{1}{K+1} \\sum_{k=0}^{K} E^{(k)}, \\quad \\hat y_{ui} = e_u^\\top e_i

with `A = [[0, R], [Rᵀ, 0]]`, no self loops, zero-degree rows 0, K = 3 layers by default
(the DVR presets may pass K = 2), d = 64, init N(0, 0.1²), no dropout, no Adam weight decay,
and the batch L2 on ego embeddings `λ · ½ (‖e_u⁰‖² + ‖e_i⁰‖² + ‖e_j⁰‖²) / B` with λ = 1e-4.
`encode` propagates the whole graph once per step (`propagation.spmm`, BCSR with a custom
VJP); `score_pairs` / `score_all` only index the propagated tables.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from dvr_jax.backbones import propagation
from dvr_jax.backbones.base import Backbone, dot_score_all, dot_score_pairs, ego_pair_features, triplet_squared_norm
from dvr_jax.typing import Array, Params, PRNGKey


def make_lightgcn(
    n_users: int,
    n_items: int,
    *,
    dim: int = 64,
    n_layers: int = 3,
    init_std: float = 0.1,
    l2: float = 1e-4,
) -> Backbone:
    """Builds the LightGCN backbone.

    Args:
      n_users: U.
      n_items: I.
      dim: D, embedding dimension.
      n_layers: K, propagation layers (static).
      init_std: std of the normal init of the ego embeddings.
      l2: λ of the batch L2 on ego embeddings (mean over the batch).

    Returns:
      A `Backbone` whose params are `{"user": f32[U, D], "item": f32[I, D]}` (ego, layer 0)
      and whose graph is the symmetric `SparseOp` `Ã` of shape (U + I, U + I).
    """

    def init(key: PRNGKey) -> Params:
        k_user, k_item = jax.random.split(key)
        return {
            "user": init_std * jax.random.normal(k_user, (n_users, dim), jnp.float32),
            "item": init_std * jax.random.normal(k_item, (n_items, dim), jnp.float32),
        }

    def build_graph(train_pairs: np.ndarray) -> propagation.SparseOp:
        return propagation.normalized_bipartite_adjacency(train_pairs, n_users, n_items)

    def encode(params: Params, graph: propagation.SparseOp, key: PRNGKey | None = None) -> Params:
        del key  # LightGCN has no dropout.
        ego = jnp.concatenate([params["user"], params["item"]], axis=0)
        final = propagation.lightgcn_propagate(graph, ego, n_layers)
        return {"user": final[:n_users], "item": final[n_users:]}

    def regularizer(params: Params, reps: Params, users: Array, pos: Array, neg: Array) -> Array:
        del reps
        return l2 * 0.5 * triplet_squared_norm(params, users, pos, neg) / users.shape[0]

    return Backbone(
        name="lightgcn",
        init=init,
        build_graph=build_graph,
        encode=encode,
        score_pairs=dot_score_pairs,
        score_all=dot_score_all,
        pair_features=ego_pair_features,
        regularizer=regularizer,
        weight_decay=0.0,
    )
