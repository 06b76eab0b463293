"""TIL: exact meta-gradient, weights move the way the outer loss asks, states, k-means, schedule."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dvr_jax import losses, sampler
from dvr_jax.backbones import make_backbone, propagation
from dvr_jax.baselines import BaselineData, til, til_parts
from tests.helpers import random_pairs


@pytest.mark.parametrize("backbone_name", ["mf", "lightgcn"])
def test_meta_weight_gradient_equals_autodiff_through_the_lookahead(rng, key, backbone_name):
    train = np.array([[0, 1], [0, 2], [1, 0], [1, 3], [2, 4], [3, 2], [3, 5]], np.int32)
    backbone = make_backbone(backbone_name, 4, 6, dim=3)
    graph = backbone.build_graph(train)
    params = jax.tree.map(lambda x: x * 5.0, backbone.init(key))
    users, pos, neg = (jnp.asarray(a, jnp.int32) for a in ([0, 1, 2, 3, 0], [1, 0, 4, 5, 2], [3, 2, 0, 1, 5]))
    val = (jnp.asarray([0, 2, 3], jnp.int32), jnp.asarray([4, 1, 2], jnp.int32), jnp.asarray([0, 3, 4], jnp.int32))
    alpha, weights = 0.3, jnp.asarray(rng.uniform(0.2, 1.5, 5), jnp.float32)

    def per_sample(p):
        reps = backbone.encode(p, graph)
        scores = [backbone.score_pairs(reps, users, items) for items in (pos, neg)]
        return losses.bpr_per_sample(*scores), backbone.regularizer(p, reps, users, pos, neg)

    def outer(p):
        reps = backbone.encode(p, graph)
        return jnp.mean(losses.bpr_per_sample(backbone.score_pairs(reps, val[0], val[1]),
                                              backbone.score_pairs(reps, val[0], val[2])))  # fmt: skip

    def lookahead_loss(w):
        grads = jax.grad(lambda p: jnp.sum(w * per_sample(p)[0]) + per_sample(p)[1])(params)
        return outer(jax.tree.map(lambda t, g: t - alpha * g, params, grads))

    _, vjp_fn = jax.vjp(per_sample, params)
    (inner,) = vjp_fn((weights, jnp.ones(())))
    outer_grads = jax.grad(outer)(jax.tree.map(lambda t, g: t - alpha * g, params, inner))
    got = til.meta_weight_gradient(vjp_fn, weights, outer_grads, alpha, 1.0)
    np.testing.assert_allclose(got, jax.grad(lookahead_loss)(weights), rtol=2e-4, atol=1e-7)


def _aligned_and_reversed():
    """16 users with equal embeddings; users 0-7 train (u, 0, 1), users 8-15 train (u, 1, 0).

    Validation asks item 0 above item 1 (users 0-7), so up-weighting a (u, 0, 1) triplet lowers
    the validation loss and up-weighting a (u, 1, 0) triplet raises it.
    """
    train = np.array([[u, 0] for u in range(8)] + [[u, 1] for u in range(8, 16)], np.int32)
    arrays = sampler.make_train_arrays(train, 16, 2)
    aux = {
        "mean_op": propagation.row_normalized(train[:, 0], train[:, 1], (16, 2)),
        "valid_users": jnp.arange(8, dtype=jnp.int32), "valid_items": jnp.zeros((8,), jnp.int32),
    }  # fmt: skip
    params = {"user": jnp.ones((16, 4), jnp.float32) * 0.3,
              "item": jnp.asarray([[0.1, -0.2, 0.05, 0.3], [-0.1, 0.25, 0.2, -0.05]], jnp.float32)}  # fmt: skip
    return arrays, BaselineData(arrays, None, aux), params


def test_outer_step_raises_weights_of_triplets_that_lower_the_validation_loss(key):
    arrays, data, params = _aligned_and_reversed()
    backbone = make_backbone("mf", 16, 2, dim=4, weight_decay=0.0)
    method = til.make_til_method(backbone, n_items=2, state_dim=8, hidden=8, valid_batch=8, learning_rate=0.01,
                                 meta_learning_rate=0.02, init_params=params)  # fmt: skip
    users = jnp.arange(16, dtype=jnp.int32)
    pos, neg = arrays.items, 1 - arrays.items

    def group_gap(state):
        p = state.backbone.params
        user, pos_e, neg_e, table = til_parts.entity_embeddings(backbone, p, users, pos, neg, 2)
        interest = til_parts.user_interest(data.aux["mean_op"], table)[users]
        weights = til_parts.generator_weights(state.generator.params, til_parts.ui_state(user, pos_e, neg_e, interest))
        return float(jnp.mean(weights[:8]) - jnp.mean(weights[8:]))

    state = method.init(key)
    step = jax.jit(method.step)
    before = group_gap(state)
    for _ in range(5):
        state, metrics = step(state, key, jnp.arange(16, dtype=jnp.int32), data)
        assert bool(metrics["finite"])
    assert group_gap(state) > before + 0.05


def test_state_formulas(rng):
    u, i, j, nu, ci, cj = (jnp.asarray(rng.normal(size=(3, 4)), jnp.float32) for _ in range(6))
    np.testing.assert_allclose(til_parts.ui_state(u, i, j, nu), np.concatenate([i * u + i * nu, j * u + j * nu], 1),
                               rtol=1e-6)  # fmt: skip
    expected = np.concatenate([u * i + u * ci + ci * i, u * j + u * cj + cj * j], 1)
    np.testing.assert_allclose(til_parts.centroid_state(u, i, j, ci, cj), expected, rtol=1e-6)


def test_interests_and_centroids_match_loops(rng):
    train = np.array([[0, 0], [0, 2], [0, 3], [1, 1], [2, 0], [2, 4], [2, 5]], np.int32)
    arrays = sampler.make_train_arrays(train, 4, 6)  # user 3 has no positive
    table = rng.normal(size=(6, 3)).astype(np.float32)
    clusters = np.array([0, 1, 0, 1, 1, 0], np.int32)
    mean_op = propagation.row_normalized(train[:, 0], train[:, 1], (4, 6))
    nu = np.asarray(til_parts.user_interest(mean_op, jnp.asarray(table)))
    for u in range(4):
        items = train[train[:, 0] == u, 1]
        np.testing.assert_allclose(nu[u], table[items].mean(0) if len(items) else 0.0, rtol=1e-5, atol=1e-7)
    centroids = np.asarray(til_parts.community_centroids(jnp.asarray(table), jnp.asarray(clusters), 2))
    np.testing.assert_allclose(centroids, [table[clusters == c].mean(0) for c in range(2)], rtol=1e-5)
    users, items = np.array([0, 0, 1, 2, 3]), np.array([1, 5, 3, 2, 0])
    fallback = jnp.asarray(rng.normal(size=(5, 3)), jnp.float32)
    got = np.asarray(til_parts.user_community_interest(arrays, jnp.asarray(table), jnp.asarray(clusters), 2,
                                                       jnp.asarray(users), jnp.asarray(items), fallback))  # fmt: skip
    for row, (u, i) in enumerate(zip(users, items)):
        mine = [t for t in train[train[:, 0] == u, 1] if clusters[t] == clusters[i]]
        np.testing.assert_allclose(got[row], table[mine].mean(0) if mine else fallback[row], rtol=1e-5)


def test_kmeans_recovers_separated_blobs(rng, key):
    centers = np.array([[5.0, 0.0], [-5.0, 0.0], [0.0, 8.0]], np.float32)
    truth = np.repeat(np.arange(3), 40)
    points = centers[truth] + rng.normal(scale=0.3, size=(120, 2)).astype(np.float32)
    labels = np.asarray(jax.jit(til_parts.kmeans, static_argnums=(2,))(key, jnp.asarray(points), 3))
    assert labels.min() >= 0 and labels.max() < 3
    assert all(len(set(labels[truth == c])) == 1 for c in range(3)) and len(set(labels)) == 3


def test_communities_refresh_on_schedule_inside_the_step(rng, key):
    train = random_pairs(rng, 12, 30, 0.2)
    arrays = sampler.make_train_arrays(train, 12, 30)
    backbone = make_backbone("mf", 12, 30, dim=4, init_std=0.5)
    aux = {"mean_op": propagation.row_normalized(train[:, 0], train[:, 1], (12, 30))}
    method = til.make_til_method(backbone, n_items=30, state_dim=8, variant="mi", hidden=8, outer="train",
                                 n_clusters=4, cluster_every=2, learning_rate=0.05)  # fmt: skip
    data = BaselineData(arrays, None, aux)
    state, step = method.init(key), jax.jit(method.step)
    batches = sampler.epoch_batches(key, arrays.n_pairs, 8)
    seen = []
    for index in range(3):
        state, metrics = step(state, key, batches[index], data)
        seen.append(np.asarray(state.clusters))
        assert bool(metrics["finite"])
    assert seen[0].min() >= 0 and seen[0].max() < 4 and len(set(seen[0].tolist())) > 1
    np.testing.assert_array_equal(seen[1], seen[0])  # step 1: kept; step 2 re-clusters the trained items
