"""AOBPR: rankings, the exact sampling distribution, preference for high scores, refresh schedule."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from dvr_jax import sampler
from dvr_jax.backbones import make_backbone
from dvr_jax.baselines import BaselineData, aobpr, negatives
from tests.helpers import random_pairs


def test_refresh_interval_is_n_log_n_samples():
    assert aobpr.refresh_interval(40_981, 5000) == math.ceil(40_981 * math.log(40_981) / 5000)
    assert aobpr.refresh_interval(10, 5000) == 1


def test_factor_rankings_sort_each_factor_descending(rng):
    table = rng.normal(size=(30, 4)).astype(np.float32)
    ranking, sigma = aobpr.factor_rankings(jnp.asarray(table))
    np.testing.assert_array_equal(ranking, np.argsort(-table, axis=0, kind="stable").T)
    np.testing.assert_allclose(sigma, table.std(axis=0), rtol=1e-5)


def test_adaptive_negatives_follow_the_aobpr_distribution(key):
    n_items, scale = 8, 2.0
    pairs = np.array([[0, 1], [0, 6], [1, 0]], np.int32)
    arrays = sampler.make_train_arrays(pairs, 2, n_items)
    item_factors = np.array(
        [[0.9, -0.2, 0.1], [0.1, 0.8, -0.5], [0.5, 0.3, 0.7], [-0.4, 0.6, 0.2],
         [0.2, -0.7, 0.9], [-0.8, 0.1, -0.3], [0.7, 0.4, -0.9], [0.0, -0.5, 0.4]], np.float32)  # fmt: skip
    user = np.array([0.6, -1.5, 0.3], np.float32)
    ranking, sigma = aobpr.factor_rankings(jnp.asarray(item_factors))
    draws = 60_000
    users = jnp.zeros((draws,), jnp.int32)
    factors = jnp.broadcast_to(jnp.asarray(user), (draws, 3))
    got = np.asarray(aobpr.adaptive_negatives(key, arrays, users, factors, ranking, sigma, scale))
    # Oracle: P(j) ∝ Σ_f P(f|u) Σ_k P(k) [item at k of f's ranking (reversed if p_uf < 0) = j], on j ∉ S_u+.
    p_factor = np.abs(user) * np.asarray(sigma)
    p_factor /= p_factor.sum()
    p_rank = np.exp(-np.arange(n_items) / scale)
    p_rank /= p_rank.sum()
    expected = np.zeros(n_items)
    for f in range(3):
        order = np.asarray(ranking)[f] if user[f] > 0 else np.asarray(ranking)[f][::-1]
        expected[order] += p_factor[f] * p_rank
    expected[[1, 6]] = 0.0
    expected /= expected.sum()
    counts = np.bincount(got, minlength=n_items)
    assert counts[[1, 6]].sum() == 0
    free = expected > 0
    assert stats.chisquare(counts[free], expected[free] * draws).pvalue > 1e-3


def _mf_setup(rng, key):
    n_users, n_items = 20, 200
    pairs = random_pairs(rng, n_users, n_items, 0.05)
    arrays = sampler.make_train_arrays(pairs, n_users, n_items)
    backbone = make_backbone("mf", n_users, n_items, dim=8, init_std=1.0)
    return pairs, arrays, backbone, backbone.init(key)


def test_adaptive_negatives_favour_high_scores_over_uniform(rng, key):
    pairs, arrays, backbone, params = _mf_setup(rng, key)
    users = jnp.asarray(np.repeat(np.arange(20), 500), jnp.int32)
    ranking, sigma = aobpr.factor_rankings(params["item"])
    adaptive = aobpr.adaptive_negatives(key, arrays, users, params["user"][users], ranking, sigma, 0.05 * 200)
    uniform = sampler.sample_uniform_negatives(key, arrays, users)
    positives = set(map(tuple, pairs.tolist()))
    assert not any(p in positives for p in zip(np.asarray(users).tolist(), np.asarray(adaptive).tolist()))
    score = lambda items: np.asarray(backbone.score_pairs(params, users, items))  # noqa: E731
    assert score(adaptive).mean() > score(uniform).mean() + 1.0


def test_pool_negatives_favour_high_scores_over_uniform(rng, key):
    pairs, arrays, backbone, params = _mf_setup(rng, key)
    users = jnp.asarray(np.repeat(np.arange(20), 200), jnp.int32)
    score_fn = lambda u, i: backbone.score_pairs(params, u, i)  # noqa: E731
    pooled = aobpr.pool_negatives(key, arrays, users, score_fn, 100, 5.0)
    uniform = negatives.uniform_negatives(key, arrays, users)
    positives = set(map(tuple, pairs.tolist()))
    assert not any(p in positives for p in zip(np.asarray(users).tolist(), np.asarray(pooled).tolist()))
    assert float(score_fn(users, pooled).mean()) > float(score_fn(users, uniform).mean()) + 1.0


def test_rankings_refresh_on_schedule_inside_the_step(rng, key):
    pairs, arrays, backbone, _ = _mf_setup(rng, key)
    method = aobpr.make_aobpr_method(backbone, n_items=200, factor_dim=8, batch_size=16, refresh_every=2,
                                     learning_rate=0.05)  # fmt: skip
    data = BaselineData(arrays, None, {})
    step = jax.jit(method.step)
    state = method.init(key)
    batches = sampler.epoch_batches(key, arrays.n_pairs, 16)
    rankings = []
    for index in range(3):
        before = state.backbone.params["item"]
        state, metrics = step(state, key, batches[index], data)
        rankings.append((np.asarray(state.ranking), np.asarray(aobpr.factor_rankings(before)[0])))
        assert bool(metrics["finite"])
    np.testing.assert_array_equal(rankings[0][0], rankings[0][1])  # step 0 ranks the initial model
    np.testing.assert_array_equal(rankings[1][0], rankings[0][0])  # step 1: kept
    np.testing.assert_array_equal(rankings[2][0], rankings[2][1])  # step 2: refreshed from the new model
    assert not np.array_equal(rankings[2][0], rankings[0][0])
