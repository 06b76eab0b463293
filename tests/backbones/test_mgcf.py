"""MGCF: similarity graphs against a loop oracle, forward pass against NumPy, dropout, L2."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp

from dvr_jax.backbones import make_backbone
from dvr_jax.backbones.mgcf import cosine_top_k
from tests.backbones import oracles

U, I, D = 9, 12, 6


@pytest.fixture
def pairs(rng):
    return oracles.random_pairs(rng, U, I, 40)


@pytest.mark.parametrize("chunk_rows", [1, 4, 100])
def test_cosine_top_k_matches_loop_oracle(rng, chunk_rows):
    # Few columns so that ties are frequent; the last row is empty.
    dense = (rng.random((15, 4)) < 0.4).astype(np.float64)
    dense[-1] = 0.0
    rows, cols = cosine_top_k(sp.csr_matrix(dense), 3, chunk_rows=chunk_rows)
    got = np.zeros((15, 15))
    got[rows, cols] = 1.0
    assert len(rows) == int(got.sum())  # no duplicate pair
    np.testing.assert_array_equal(got, oracles.cosine_top_k(dense, 3))


def test_graph_operators_match_dense(pairs):
    backbone = make_backbone("mgcf", U, I, dim=D, n_similar=3)
    graph = backbone.build_graph(pairs)
    r = oracles.interaction_matrix(pairs, U, I)
    dense = lambda op: np.asarray(op.matrix.todense())  # noqa: E731
    np.testing.assert_allclose(dense(graph.user_item), oracles.row_mean(r), rtol=1e-6)
    np.testing.assert_allclose(dense(graph.item_user), oracles.row_mean(r.T), rtol=1e-6)
    np.testing.assert_allclose(dense(graph.user_user), oracles.row_mean(oracles.cosine_top_k(r, 3)), rtol=1e-6)
    np.testing.assert_allclose(dense(graph.item_item), oracles.row_mean(oracles.cosine_top_k(r.T, 3)), rtol=1e-6)


def numpy_mgcf(params, pairs, n_similar):
    """NumPy re-computation of MGCF's final representations (one or more BGC layers)."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    r = oracles.interaction_matrix(pairs, U, I)
    agg = lambda w, own, mean: np.tanh(np.concatenate([own, mean], 1) @ w)  # noqa: E731
    h_u, h_i = p["user"], p["item"]
    for w_u, w_i in zip(p["bgc_user"], p["bgc_item"]):
        h_u, h_i = agg(w_u, h_u, oracles.row_mean(r) @ h_i), agg(w_i, h_i, oracles.row_mean(r.T) @ h_u)
    z_u = agg(p["mge_user"], p["user"], oracles.row_mean(oracles.cosine_top_k(r, n_similar)) @ p["user"])
    z_i = agg(p["mge_item"], p["item"], oracles.row_mean(oracles.cosine_top_k(r.T, n_similar)) @ p["item"])
    r_u = np.concatenate([np.tanh(np.concatenate([h_u, z_u], 1)), p["user"]], 1)
    r_i = np.concatenate([np.tanh(np.concatenate([h_i, z_i], 1)), p["item"]], 1)
    return r_u, r_i


@pytest.mark.parametrize("layer_sizes", [(64,), (5, 7)])
def test_encode_matches_numpy(pairs, key, layer_sizes):
    backbone = make_backbone("mgcf", U, I, dim=D, layer_sizes=layer_sizes, mge_dim=4, n_similar=3)
    params = backbone.init(key)
    reps = backbone.encode(params, backbone.build_graph(pairs))
    r_u, r_i = numpy_mgcf(params, pairs, 3)
    assert reps["user"].shape == (U, layer_sizes[-1] + 4 + D)
    np.testing.assert_allclose(np.asarray(reps["user"]), r_u, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(reps["item"]), r_i, rtol=1e-5, atol=1e-6)
    scores = backbone.score_pairs(reps, jnp.array([0, 2]), jnp.array([5, 1]))
    np.testing.assert_allclose(np.asarray(scores), [r_u[0] @ r_i[5], r_u[2] @ r_i[1]], rtol=1e-5)


def test_neighbour_dropout_only_with_key(pairs, key):
    backbone = make_backbone("mgcf", U, I, dim=D)
    params = backbone.init(key)
    graph = backbone.build_graph(pairs)
    plain = backbone.encode(params, graph)
    dropped = backbone.encode(params, graph, jax.random.key(1))
    assert not np.allclose(np.asarray(plain["user"]), np.asarray(dropped["user"]))
    # The skip connection (ego part) is never dropped.
    np.testing.assert_array_equal(np.asarray(dropped["user"][:, -D:]), np.asarray(params["user"]))
    no_rate = make_backbone("mgcf", U, I, dim=D, dropout=0.0)
    np.testing.assert_array_equal(
        np.asarray(no_rate.encode(params, graph, jax.random.key(1))["item"]), np.asarray(plain["item"])
    )


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_regularizer_is_half_l2_of_final_reps(pairs, key, reduction):
    backbone = make_backbone("mgcf", U, I, dim=D, l2=1e-4, reg_reduction=reduction)
    params = backbone.init(key)
    reps = backbone.encode(params, backbone.build_graph(pairs))
    users, pos, neg = jnp.array([0, 1, 1, 3]), jnp.array([2, 3, 4, 4]), jnp.array([5, 5, 0, 11])
    got = float(backbone.regularizer(params, reps, users, pos, neg))
    r = jax.tree.map(np.asarray, reps)
    squares = (r["user"][users] ** 2).sum() + (r["item"][pos] ** 2).sum() + (r["item"][neg] ** 2).sum()
    want = 1e-4 * 0.5 * squares / (4 if reduction == "mean" else 1)
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_defaults(key):
    backbone = make_backbone("mgcf", 20, 30)
    params = backbone.init(key)
    assert params["bgc_user"][0].shape == (128, 64) and params["mge_item"].shape == (128, 64)
    assert backbone.weight_decay == 0.0
    with pytest.raises(ValueError):
        make_backbone("mgcf", 20, 30, reg_reduction="max")
