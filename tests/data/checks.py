"""Helpers shared by the data tests: a tiny-file writer and the `Dataset` invariants."""

from __future__ import annotations

import pathlib

import numpy as np

from dvr_jax.data import Dataset, load_dataset


def assert_valid_dataset(ds: Dataset) -> None:
    """Checks dtypes, shapes, id ranges, sorting, uniqueness and split disjointness."""
    assert len(ds.user_ids) == ds.n_users and len(ds.item_ids) == ds.n_items
    assert ds.user_ids.dtype == object and ds.item_ids.dtype == object
    assert len(set(ds.user_ids.tolist())) == ds.n_users
    keys = []
    for split in (ds.train, ds.valid, ds.test):
        assert split.dtype == np.int32 and split.ndim == 2 and split.shape[1] == 2
        if len(split):
            assert split[:, 0].min() >= 0 and split[:, 0].max() < ds.n_users
            assert split[:, 1].min() >= 0 and split[:, 1].max() < ds.n_items
        key = split[:, 0].astype(np.int64) * ds.n_items + split[:, 1]
        assert np.all(np.diff(key) > 0), "pairs must be sorted by (user, item) and unique"
        keys.append(key)
    everything = np.concatenate(keys)
    assert len(np.unique(everything)) == len(everything), "splits must be disjoint"
    used_users = np.unique(np.concatenate([s[:, 0] for s in (ds.train, ds.valid, ds.test)]))
    used_items = np.unique(np.concatenate([s[:, 1] for s in (ds.train, ds.valid, ds.test)]))
    assert len(used_users) == ds.n_users and len(used_items) == ds.n_items, "ids are contiguous"
    if ds.item_categories is not None:
        assert ds.item_categories.dtype == np.float32
        assert ds.item_categories.shape == (ds.n_items, len(ds.category_names))
        assert set(np.unique(ds.item_categories).tolist()) <= {0.0, 1.0}
        assert ds.item_categories.sum(axis=1).min() >= 1
    for values in ds.user_attributes.values():
        assert len(values) == ds.n_users


def write(path: pathlib.Path, text: str) -> pathlib.Path:
    """Writes `text` to `path` (UTF-8), creating parent folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def split_pairs(ds: Dataset, split: str) -> set[tuple[str, str]]:
    """The pairs of one split as (original user id, original item id)."""
    return {(ds.user_ids[u], ds.item_ids[i]) for u, i in getattr(ds, split).tolist()}


def all_pairs(ds: Dataset) -> set[tuple[str, str]]:
    """All pairs of the three splits as original ids."""
    return split_pairs(ds, "train") | split_pairs(ds, "valid") | split_pairs(ds, "test")


def load_offline(name: str, data_dir: pathlib.Path, cache_dir: pathlib.Path, **kw) -> Dataset:
    """`load_dataset` with downloads disabled unless the test asks for them."""
    kw.setdefault("download", False)
    return load_dataset(name, data_dir, cache_dir=cache_dir, **kw)
