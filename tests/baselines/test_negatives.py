"""Non-uniform negative samplers: rejection, popularity (WBPR / PRIS-pop), geometric ranks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from dvr_jax import sampler
from dvr_jax.baselines import negatives, wbpr
from tests.helpers import random_pairs

# One user with positives {0, 3, 4, 8} out of 10 items; user 1 only has item 2.
PAIRS = np.array([[0, 0], [0, 3], [0, 4], [0, 8], [1, 2]], np.int32)
NON_POSITIVES = np.array([1, 2, 5, 6, 7, 9])


def test_truncated_geometric_matches_its_distribution(key):
    n, scale = 12, 3.0
    ranks = np.asarray(negatives.truncated_geometric(key, (100_000,), n, scale))
    assert ranks.min() >= 0 and ranks.max() <= n - 1
    expected = np.exp(-np.arange(1, n + 1) / scale)  # P(r) ∝ exp(-r/λ), r = k + 1
    expected = expected / expected.sum() * ranks.size
    assert stats.chisquare(np.bincount(ranks, minlength=n), expected).pvalue > 1e-3


def test_popularity_negatives_follow_popularity_over_non_positives(key):
    arrays = sampler.make_train_arrays(PAIRS, 2, 10)
    popularity = jnp.asarray([5, 1, 2, 7, 3, 4, 0, 6, 9, 2], jnp.float32)  # item 6 never drawn
    users = jnp.zeros((60_000,), jnp.int32)
    drawn = np.asarray(wbpr.popularity_negatives(key, arrays, users, negatives.popularity_cdf(popularity)))
    counts = np.bincount(drawn, minlength=10)
    assert counts[[0, 3, 4, 8, 6]].sum() == 0
    mass = np.asarray(popularity, np.float64)[NON_POSITIVES]
    keep = mass > 0
    expected = mass[keep] / mass.sum() * drawn.size
    assert stats.chisquare(counts[NON_POSITIVES][keep], expected).pvalue > 1e-3


def test_popularity_exponent_changes_the_mass():
    cdf = negatives.popularity_cdf(jnp.asarray([1.0, 4.0, 0.0, 9.0]), exponent=0.5)
    np.testing.assert_allclose(np.diff(np.concatenate([[0.0], np.asarray(cdf)])), [1.0, 2.0, 0.0, 3.0], rtol=1e-6)


def test_rejection_never_returns_a_positive_and_keeps_shapes(rng, key):
    pairs = random_pairs(rng, 40, 25, 0.5)
    arrays = sampler.make_train_arrays(pairs, 40, 25)
    positives = set(map(tuple, pairs.tolist()))
    users = jnp.asarray(np.repeat(np.arange(40), 30).reshape(40, 30), jnp.int32)

    def propose(k):  # a proposal that mostly hits positives: items 0..5
        return jax.random.randint(k, users.shape, 0, 6, dtype=jnp.int32)

    items, accepted = jax.jit(lambda k: negatives.rejection_negatives(k, arrays, users, propose))(key)
    assert items.shape == users.shape and accepted.shape == users.shape
    flat = zip(np.asarray(users).ravel().tolist(), np.asarray(items).ravel().tolist())
    assert not any(pair in positives for pair in flat)


def test_rejection_falls_back_to_uniform_when_the_proposal_only_hits_positives(key):
    arrays = sampler.make_train_arrays(PAIRS, 2, 10)
    users = jnp.zeros((500,), jnp.int32)
    items, accepted = negatives.rejection_negatives(
        key, arrays, users, lambda k: jnp.zeros(users.shape, jnp.int32), max_rounds=3
    )
    assert not np.asarray(accepted).any()
    assert set(np.asarray(items).tolist()) <= set(NON_POSITIVES.tolist())


def test_uniform_negatives_keep_any_shape(key):
    arrays = sampler.make_train_arrays(PAIRS, 2, 10)
    drawn = np.asarray(negatives.uniform_negatives(key, arrays, jnp.zeros((2000, 5), jnp.int32)))
    assert drawn.shape == (2000, 5)
    counts = np.bincount(drawn.ravel(), minlength=10)
    assert counts[[0, 3, 4, 8]].sum() == 0 and stats.chisquare(counts[NON_POSITIVES]).pvalue > 1e-3
