"""Tests of the processed-data cache and of data/cache directory resolution."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

from dvr_jax.data import (
    DataError,
    load_dataset,
    loader,
    resolve_cache_dir,
    resolve_data_dir,
)
from tests.data.checks import write

ROWS = "".join(f"{u},{i},{4 + (u + i) % 2}\n" for u in range(20) for i in range(20) if (u + i) % 3)


def _assert_same(a, b):
    for split in ("train", "valid", "test"):
        np.testing.assert_array_equal(getattr(a, split), getattr(b, split))
    assert a.user_ids.tolist() == b.user_ids.tolist() and a.item_ids.tolist() == b.item_ids.tolist()
    assert (a.name, a.n_users, a.n_items, a.source_hash) == (
        b.name,
        b.n_users,
        b.n_items,
        b.source_hash,
    )


def _forbid_build(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("expected a cache hit")

    monkeypatch.setattr(loader, "_build", fail)


@pytest.fixture
def csv_path(tmp_path) -> str:
    return str(write(tmp_path / "r.csv", ROWS))


def test_second_load_hits_the_cache(csv_path, cache_dir, monkeypatch):
    first = load_dataset(csv_path, cache_dir=cache_dir)
    files = list(cache_dir.iterdir())
    assert len(files) == 1 and files[0].suffix == ".npz"
    _forbid_build(monkeypatch)
    second = load_dataset(csv_path, cache_dir=cache_dir)
    _assert_same(first, second)
    assert second.user_ids.dtype == object and second.train.dtype == np.int32


def test_cache_round_trips_side_information(tmp_path, cache_dir, monkeypatch):
    write(
        tmp_path / "m" / "m.inter",
        "user_id:token\titem_id:token\n" + "".join(f"{u}\t{i}\n" for u in range(4) for i in range(5)),
    )
    write(tmp_path / "m" / "m.item", "item_id:token\tclass:token_seq\n0\tA B\n1\tB\n")
    write(tmp_path / "m" / "m.user", "user_id:token\tgender:token\tage:token\n0\tF\t30\n")
    first = load_dataset("m", tmp_path, cache_dir=cache_dir, kcore=0)
    _forbid_build(monkeypatch)
    second = load_dataset("m", tmp_path, cache_dir=cache_dir, kcore=0)
    _assert_same(first, second)
    np.testing.assert_array_equal(first.item_categories, second.item_categories)
    assert first.category_names == second.category_names == ("A", "B", "unknown")
    assert set(second.user_attributes) == {"gender", "age"}
    for name, values in first.user_attributes.items():
        np.testing.assert_array_equal(values, second.user_attributes[name])


@pytest.mark.parametrize("damage", ["garbage", "truncate", "empty"])
def test_corrupted_cache_is_ignored_and_rebuilt(csv_path, cache_dir, damage):
    first = load_dataset(csv_path, cache_dir=cache_dir)
    (path,) = cache_dir.iterdir()
    data = path.read_bytes()
    path.write_bytes(
        {
            "garbage": b"not an npz" * 10,
            "truncate": data[: len(data) // 2],
            "empty": b"",
        }[damage]
    )
    second = load_dataset(csv_path, cache_dir=cache_dir)
    _assert_same(first, second)
    assert path.read_bytes() == data  # rewritten with the same content
    assert [p.name for p in cache_dir.iterdir()] == [path.name]  # no temporary files left


def test_key_follows_source_bytes_and_options(csv_path, cache_dir):
    base = load_dataset(csv_path, cache_dir=cache_dir)
    hashes = {base.source_hash}
    for options in ({"kcore": 5}, {"split_seed": 1}, {"rating_threshold": 3.0}):
        hashes.add(load_dataset(csv_path, cache_dir=cache_dir, **options).source_hash)
    assert len(hashes) == 4 and len(list(cache_dir.iterdir())) == 4
    pathlib.Path(csv_path).write_text(ROWS + "0,0,5\n")  # new bytes -> new key, no stale hit
    changed = load_dataset(csv_path, cache_dir=cache_dir)
    assert changed.source_hash not in hashes
    assert len(changed.train) + len(changed.valid) + len(changed.test) == 1 + sum(
        map(len, (base.train, base.valid, base.test))
    )


def test_unwritable_cache_dir_only_warns(csv_path, tmp_path):
    blocker = write(tmp_path / "blocker", "a file, not a folder")
    with pytest.warns(RuntimeWarning, match="not caching"):
        ds = load_dataset(csv_path, cache_dir=blocker / "sub")
    assert ds.n_users == 20


def test_use_cache_false_writes_nothing(csv_path, cache_dir):
    load_dataset(csv_path, cache_dir=cache_dir, use_cache=False)
    assert not cache_dir.exists()


def test_env_cache_dir(csv_path, tmp_path, monkeypatch):
    monkeypatch.setenv("DVR_CACHE_DIR", str(tmp_path / "envcache"))
    load_dataset(csv_path)
    assert len(list((tmp_path / "envcache").glob("*.npz"))) == 1


def test_resolve_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("DVR_DATA_DIR", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_dir() == tmp_path / "env"
    monkeypatch.delenv("DVR_DATA_DIR")
    assert resolve_data_dir() == tmp_path / "xdg" / "dvr_jax" / "data"
    assert resolve_cache_dir() == tmp_path / "xdg" / "dvr_jax" / "processed"
    assert resolve_cache_dir(tmp_path / "c") == tmp_path / "c"


def test_kcore_must_be_int(csv_path, cache_dir):
    with pytest.raises(DataError, match="kcore must be an integer or None"):
        load_dataset(csv_path, cache_dir=cache_dir, kcore=2.5)
