"""Every registered loader on the real files in ../shared/data, with README counts."""

from __future__ import annotations

import numpy as np
import pytest

from dvr_jax.data import load_dataset, text
from dvr_jax.data.preprocess import unique_pairs
from tests.data.checks import assert_valid_dataset

pytestmark = pytest.mark.realdata


def _load(name, real_data_dir, cache_dir, **kw):
    return load_dataset(name, real_data_dir, cache_dir=cache_dir, download=False, **kw)


def _total(ds) -> int:
    return len(ds.train) + len(ds.valid) + len(ds.test)


def _assert_8_1_1(ds) -> None:
    counts = np.bincount(np.concatenate([ds.train, ds.valid, ds.test])[:, 0], minlength=ds.n_users)
    expected = np.maximum(1, np.rint(0.1 * counts)).astype(int)
    np.testing.assert_array_equal(np.bincount(ds.valid[:, 0], minlength=ds.n_users), expected)
    np.testing.assert_array_equal(np.bincount(ds.test[:, 0], minlength=ds.n_users), expected)


def _assert_10_core(ds) -> None:
    pairs = np.concatenate([ds.train, ds.valid, ds.test])
    assert np.bincount(pairs[:, 0]).min() >= 10 and np.bincount(pairs[:, 1]).min() >= 10


def test_lastfm(real_data_dir, cache_dir):
    ds = _load("lastfm", real_data_dir, cache_dir)
    assert (ds.n_users, ds.n_items, _total(ds)) == (1797, 1507, 62376)
    assert_valid_dataset(ds)
    _assert_10_core(ds)
    _assert_8_1_1(ds)
    assert ds.item_categories is None and ds.user_attributes == {}
    again = _load("lastfm", real_data_dir, cache_dir, use_cache=False)
    np.testing.assert_array_equal(ds.test, again.test)  # same seed, same split


def test_ml_100k(real_data_dir, cache_dir):
    ds = _load("ml-100k", real_data_dir, cache_dir)
    assert (ds.n_users, ds.n_items, _total(ds)) == (887, 822, 52764)
    assert_valid_dataset(ds)
    _assert_10_core(ds)
    _assert_8_1_1(ds)
    assert ds.n_categories == 19 and "Drama" in ds.category_names
    toy_story = ds.item_ids.tolist().index("1")
    names = {ds.category_names[j] for j in np.flatnonzero(ds.item_categories[toy_story])}
    assert names == {"Animation", "Children's", "Comedy"}
    gender, age = ds.user_attributes["gender"], ds.user_attributes["age"]
    assert set(gender.tolist()) == {"M", "F"} and age.dtype == np.int32
    first = ds.user_ids.tolist().index("1")
    assert (gender[first], age[first]) == ("M", 24)  # ml-100k.user line 2


def test_lastfm_lightgcn(real_data_dir, cache_dir):
    ds = _load("lastfm-lightgcn", real_data_dir, cache_dir)
    assert (ds.n_users, ds.n_items) == (1880, 4489)
    assert (len(ds.train) + len(ds.valid), len(ds.test)) == (42135, 10533)
    assert_valid_dataset(ds)
    train_counts = np.bincount(np.concatenate([ds.train, ds.valid])[:, 0], minlength=ds.n_users)
    expected = np.where(train_counts >= 2, np.maximum(1, np.rint(0.1 * train_counts)), 0)
    np.testing.assert_array_equal(np.bincount(ds.valid[:, 0], minlength=ds.n_users), expected)


def test_gowalla(real_data_dir, cache_dir):
    ds = _load("gowalla", real_data_dir, cache_dir)
    assert (ds.n_users, ds.n_items) == (29858, 40981)
    assert (len(ds.train) + len(ds.valid), len(ds.test)) == (810128, 217242)
    assert_valid_dataset(ds)
    # The published test split is kept exactly (ids 0..n-1 all occur: identity map).
    assert ds.user_ids.astype(int).tolist() == list(range(29858))
    assert ds.item_ids.astype(int).tolist() == list(range(40981))
    users, items = text.parse_adjacency((real_data_dir / "gowalla" / "test.txt").read_bytes(), "t")
    np.testing.assert_array_equal(ds.test, unique_pairs(users, items))
    cached = _load("gowalla", real_data_dir, cache_dir)
    np.testing.assert_array_equal(ds.valid, cached.valid)
