"""`load_dataset` on tiny files in the registered layouts: hetrec, LightGCN, Gowalla."""

from __future__ import annotations

import numpy as np
import pytest

from dvr_jax.data import DATASETS, DataError
from tests.data.checks import (
    all_pairs,
    assert_valid_dataset,
    load_offline,
    split_pairs,
    write,
)


def _hetrec(tmp_path, rows):
    body = "".join(f"{u}\t{i}\t{w}\n" for u, i, w in rows)
    write(tmp_path / "lastfm" / "user_artists.dat", "userID\tartistID\tweight\n" + body)
    return tmp_path


def test_lastfm_every_listen_is_positive(tmp_path, cache_dir):
    rows = [(u, i, 1 + u * i) for u in (2, 3, 10) for i in (51, 52, 53, 7)]
    ds = load_offline("lastfm", _hetrec(tmp_path, rows), cache_dir, kcore=0)
    assert_valid_dataset(ds)
    assert ds.n_users == 3 and ds.n_items == 4
    assert ds.user_ids.tolist() == ["2", "3", "10"]  # numeric order, not "10" < "2"
    assert ds.item_ids.tolist() == ["7", "51", "52", "53"]
    assert len(all_pairs(ds)) == 12 and ds.item_categories is None and ds.user_attributes == {}
    # 4 pairs per user -> 1 valid, 1 test, 2 train each.
    assert ds.summary() == {"users": 3, "items": 4, "train": 6, "valid": 3, "test": 3}


@pytest.mark.parametrize("options", [{}, {"kcore": None}])
def test_lastfm_default_10core_leaves_nothing_on_tiny_data(tmp_path, cache_dir, options):
    # kcore=None means "the dataset's default" (10 here); kcore=0 disables it.
    rows = [(u, i, 1) for u in (2, 3) for i in (1, 2)]
    with pytest.raises(DataError, match=r"no interactions left .* kcore=10\)"):
        load_offline("lastfm", _hetrec(tmp_path, rows), cache_dir, **options)
    assert load_offline("lastfm", tmp_path, cache_dir, kcore=0).n_users == 2


def test_lastfm_non_numeric_id(tmp_path, cache_dir):
    write(
        tmp_path / "lastfm" / "user_artists.dat",
        "userID\tartistID\tweight\n2\t5\t1\n2\tabc\t1\n",
    )
    with pytest.raises(DataError) as info:
        load_offline("lastfm", tmp_path, cache_dir, kcore=0)
    assert str(info.value) == ("user_artists.dat line 3: artist id 'abc' is not a non-negative integer")


def test_lastfm_missing_header(tmp_path, cache_dir):
    write(tmp_path / "lastfm" / "user_artists.dat", "2\t5\t1\n2\t6\t1\n")
    with pytest.raises(DataError, match="user_artists.dat line 1: header has no userID field"):
        load_offline("lastfm", tmp_path, cache_dir, kcore=0)


def test_lightgcn_triplets_fixed_split(tmp_path, cache_dir):
    train = [(u, i, 3) for u in (1, 2, 3) for i in range(1, 12) if (u * i) % 4]
    test = [
        (1, 20, 1),
        (2, 21, 1),
        (3, 20, 1),
        (2, 1, 1),
    ]  # (2, 1) also in train: dropped
    write(
        tmp_path / "lastfm-lightgcn" / "data1.txt",
        "".join(f"{u}\t{i}\t{c}\r\n" for u, i, c in train),
    )
    write(
        tmp_path / "lastfm-lightgcn" / "test1.txt",
        "".join(f"{u}\t{i}\t{c}.5e+02\n" for u, i, c in test),
    )
    ds = load_offline("lastfm-lightgcn", tmp_path, cache_dir)  # default: no k-core
    assert_valid_dataset(ds)
    assert split_pairs(ds, "test") == {("1", "20"), ("2", "21"), ("3", "20")}
    assert split_pairs(ds, "train") | split_pairs(ds, "valid") == {(str(u), str(i)) for u, i, _ in train}
    per_user = {u: sum(1 for v, _, _ in train if v == u) for u in (1, 2, 3)}
    n_valid = np.bincount(ds.valid[:, 0], minlength=3)
    assert n_valid.tolist() == [max(1, round(0.1 * per_user[u])) for u in (1, 2, 3)]
    assert ds.item_ids[0] == "1"  # 1-based ids keep their original labels


