"""Tests of binarising, de-duplication, iterated k-core, re-indexing and splits."""

from __future__ import annotations

import numpy as np
import pytest

from dvr_jax.data import preprocess


def _kcore_oracle(pairs: set[tuple[int, int]], k: int) -> set[tuple[int, int]]:
    """Slow reference: drop under-k users and items one round at a time until stable."""
    while True:
        user_deg, item_deg = {}, {}
        for u, i in pairs:
            user_deg[u] = user_deg.get(u, 0) + 1
            item_deg[i] = item_deg.get(i, 0) + 1
        kept = {(u, i) for u, i in pairs if user_deg[u] >= k and item_deg[i] >= k}
        if kept == pairs:
            return kept
        pairs = kept


def test_positives_threshold():
    assert preprocess.positives(None, 4.0) is None
    mask = preprocess.positives(np.array([5.0, 4.0, 3.9, 1.0]), 4.0)
    assert mask.tolist() == [True, True, False, False]


def test_unique_pairs_merges_duplicates_and_sorts():
    users = np.array([2, 0, 2, 0, 1, 2])
    items = np.array([1, 3, 1, 0, 5, 0])
    pairs = preprocess.unique_pairs(users, items)
    assert pairs.tolist() == [[0, 0], [0, 3], [1, 5], [2, 0], [2, 1]]
    assert preprocess.unique_pairs(np.array([], int), np.array([], int)).shape == (0, 2)


def test_sorted_unique_and_isin_sorted():
    values = np.array([5, 1, 5, 3, 1])
    assert preprocess.sorted_unique(values).tolist() == [1, 3, 5]
    assert preprocess.isin_sorted(np.array([0, 1, 4, 5, 9]), np.array([1, 3, 5])).tolist() == [
        False,
        True,
        False,
        True,
        False,
    ]
    assert not preprocess.isin_sorted(np.array([1]), np.array([], int)).any()


@pytest.mark.parametrize("k", [2, 3, 5])
def test_kcore_matches_oracle(rng, k):
    users = rng.zipf(1.6, 600) % 60
    items = rng.zipf(1.6, 600) % 80
    pairs = preprocess.unique_pairs(users, items)
    kept = pairs[preprocess.kcore_mask(pairs, k)]
    assert {tuple(p) for p in kept.tolist()} == _kcore_oracle({tuple(p) for p in pairs.tolist()}, k)
    if len(kept):
        assert np.bincount(kept[:, 0]).max() >= k
        assert np.bincount(kept[:, 0])[np.unique(kept[:, 0])].min() >= k
        assert np.bincount(kept[:, 1])[np.unique(kept[:, 1])].min() >= k


def test_kcore_needs_iteration():
    # Removing item 9 (1 user) drops user 2 below 2, which then drops item 3.
    pairs = np.array([[0, 1], [0, 2], [1, 1], [1, 2], [2, 3], [2, 9], [3, 3]])
    kept = pairs[preprocess.kcore_mask(pairs, 2)]
    assert kept.tolist() == [[0, 1], [0, 2], [1, 1], [1, 2]]
    assert preprocess.kcore_mask(pairs, None).all() and preprocess.kcore_mask(pairs, 1).all()


def test_reindex_contiguous_and_order_preserving():
    pairs = np.array([[3, 10], [3, 40], [7, 10], [9, 25]])
    dense, user_codes, item_codes = preprocess.reindex(pairs)
    assert dense.dtype == np.int32
    assert dense.tolist() == [[0, 0], [0, 2], [1, 0], [2, 1]]
    assert user_codes.tolist() == [3, 7, 9] and item_codes.tolist() == [10, 25, 40]
    assert (user_codes[dense[:, 0]] == pairs[:, 0]).all()


def test_dense_codes_sparse_ids_fall_back_to_sort():
    new, kept = preprocess.dense_codes(np.array([10**15, 5, 10**15, 7]))
    assert new.tolist() == [2, 0, 2, 1] and kept.tolist() == [5, 7, 10**15]


def _user_pairs(counts):
    return np.array([[u, i] for u, n in enumerate(counts) for i in range(n)], dtype=np.int32).reshape(-1, 2)


def test_split_sizes_and_small_users():
    counts = [1, 2, 3, 10, 14, 15, 25, 26]
    pairs = _user_pairs(counts)
    train, valid, test = preprocess.split_per_user(pairs, len(counts), seed=0)
    n_valid = np.bincount(valid[:, 0], minlength=len(counts))
    n_test = np.bincount(test[:, 0], minlength=len(counts))
    # max(1, round(0.1 n)), round half to even (Python's round); 0 under 3 pairs.
    expected = [0, 0, 1, 1, 1, 2, 2, 3]
    assert n_valid.tolist() == expected and n_test.tolist() == expected
    assert np.bincount(train[:, 0], minlength=len(counts)).tolist() == [
        n - 2 * e for n, e in zip(counts, expected, strict=True)
    ]
    merged = np.concatenate([train, valid, test])
    assert sorted(map(tuple, merged.tolist())) == sorted(map(tuple, pairs.tolist()))
    for split in (train, valid, test):
        assert split.dtype == np.int32
        assert np.all(np.diff(split[:, 0].astype(np.int64) * 100 + split[:, 1]) > 0)


def test_split_is_deterministic_per_seed_and_random_across_seeds():
    pairs = _user_pairs([40] * 30)
    first = preprocess.split_per_user(pairs, 30, seed=7)
    again = preprocess.split_per_user(pairs, 30, seed=7)
    other = preprocess.split_per_user(pairs, 30, seed=8)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[2], other[2])


def test_split_is_roughly_uniform():
    # Every item of a 10-pair user should land in test about 1/10 of the time.
    pairs = _user_pairs([10] * 2000)
    _, _, test = preprocess.split_per_user(pairs, 2000, seed=3)
    freq = np.bincount(test[:, 1], minlength=10) / 2000
    np.testing.assert_allclose(freq, 0.1, atol=0.03)


def test_carve_validation_sizes():
    counts = [1, 2, 9, 15, 20]
    train_in = _user_pairs(counts)
    train, valid = preprocess.carve_validation(train_in, len(counts), seed=1)
    assert np.bincount(valid[:, 0], minlength=5).tolist() == [0, 1, 1, 2, 2]
    assert len(train) + len(valid) == len(train_in)
    again = preprocess.carve_validation(train_in, len(counts), seed=1)
    np.testing.assert_array_equal(valid, again[1])
