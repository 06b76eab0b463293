"""make_eval_arrays: exclusion / held-out sets per split, user selection, chunk layout."""

from __future__ import annotations

import numpy as np
import pytest

from dvr_jax.evaluation import make_eval_arrays
from dvr_jax.evaluation.eval_arrays import default_chunk_size
from tests.evaluation import oracles


def _pairs_of(eval_arrays, rows_name: str, items_name: str) -> set[tuple[int, int]]:
    """(user, item) pairs stored in a padded per-chunk (row, item) list."""
    users = np.asarray(eval_arrays.users)
    rows, items = np.asarray(getattr(eval_arrays, rows_name)), np.asarray(getattr(eval_arrays, items_name))
    out = set()
    for chunk in range(users.shape[0]):
        for row, item in zip(rows[chunk], items[chunk]):
            if row < users.shape[1]:  # pads carry row C
                out.add((int(users[chunk, row]), int(item)))
    return out


def _as_set(pairs, users=None) -> set[tuple[int, int]]:
    return {(int(u), int(i)) for u, i in pairs if users is None or u in users}


@pytest.mark.parametrize("split", ["valid", "test"])
@pytest.mark.parametrize("chunk_size", [1, 4, 1000])
def test_sets_and_users(rng, split, chunk_size):
    ds = oracles.synthetic_dataset(rng)
    ea = make_eval_arrays(ds, split, chunk_size=chunk_size)
    heldout = ds.valid if split == "valid" else ds.test
    exclude = ds.train if split == "valid" else np.concatenate([ds.train, ds.valid])
    want_users = sorted(set(int(u) for u in heldout[:, 0]))
    assert len(want_users) < ds.n_users  # the dataset has users without held-out items

    users, mask = np.asarray(ea.users), np.asarray(ea.user_mask)
    assert sorted(users[mask].tolist()) == want_users and ea.n_users == len(want_users)
    assert _pairs_of(ea, "heldout_rows", "heldout_items") == _as_set(heldout)
    assert _pairs_of(ea, "exclude_rows", "exclude_items") == _as_set(exclude, set(want_users))
    n_pos = np.asarray(ea.n_pos)
    assert np.all(n_pos[~mask] == 0)
    for user, count in zip(users[mask], n_pos[mask]):
        assert count == np.sum(heldout[:, 0] == user)
    # the fewest chunks of at most chunk_size users, with the least padding
    n_chunks = -(-len(want_users) // chunk_size)
    assert users.shape == (n_chunks, -(-len(want_users) // n_chunks))
    assert ea.split == split and ea.n_items == ds.n_items
    for name in ["users", "n_pos", "exclude_rows", "exclude_items", "heldout_rows", "heldout_items"]:
        assert getattr(ea, name).dtype == np.int32, name


def test_valid_keeps_test_items_as_candidates(rng):
    ds = oracles.synthetic_dataset(rng)
    excluded = _pairs_of(make_eval_arrays(ds, "valid"), "exclude_rows", "exclude_items")
    assert not excluded & _as_set(ds.test) and not excluded & _as_set(ds.valid)


def test_user_subset(rng):
    ds = oracles.synthetic_dataset(rng)
    subset = np.array([0, 3, 5, 10, 17, 22])  # user 3 has no validation items
    ea = make_eval_arrays(ds, "valid", chunk_size=4, users=subset)
    kept = sorted(np.asarray(ea.users)[np.asarray(ea.user_mask)].tolist())
    assert kept == [u for u in subset.tolist() if u in set(ds.valid[:, 0].tolist())]
    assert 3 not in kept
    assert _pairs_of(ea, "exclude_rows", "exclude_items") == _as_set(ds.train, set(kept))


def test_chunks_are_balanced(rng):
    ds = oracles.synthetic_dataset(rng, n_users=40)
    ea = make_eval_arrays(ds, "test", chunk_size=8)
    rows = np.asarray(ea.exclude_rows)
    per_chunk = np.sum(rows < ea.chunk_size, axis=1)
    # snake assignment by exclusion count: chunk loads differ by at most the largest count
    largest = np.bincount(np.concatenate([ds.train, ds.valid])[:, 0]).max()
    assert per_chunk.max() - per_chunk.min() <= largest


def test_errors(rng):
    ds = oracles.synthetic_dataset(rng)
    with pytest.raises(ValueError, match="split"):
        make_eval_arrays(ds, "train")
    with pytest.raises(ValueError, match="user ids"):
        make_eval_arrays(ds, "valid", users=np.array([ds.n_users]))
    with pytest.raises(ValueError, match="no user"):
        make_eval_arrays(ds, "valid", users=np.array([3]))  # user 3 has no validation items
    with pytest.raises(ValueError, match="chunk_size"):
        make_eval_arrays(ds, "valid", chunk_size=0)


def test_default_chunk_size(rng):
    assert default_chunk_size(40_981, "cpu") == 6 * 2**20 // 40_981 == 153
    assert default_chunk_size(40_981, "gpu") == 2**27 // 40_981
    assert default_chunk_size(10**9, "cpu") == 16
    ds = oracles.synthetic_dataset(rng)
    ea = make_eval_arrays(ds, "valid")  # 60 items: everything in one chunk
    assert ea.n_chunks == 1 and ea.chunk_size == ea.n_users
