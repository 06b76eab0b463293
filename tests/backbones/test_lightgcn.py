"""LightGCN: forward pass against a dense NumPy oracle, regulariser, init and defaults."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from dvr_jax.backbones import make_backbone
from tests.backbones import oracles

U, I = 6, 8


def test_encode_matches_dense_oracle(rng, key):
    pairs = oracles.random_pairs(rng, U, I, 20)
    backbone = make_backbone("lightgcn", U, I, dim=5, n_layers=2)
    params = backbone.init(key)
    reps = backbone.encode(params, backbone.build_graph(pairs))
    adj = oracles.normalized_adjacency(pairs, U, I)
    ego = np.concatenate([params["user"], params["item"]]).astype(np.float64)
    final = (ego + adj @ ego + adj @ adj @ ego) / 3.0
    np.testing.assert_allclose(np.asarray(reps["user"]), final[:U], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.asarray(reps["item"]), final[U:], rtol=1e-5, atol=1e-7)
    # A node without interactions keeps a third of its ego embedding (zero-degree row).
    np.testing.assert_allclose(np.asarray(reps["user"][U - 1]), ego[U - 1] / 3.0, rtol=1e-6)


def test_regularizer_is_half_l2_of_ego_rows_over_batch(key):
    backbone = make_backbone("lightgcn", U, I, dim=3, l2=1e-4)
    params = backbone.init(key)
    users, pos, neg = jnp.array([0, 1, 1]), jnp.array([2, 3, 4]), jnp.array([5, 5, 0])
    reps = jax.tree.map(lambda a: 100.0 * a, params)  # must be ignored: ego only
    got = backbone.regularizer(params, reps, users, pos, neg)
    p = jax.tree.map(np.asarray, params)
    squares = (p["user"][[0, 1, 1]] ** 2).sum() + (p["item"][[2, 3, 4]] ** 2).sum() + (p["item"][[5, 5, 0]] ** 2).sum()
    np.testing.assert_allclose(float(got), 1e-4 * 0.5 * squares / 3, rtol=1e-6)


def test_defaults_and_init(key):
    backbone = make_backbone("lightgcn", 500, 700)
    params = backbone.init(key)
    assert params["user"].shape == (500, 64) and params["item"].shape == (700, 64)
    assert abs(float(jnp.std(params["item"])) - 0.1) < 0.005
    assert backbone.weight_decay == 0.0
