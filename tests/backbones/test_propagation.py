"""Propagation kernel: dense oracles, custom VJP against dense autodiff, numeric gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from dvr_jax.backbones import propagation
from tests.backbones import oracles

U, I, D = 7, 9, 4


@pytest.fixture
def pairs(rng: np.random.Generator) -> np.ndarray:
    base = oracles.random_pairs(rng, U, I, 25)
    return np.concatenate([base, base[:3]])  # duplicates are counted once


def test_normalized_adjacency_matches_dense(pairs):
    op = propagation.normalized_bipartite_adjacency(pairs, U, I)
    expected = oracles.normalized_adjacency(pairs, U, I)
    np.testing.assert_allclose(np.asarray(op.matrix.todense()), expected, rtol=1e-6, atol=1e-7)
    assert op.transpose is op.matrix
    assert np.all(expected[U - 1] == 0) and np.all(expected[U + I - 1] == 0)


def test_row_normalized_matches_dense(pairs):
    op = propagation.row_normalized(pairs[:, 1], pairs[:, 0], (I, U))
    expected = oracles.row_mean(oracles.interaction_matrix(pairs, U, I).T)
    np.testing.assert_allclose(np.asarray(op.matrix.todense()), expected, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(op.transpose.todense()), expected.T, rtol=1e-6)


@pytest.mark.parametrize("n_layers", [0, 1, 3])
def test_lightgcn_propagate_matches_dense(pairs, rng, n_layers):
    op = propagation.normalized_bipartite_adjacency(pairs, U, I)
    ego = rng.normal(size=(U + I, D)).astype(np.float32)
    adj = oracles.normalized_adjacency(pairs, U, I)
    layer, total = ego.astype(np.float64), ego.astype(np.float64)
    for _ in range(n_layers):
        layer = adj @ layer
        total = total + layer
    got = propagation.lightgcn_propagate(op, jnp.asarray(ego), n_layers)
    np.testing.assert_allclose(np.asarray(got), total / (n_layers + 1), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("symmetric", [True, False])
def test_custom_vjp_matches_dense_autodiff(pairs, rng, symmetric):
    if symmetric:
        op = propagation.normalized_bipartite_adjacency(pairs, U, I)
    else:
        op = propagation.row_normalized(pairs[:, 0], pairs[:, 1], (U, I))
    dense = jnp.asarray(op.matrix.todense())
    x = jnp.asarray(rng.normal(size=(op.shape[1], D)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(op.shape[0], D)), jnp.float32)

    def loss(matmul, x):
        return jnp.sum(jnp.tanh(matmul(x)) * w)

    got = jax.grad(lambda x: loss(lambda v: propagation.spmm(op, v), x))(x)
    want = jax.grad(lambda x: loss(lambda v: dense @ v, x))(x)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6)


def test_check_grads_tiny_graph(pairs, rng):
    op = propagation.normalized_bipartite_adjacency(pairs, U, I)
    ego = jnp.asarray(rng.normal(size=(U + I, 3)), jnp.float32)

    def f(ego):
        return jnp.sum(jnp.sin(propagation.lightgcn_propagate(op, ego, 2)))

    # custom_vjp defines reverse mode only; f32 central differences need loose tolerances.
    check_grads(f, (ego,), order=1, modes=["rev"], eps=1e-2, atol=2e-2, rtol=2e-2)


def test_jit_equals_no_jit(pairs, rng):
    op = propagation.normalized_bipartite_adjacency(pairs, U, I)
    ego = jnp.asarray(rng.normal(size=(U + I, D)), jnp.float32)
    f = lambda op, e: propagation.lightgcn_propagate(op, e, 3)  # noqa: E731
    np.testing.assert_allclose(np.asarray(jax.jit(f)(op, ego)), np.asarray(f(op, ego)), rtol=1e-6)
    grad = jax.grad(lambda e: jnp.sum(f(op, e) ** 2))
    np.testing.assert_allclose(np.asarray(jax.jit(grad)(ego)), np.asarray(grad(ego)), rtol=1e-6)
