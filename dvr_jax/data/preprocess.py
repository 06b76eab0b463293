"""Preprocessing: binarise, de-duplicate, iterated k-core, re-index, split per user.

Implements docs/data.md §3–4 with vectorised NumPy (no per-interaction Python):
ratings >= a threshold are positives, duplicated (user, item) pairs count once, users
and items with fewer than k interactions are removed until none is left, ids are
re-indexed densely, and each user's positives are split 8:1:1 at random from a seed
(`n_val = n_test = max(1, round(0.1 n_u))`, Python's round-half-to-even; users with
fewer than 3 positives keep them all in train and are never evaluated). Published fixed
splits keep their test set and carve validation out of train (`n_val = max(1, round(0.1
n_u))` for users with >= 2 train items, else 0).
"""

from __future__ import annotations

import numpy as np

HOLDOUT_FRACTION = 0.1


def positives(ratings: np.ndarray | None, threshold: float) -> np.ndarray | None:
    """Marks records whose rating reaches `threshold`.

    Args:
      ratings: float64[P] explicit ratings, or None (all records are positives).
      threshold: the smallest positive rating.

    Returns:
      bool[P] mask, or None when `ratings` is None.
    """
    return None if ratings is None else ratings >= threshold


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values of a 1-D array.

    Sort-based on purpose: NumPy 2.4's hash-based `np.unique` (taken without
    `return_inverse`) is ~15x slower on a million int64 keys.
    """
    ordered = np.sort(values, kind="stable")
    if ordered.size:
        ordered = ordered[np.concatenate([[True], ordered[1:] != ordered[:-1]])]
    return ordered


def isin_sorted(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """bool mask of `values` that occur in the sorted 1-D array `sorted_set`."""
    if not sorted_set.size:
        return np.zeros(values.shape, dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_set, values), sorted_set.size - 1)
    return sorted_set[pos] == values


def unique_pairs(users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Distinct (user, item) pairs sorted by (user, item); duplicates count once.

    Args:
      users: int64[P] user codes.
      items: int64[P] item codes.

    Returns:
      int64[P', 2] sorted unique pairs.
    """
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    if not users.size:
        return np.zeros((0, 2), dtype=np.int64)
    width = int(items.max()) + 1  # codes are dense, so u * width + i fits in int64
    keys = sorted_unique(users * width + items)
    return np.stack([keys // width, keys % width], axis=1)


def kcore_mask(pairs: np.ndarray, k: int | None) -> np.ndarray:
    """Iterated k-core: keeps pairs whose user and item have >= k pairs, to a fixpoint.

    Args:
      pairs: int64[P, 2] distinct (user, item) pairs, ids >= 0.
      k: the core size; None or k <= 1 keeps everything.

    Returns:
      bool[P] mask of the pairs in the k-core.
    """
    keep = np.ones(len(pairs), dtype=bool)
    if k is None or k <= 1 or not len(pairs):
        return keep
    users, items = pairs[:, 0], pairs[:, 1]
    while True:
        user_deg = np.bincount(users[keep], minlength=users.max() + 1)
        item_deg = np.bincount(items[keep], minlength=items.max() + 1)
        new_keep = keep & (user_deg[users] >= k) & (item_deg[items] >= k)
        if np.array_equal(new_keep, keep):
            return keep
        keep = new_keep


def reindex(pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Re-indexes the users and items that occur in `pairs` densely, in code order.

    Args:
      pairs: int64[P, 2] (user code, item code) pairs.

    Returns:
      dense: int32[P, 2] pairs with ids in [0, U) x [0, I).
      user_codes: int64[U] the old code of each new user id.
      item_codes: int64[I] the old code of each new item id.
    """
    users, user_codes = dense_codes(pairs[:, 0])
    items, item_codes = dense_codes(pairs[:, 1])
    return np.stack([users, items], axis=1).astype(np.int32), user_codes, item_codes


def dense_codes(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Renumbers non-negative integer codes densely, keeping their order.

    Linear time through a presence table over [0, max] (a sort when the ids are sparse).

    Args:
      codes: int64[P] non-negative codes.

    Returns:
      new: int64[P] in [0, n), order-preserving.
      kept: int64[n] sorted distinct codes, `kept[new] == codes`.
    """
    if not codes.size:
        return codes.astype(np.int64), codes.astype(np.int64)
    if int(codes.max()) > 4 * codes.size + (1 << 20):  # sparse huge ids: sort instead
        kept, new = np.unique(codes, return_inverse=True)
        return new.reshape(-1).astype(np.int64), kept.astype(np.int64)
    present = np.zeros(int(codes.max()) + 1, dtype=bool)
    present[codes] = True
    new_of_old = np.cumsum(present) - 1
    return new_of_old[codes], np.flatnonzero(present)


def _holdout_sizes(counts: np.ndarray, min_count: int) -> np.ndarray:
    """`max(1, round(0.1 n_u))` for users with at least `min_count` pairs, else 0."""
    sizes = np.maximum(1, np.rint(HOLDOUT_FRACTION * counts)).astype(np.int64)
    return np.where(counts >= min_count, sizes, 0)


def _random_rank(users: np.ndarray, n_users: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A uniformly random rank of each pair among its user's pairs; per-user counts."""
    rng = np.random.default_rng(seed)
    # users + U[0, 1) sorts by user, then uniformly at random within a user.
    order = np.argsort(users + rng.random(users.size), kind="stable")
    counts = np.bincount(users, minlength=n_users)
    starts = np.cumsum(counts) - counts
    rank = np.empty(users.size, dtype=np.int64)
    rank[order] = np.arange(users.size) - starts[users[order]]
    return rank, counts


def split_per_user(pairs: np.ndarray, n_users: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-user random 8:1:1 split.

    Args:
      pairs: int32[P, 2] dense pairs sorted by (user, item), no duplicates.
      n_users: U.
      seed: split seed (`np.random.default_rng(seed)`); same seed, same split.

    Returns:
      train, valid, test: int32[*, 2] disjoint subsets of `pairs`, each sorted.
    """
    users = pairs[:, 0].astype(np.int64)
    rank, counts = _random_rank(users, n_users, seed)
    n_hold = _holdout_sizes(counts, min_count=3)[users]
    valid = rank < n_hold
    test = (rank >= n_hold) & (rank < 2 * n_hold)
    return pairs[~(valid | test)], pairs[valid], pairs[test]


def carve_validation(train: np.ndarray, n_users: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Moves a random ~10% of each user's train pairs to validation (fixed splits).

    Args:
      train: int32[P, 2] dense train pairs sorted by (user, item).
      n_users: U.
      seed: split seed.

    Returns:
      train, valid: int32[*, 2] disjoint sorted subsets of `train`.
    """
    users = train[:, 0].astype(np.int64)
    rank, counts = _random_rank(users, n_users, seed)
    valid = rank < _holdout_sizes(counts, min_count=2)[users]
    return train[~valid], train[valid]