def test_lightgcn_triplets_wrong_column_count(tmp_path, cache_dir):
    write(tmp_path / "lastfm-lightgcn" / "data1.txt", "1\t2\t3\n1\t3\n")
    write(tmp_path / "lastfm-lightgcn" / "test1.txt", "1\t4\t3\n")
    with pytest.raises(DataError, match=r"^data1.txt line 2: expected 3 columns, got 2$"):
        load_offline("lastfm-lightgcn", tmp_path, cache_dir)


def _gowalla(tmp_path, train, test):
    write(tmp_path / "gowalla" / "train.txt", train)
    write(tmp_path / "gowalla" / "test.txt", test)
    return tmp_path


def test_gowalla_adjacency_fixed_split(tmp_path, cache_dir):
    train = "0 0 1 2 3\n1 2 3\n2\n3 1 4 4\n"  # user 2 has no items; (3, 4) twice
    test = "0 4\n1 0\n3 2\n"
    ds = load_offline("gowalla", _gowalla(tmp_path, train, test), cache_dir)
    assert_valid_dataset(ds)
    assert ds.user_ids.tolist() == ["0", "1", "3"]  # ids present in some pair
    assert ds.n_items == 5
    assert split_pairs(ds, "test") == {("0", "4"), ("1", "0"), ("3", "2")}
    assert len(ds.train) + len(ds.valid) == 8
    assert len(ds.valid) == 3  # one per user with >= 2 train items


def test_gowalla_kcore_option_keeps_published_membership(tmp_path, cache_dir):
    train = "0 0 1\n1 0 1\n2 0 5\n"
    test = "0 2\n1 2\n2 1\n"
    ds = load_offline("gowalla", _gowalla(tmp_path, train, test), cache_dir, kcore=2)
    assert "5" not in ds.item_ids.tolist()
    assert split_pairs(ds, "test") == {("0", "2"), ("1", "2"), ("2", "1")}


@pytest.mark.parametrize(
    ("train", "test", "message"),
    [
        (
            "0 1 2\nu1 3\n",
            "0 1\n",
            "train.txt line 2: id 'u1' is not a non-negative integer",
        ),
        (
            "0 1 2\n",
            "0 3,4\n",
            "test.txt line 1: id '3,4' is not a non-negative integer",
        ),
        ("", "0 1\n", "train.txt: file is empty"),
        ("0\n1\n", "0 1\n", "train.txt: no (user, item) pairs"),
    ],
)
def test_gowalla_errors(tmp_path, cache_dir, train, test, message):
    with pytest.raises(DataError) as info:
        load_offline("gowalla", _gowalla(tmp_path, train, test), cache_dir)
    assert str(info.value) == message


def test_unknown_dataset_lists_known_names(tmp_path, cache_dir):
    with pytest.raises(DataError) as info:
        load_offline("movielens-1m", tmp_path, cache_dir)
    message = str(info.value)
    assert "unknown dataset 'movielens-1m'" in message and "\n" not in message
    for name in DATASETS:
        assert name in message
    assert f"{tmp_path}/movielens-1m/movielens-1m.inter" in message


def test_missing_files_offline_say_what_to_put_where(tmp_path, cache_dir):
    write(tmp_path / "gowalla" / "test.txt", "0 1\n")
    with pytest.raises(DataError) as info:
        load_offline("gowalla", tmp_path, cache_dir, download=False)
    message = str(info.value)
    assert f"missing train.txt in {tmp_path}/gowalla/" in message
    assert "download disabled" in message and "test.txt" not in message.split("(")[0]
    assert "raw.githubusercontent.com" in message and "\n" not in message
    with pytest.raises(DataError, match=r"missing ml-100k.inter, ml-100k.item, ml-100k.user in"):
        load_offline("ml-100k", tmp_path, cache_dir, download=False)
