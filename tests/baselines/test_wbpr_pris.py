"""WBPR (item-bias wrapper, LibRec user order) and PRIS (importance weights, weighted update)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from dvr_jax import losses, sampler
from dvr_jax.backbones import make_backbone
from dvr_jax.baselines import common, pris, wbpr
from dvr_jax.state import LearnerState, make_adam


def test_item_bias_wrapper_adds_the_bias_everywhere(rng, key):
    inner = make_backbone("lightgcn", 5, 7, dim=4)
    graph = inner.build_graph(np.array([[0, 1], [1, 2], [2, 3], [3, 4], [4, 5], [0, 6]]))
    biased = wbpr.with_item_bias(inner, 7)
    params = biased.init(key)
    params["item_bias"] = jnp.asarray(rng.normal(size=7), jnp.float32)
    reps = biased.encode(params, graph)
    users, items = jnp.asarray([0, 3, 4], jnp.int32), jnp.asarray([6, 0, 2], jnp.int32)
    inner_reps = inner.encode(params["backbone"], graph)
    expected = inner.score_pairs(inner_reps, users, items) + params["item_bias"][items]
    np.testing.assert_allclose(biased.score_pairs(reps, users, items), expected, rtol=1e-6)
    full = biased.score_all(reps, users)
    np.testing.assert_allclose(full[jnp.arange(3), items], biased.score_pairs(reps, users, items), rtol=1e-5)
    np.testing.assert_allclose(biased.regularizer(params, reps, users, items, items),
                               inner.regularizer(params["backbone"], inner_reps, users, items, items))  # fmt: skip
    assert biased.name == "lightgcn+bias" and float(jnp.sum(biased.init(key)["item_bias"] ** 2)) == 0.0


def test_item_bias_is_trained(rng, key):
    biased = wbpr.with_item_bias(make_backbone("mf", 4, 6, dim=3), 6)
    state = LearnerState.create(biased.init(key), make_adam(0.1))
    users, pos, neg = (jnp.asarray(a, jnp.int32) for a in ([0, 1, 2], [1, 2, 3], [4, 5, 0]))
    new_state, _ = common.pairwise_update(state, biased, None, None, users, pos, neg)
    bias = np.asarray(new_state.params["item_bias"])
    assert np.all(bias[[1, 2, 3]] > 0) and np.all(bias[[4, 5, 0]] < 0)


def test_user_uniform_pairs_are_uniform_over_active_users(key):
    pairs = np.array([[0, 0], [0, 1], [0, 2], [0, 3], [2, 1], [3, 0], [3, 4]], np.int32)  # user 1: none
    arrays = sampler.make_train_arrays(pairs, 4, 5)
    users, pos = jax.jit(wbpr.user_uniform_pairs, static_argnums=2)(key, arrays, 30_000)
    users, pos = np.asarray(users), np.asarray(pos)
    assert set(map(tuple, np.stack([users, pos], 1).tolist())) <= set(map(tuple, pairs.tolist()))
    counts = np.bincount(users, minlength=4)
    assert counts[1] == 0 and stats.chisquare(counts[[0, 2, 3]]).pvalue > 1e-3
    user0 = np.bincount(pos[users == 0], minlength=5)[:4]  # u's positives equally likely
    assert stats.chisquare(user0).pvalue > 1e-3


def test_importance_weights_are_the_self_normalised_softmax(rng):
    scores = rng.normal(size=(6, 5)).astype(np.float32)
    log_q = np.log(rng.uniform(0.1, 1.0, size=(6, 5))).astype(np.float32)
    for tau in (1.0, 0.5):
        logits = scores / tau - log_q
        expected = np.exp(logits - logits.max(1, keepdims=True))
        expected /= expected.sum(1, keepdims=True)
        got = pris.importance_weights(jnp.asarray(scores), jnp.asarray(log_q), tau)
        np.testing.assert_allclose(got, expected, rtol=1e-5)
        np.testing.assert_allclose(np.asarray(got).sum(1), 1.0, rtol=1e-6)
    flat = pris.importance_weights(jnp.zeros((2, 5)), jnp.zeros((2, 5)))
    np.testing.assert_allclose(flat, 0.2)


def test_pris_update_is_the_importance_weighted_pairwise_gradient(rng, key):
    backbone = make_backbone("mf", 5, 12, dim=4, init_std=0.5)
    state = LearnerState.create(backbone.init(key), make_adam(0.1, backbone.weight_decay))
    users = jnp.asarray(rng.integers(0, 5, 8), jnp.int32)
    pos = jnp.asarray(rng.integers(0, 12, 8), jnp.int32)
    neg = jnp.asarray(rng.integers(0, 12, (8, 5)), jnp.int32)
    log_q = jnp.asarray(rng.normal(size=(8, 5)), jnp.float32)
    weights_fn = lambda per_sample, p, n: pris.importance_weights(n, log_q, 1.0)  # noqa: E731
    new_state, out = common.pairwise_update(state, backbone, None, None, users, pos, neg, weights_fn)

    def oracle(params):
        u = params["user"][users]
        pos_scores = jnp.sum(u * params["item"][pos], -1)
        neg_scores = jnp.einsum("bd,bld->bl", u, params["item"][neg])
        weights = jax.lax.stop_gradient(jax.nn.softmax(neg_scores - log_q, axis=-1))
        return jnp.sum(weights * losses.bpr_per_sample(pos_scores[:, None], neg_scores))

    expected = state.apply_gradients(jax.grad(oracle)(state.params))
    np.testing.assert_allclose(new_state.params["item"], expected.params["item"], rtol=1e-5, atol=1e-6)
    assert out["per_sample"].shape == (8, 5)
