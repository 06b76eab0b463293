"""Every registered backbone: jit == no-jit, score_all vs score_pairs, shapes, one-step health."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dvr_jax.backbones import BACKBONES, make_backbone
from tests.backbones import oracles

U, I, B = 8, 10, 6
NAMES = ["mf", "neumf", "mgcf", "lightgcn"]
SMALL = {"mf": {"dim": 4}, "neumf": {"rows_per_chunk": 16}, "mgcf": {"dim": 4, "n_similar": 3}, "lightgcn": {"dim": 4}}


def test_registry_lists_all_backbones():
    assert sorted(BACKBONES) == sorted(NAMES)
    with pytest.raises(ValueError, match="known"):
        make_backbone("ngcf", U, I)


@pytest.fixture(params=NAMES)
def setup(request, rng, key):
    backbone = make_backbone(request.param, U, I, **SMALL[request.param])
    params = backbone.init(key)
    graph = backbone.build_graph(oracles.random_pairs(rng, U, I, 30))
    users = jnp.asarray(rng.integers(0, U, B), jnp.int32)
    pos = jnp.asarray(rng.integers(0, I, B), jnp.int32)
    neg = jnp.asarray(rng.integers(0, I, B), jnp.int32)
    return backbone, params, graph, users, pos, neg


def test_jit_equals_no_jit(setup):
    backbone, params, graph, users, pos, _ = setup

    def forward(params, graph, users, items):
        reps = backbone.encode(params, graph)
        return backbone.score_pairs(reps, users, items), backbone.score_all(reps, users)

    eager = forward(params, graph, users, pos)
    jitted = jax.jit(forward)(params, graph, users, pos)
    chex.assert_trees_all_close(jitted, eager, rtol=1e-5, atol=1e-6)


def test_score_all_consistent_with_score_pairs(setup):
    backbone, params, graph, users, _, _ = setup
    reps = backbone.encode(params, graph)
    full = backbone.score_all(reps, users)
    assert full.shape == (B, I) and full.dtype == jnp.float32
    grid_u = jnp.repeat(users, I)
    grid_i = jnp.tile(jnp.arange(I, dtype=jnp.int32), B)
    pairs = backbone.score_pairs(reps, grid_u, grid_i).reshape(B, I)
    np.testing.assert_allclose(np.asarray(full), np.asarray(pairs), rtol=1e-5, atol=1e-6)


def test_pair_features_shape(setup):
    backbone, params, _, users, pos, neg = setup
    feats = backbone.pair_features(params, users, pos, neg)
    dim = 64 if backbone.name == "neumf" else 4
    assert feats.shape == (B, (6 if backbone.name == "neumf" else 3) * dim)


def test_one_step_gradients_finite(setup, key):
    backbone, params, graph, users, pos, neg = setup

    def loss(params):
        reps = backbone.encode(params, graph, key)
        margin = backbone.score_pairs(reps, users, pos, key) - backbone.score_pairs(reps, users, neg, key)
        return jnp.sum(jax.nn.softplus(-margin)) + backbone.regularizer(params, reps, users, pos, neg)

    value, grads = jax.jit(jax.value_and_grad(loss))(params)
    assert np.isfinite(float(value))
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
    assert any(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(grads))


def test_same_arguments_give_the_same_backbone_and_evaluation_compiles_once(rng):
    from dvr_jax.evaluation.ranking import evaluate, make_eval_arrays
    from tests.helpers import count_compilations, tiny_dataset

    dataset = tiny_dataset(rng, n_users=17, n_items=23)  # shapes no other test uses
    first = make_backbone("mf", dataset.n_users, dataset.n_items, dim=5)
    assert make_backbone("mf", dataset.n_users, dataset.n_items, dim=5) is first
    assert make_backbone("mf", dataset.n_users, dataset.n_items, dim=6) is not first
    arrays = make_eval_arrays(dataset, "valid")
    evaluate(first, first.init(jax.random.key(0)), None, arrays, ks=(5,))
    again = make_backbone("mf", dataset.n_users, dataset.n_items, dim=5)  # a second run of a grid
    with count_compilations() as compiled:
        evaluate(again, again.init(jax.random.key(1)), None, arrays, ks=(5,))
    assert compiled[0] == 0
