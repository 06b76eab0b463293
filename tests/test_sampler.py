"""Sampler: exact uniform negatives, membership test, epoch batches, determinism."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from dvr_jax import sampler
from tests.helpers import random_pairs


@pytest.fixture
def train_arrays(rng):
    pairs = random_pairs(rng, 50, 30, 0.4)
    return pairs, sampler.make_train_arrays(pairs, 50, 30)


def test_negatives_are_never_training_positives(train_arrays, key):
    pairs, arrays = train_arrays
    positives = set(map(tuple, pairs.tolist()))
    users = jnp.asarray(np.repeat(np.arange(50), 200), jnp.int32)
    negatives = np.asarray(jax.jit(sampler.sample_uniform_negatives)(key, arrays, users))
    assert negatives.min() >= 0 and negatives.max() < 30
    assert not any((u, j) in positives for u, j in zip(np.asarray(users).tolist(), negatives.tolist()))


def test_negatives_are_uniform_over_non_positives(key):
    # One user with positives {0, 3, 4, 8} out of 10 items: 6 non-positives, equally likely.
    pairs = np.array([[0, 0], [0, 3], [0, 4], [0, 8], [1, 2]], np.int32)
    arrays = sampler.make_train_arrays(pairs, 2, 10)
    users = jnp.zeros((60_000,), jnp.int32)
    negatives = np.asarray(sampler.sample_uniform_negatives(key, arrays, users))
    counts = np.bincount(negatives, minlength=10)
    assert counts[[0, 3, 4, 8]].sum() == 0
    observed = counts[[1, 2, 5, 6, 7, 9]]
    assert stats.chisquare(observed).pvalue > 1e-3


def test_negatives_for_a_user_with_one_free_item(key):
    pairs = np.array([[0, i] for i in range(10) if i != 6], np.int32)
    arrays = sampler.make_train_arrays(pairs, 1, 10)
    negatives = sampler.sample_uniform_negatives(key, arrays, jnp.zeros((100,), jnp.int32))
    assert np.all(np.asarray(negatives) == 6)


def test_is_training_positive_matches_a_set(train_arrays, rng):
    pairs, arrays = train_arrays
    positives = set(map(tuple, pairs.tolist()))
    users = rng.integers(0, 50, 2000).astype(np.int32)
    items = rng.integers(0, 30, 2000).astype(np.int32)
    got = np.asarray(sampler.is_training_positive(arrays, jnp.asarray(users), jnp.asarray(items)))
    expected = np.array([(u, i) in positives for u, i in zip(users.tolist(), items.tolist())])
    np.testing.assert_array_equal(got, expected)


def test_same_key_same_batch_and_different_key_different_batch(train_arrays, key):
    _, arrays = train_arrays
    batches = sampler.epoch_batches(key, arrays.n_pairs, 64)
    again = sampler.epoch_batches(key, arrays.n_pairs, 64)
    other = sampler.epoch_batches(jax.random.key(1), arrays.n_pairs, 64)
    np.testing.assert_array_equal(batches, again)
    assert not np.array_equal(batches, other)
    triplets = sampler.sample_triplets(key, arrays, batches[0])
    np.testing.assert_array_equal(np.stack(triplets), np.stack(sampler.sample_triplets(key, arrays, batches[0])))


def test_epoch_batches_are_a_permutation_without_the_partial_batch(train_arrays, key):
    _, arrays = train_arrays
    batches = np.asarray(sampler.epoch_batches(key, arrays.n_pairs, 64))
    assert batches.shape == (arrays.n_pairs // 64, 64)
    assert len(np.unique(batches)) == batches.size


def test_make_train_arrays_rejects_bad_input():
    with pytest.raises(ValueError, match="out of range"):
        sampler.make_train_arrays(np.array([[0, 5]]), 1, 5)
    with pytest.raises(ValueError, match="every item"):
        sampler.make_train_arrays(np.array([[0, 0], [0, 1]]), 1, 2)
