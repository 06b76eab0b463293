"""End-to-end `load_dataset` tests on tiny synthetic files in every supported layout."""

from __future__ import annotations

import numpy as np
import pytest

from dvr_jax.data import DATASETS, DataError, load_dataset
from tests.data.checks import assert_valid_dataset, write


def _pairs(ds, split):
    """Split pairs as a set of (original user id, original item id)."""
    arr = getattr(ds, split)
    return {(ds.user_ids[u], ds.item_ids[i]) for u, i in arr.tolist()}


def _all_pairs(ds):
    return _pairs(ds, "train") | _pairs(ds, "valid") | _pairs(ds, "test")


def _load(name, data_dir, cache_dir, **kw):
    kw.setdefault("download", False)
    return load_dataset(name, data_dir, cache_dir=cache_dir, **kw)


# --------------------------------------------------------------------------- hetrec lastfm


def _hetrec(tmp_path, rows):
    body = "".join(f"{u}\t{i}\t{w}\n" for u, i, w in rows)
    write(tmp_path / "lastfm" / "user_artists.dat", "userID\tartistID\tweight\n" + body)
    return tmp_path


def test_lastfm_every_listen_is_positive(tmp_path, cache_dir):
    rows = [(u, i, 1 + u * i) for u in (2, 3, 10) for i in (51, 52, 53, 7)]
    ds = _load("lastfm", _hetrec(tmp_path, rows), cache_dir, kcore=None)
    assert_valid_dataset(ds)
    assert ds.n_users == 3 and ds.n_items == 4
    assert ds.user_ids.tolist() == ["2", "3", "10"]  # numeric order, not "10" < "2"
    assert ds.item_ids.tolist() == ["7", "51", "52", "53"]
    assert len(_all_pairs(ds)) == 12 and ds.item_categories is None and ds.user_attributes == {}
    # 4 pairs per user -> 1 valid, 1 test, 2 train each.
    assert ds.summary() == {"users": 3, "items": 4, "train": 6, "valid": 3, "test": 3}


def test_lastfm_default_10core_leaves_nothing_on_tiny_data(tmp_path, cache_dir):
    rows = [(u, i, 1) for u in (2, 3) for i in (1, 2)]
    with pytest.raises(DataError, match="lastfm: no interactions left after preprocessing"):
        _load("lastfm", _hetrec(tmp_path, rows), cache_dir)


def test_lastfm_non_numeric_id(tmp_path, cache_dir):
    write(tmp_path / "lastfm" / "user_artists.dat", "userID\tartistID\tweight\n2\t5\t1\n2\tabc\t1\n")
    with pytest.raises(DataError) as info:
        _load("lastfm", tmp_path, cache_dir, kcore=None)
    assert str(info.value) == (
        "user_artists.dat line 3: artist id 'abc' is not a non-negative integer"
    )


def test_lastfm_missing_header(tmp_path, cache_dir):
    write(tmp_path / "lastfm" / "user_artists.dat", "2\t5\t1\n2\t6\t1\n")
    with pytest.raises(DataError, match="user_artists.dat line 1: header has no userID field"):
        _load("lastfm", tmp_path, cache_dir, kcore=None)


# --------------------------------------------------------------------------- atomic / ml-100k


def _ml(tmp_path, inter_rows, item_rows=None, user_rows=None, name="ml-100k"):
    header = "item_id:token\trating:float\tuser_id:token\ttimestamp:float\n"  # order on purpose
    body = "".join(f"{i}\t{r}\t{u}\t{t}\n" for t, (u, i, r) in enumerate(inter_rows))
    folder = tmp_path / name
    write(folder / f"{name}.inter", header + body)
    if item_rows is not None:
        head = "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
        write(folder / f"{name}.item", head + "".join(f"{i}\tT {i}\t1995\t{c}\n" for i, c in item_rows))
    if user_rows is not None:
        head = "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
        write(folder / f"{name}.user", head + "".join(f"{u}\t{a}\t{g}\tx\t1\n" for u, a, g in user_rows))
    return tmp_path


def test_atomic_threshold_duplicates_categories_attributes(tmp_path, cache_dir):
    rows = [(u, i, 5) for u in (1, 2, 3) for i in (10, 11, 12)]
    rows += [(1, 10, 4), (1, 10, 5)]  # duplicates of a positive: counted once
    rows += [(2, 13, 2), (2, 13, 4.5)]  # negative + positive duplicate: one positive
    rows += [(3, 14, 3.5), (4, 10, 1)]  # negatives only: item 14 and user 4 vanish
    items = [(10, "Action Comedy"), (11, "Drama"), (12, ""), (14, "War")]
    users = [(1, 24, "M"), (2, 53, "F")]
    ds = _load("ml-100k", _ml(tmp_path, rows, items, users), cache_dir, kcore=None)
    assert_valid_dataset(ds)
    assert ds.user_ids.tolist() == ["1", "2", "3"]
    assert ds.item_ids.tolist() == ["10", "11", "12", "13"]
    assert len(_all_pairs(ds)) == 10
    assert ("2", "13") in _all_pairs(ds) and ("4", "10") not in _all_pairs(ds)
    # The vocabulary keeps "War" although item 14 was dropped; 12 (empty) and 13 (absent)
    # fall into "unknown".
    assert ds.category_names == ("Action", "Comedy", "Drama", "War", "unknown")
    np.testing.assert_array_equal(
        ds.item_categories,
        np.array([[1, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 0, 0, 1], [0, 0, 0, 0, 1]], np.float32),
    )
    assert ds.user_attributes["age"].tolist() == [24, 53, -1]
    assert ds.user_attributes["age"].dtype == np.int32
    assert ds.user_attributes["gender"].tolist() == ["M", "F", ""]


def test_atomic_threshold_option(tmp_path, cache_dir):
    rows = [(1, 10, 3), (1, 11, 4), (1, 12, 5), (2, 10, 3)]
    path = _ml(tmp_path, rows, name="mine")
    assert len(_all_pairs(_load("mine", path, cache_dir, kcore=None))) == 2
    assert len(_all_pairs(_load("mine", path, cache_dir, kcore=None, rating_threshold=3))) == 4


def test_user_atomic_dataset_by_name(tmp_path, cache_dir):
    rows = [(u, i, 5) for u in range(12) for i in range(12) if (u + i) % 5]
    ds = _load("mydata", _ml(tmp_path, rows, name="mydata"), cache_dir, kcore=3)
    assert_valid_dataset(ds)
    assert ds.name == "mydata" and ds.item_categories is None
    assert len(_all_pairs(ds)) == len(rows)


def test_atomic_without_rating_field(tmp_path, cache_dir):
    write(tmp_path / "x" / "x.inter", "user_id:token\titem_id:token\na\tp\nb\tq\na\tq\n")
    ds = _load("x", tmp_path, cache_dir, kcore=None)
    assert ds.user_ids.tolist() == ["a", "b"] and len(_all_pairs(ds)) == 3


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "x.inter: file is empty"),
        ("user_id:token\titem_id:token\n", "x.inter: no data rows after the header"),
        ("user_id:token\titem_id:token\n1\t2\n1\n", "x.inter line 3: expected 2 columns, got 1"),
        (
            "user_id:token\titem_id:token\n1\t2\nuser_id:token\titem_id:token\n",
            "x.inter line 3: duplicate header line",
        ),
        (
            "user:token\titem_id:token\n1\t2\n",
            "x.inter line 1: header has no user_id field (fields: user:token, item_id:token)",
        ),
        (
            "user_id:token\titem_id:token\trating:float\n1\t2\tfive\n",
            "x.inter line 2: rating 'five' is not a number",
        ),
    ],
)
def test_atomic_errors(tmp_path, cache_dir, content, message):
    write(tmp_path / "x" / "x.inter", content)
    with pytest.raises(DataError) as info:
        _load("x", tmp_path, cache_dir, kcore=None)
    assert str(info.value) == message


def test_unknown_dataset_lists_known_names(tmp_path, cache_dir):
    with pytest.raises(DataError) as info:
        _load("movielens-1m", tmp_path, cache_dir)
    message = str(info.value)
    assert "unknown dataset 'movielens-1m'" in message and "\n" not in message
    for name in DATASETS:
        assert name in message
    assert f"{tmp_path}/movielens-1m/movielens-1m.inter" in message


def test_missing_files_offline_say_what_to_put_where(tmp_path, cache_dir):
    write(tmp_path / "gowalla" / "test.txt", "0 1\n")
    with pytest.raises(DataError) as info:
        _load("gowalla", tmp_path, cache_dir, download=False)
    message = str(info.value)
    assert f"missing train.txt in {tmp_path}/gowalla/" in message
    assert "download disabled" in message and "test.txt" not in message.split("(")[0]
    assert "raw.githubusercontent.com" in message and "\n" not in message
    with pytest.raises(DataError, match=r"missing ml-100k.inter, ml-100k.item, ml-100k.user in"):
        _load("ml-100k", tmp_path, cache_dir, download=False)


# --------------------------------------------------------------------------- fixed splits


def test_lightgcn_triplets_fixed_split(tmp_path, cache_dir):
    train = [(u, i, 3) for u in (1, 2, 3) for i in range(1, 12) if (u * i) % 4]
    test = [(1, 20, 1), (2, 21, 1), (3, 20, 1), (2, 1, 1)]  # (2, 1) also in train: dropped
    write(tmp_path / "lastfm-lightgcn" / "data1.txt", "".join(f"{u}\t{i}\t{c}\r\n" for u, i, c in train))
    write(tmp_path / "lastfm-lightgcn" / "test1.txt", "".join(f"{u}\t{i}\t{c}.5e+02\n" for u, i, c in test))
    ds = _load("lastfm-lightgcn", tmp_path, cache_dir)  # default: no k-core
    assert_valid_dataset(ds)
    assert _pairs(ds, "test") == {("1", "20"), ("2", "21"), ("3", "20")}
    assert _pairs(ds, "train") | _pairs(ds, "valid") == {(str(u), str(i)) for u, i, _ in train}
    per_user = {u: sum(1 for v, _, _ in train if v == u) for u in (1, 2, 3)}
    n_valid = np.bincount(ds.valid[:, 0], minlength=3)
    assert n_valid.tolist() == [max(1, round(0.1 * per_user[u])) for u in (1, 2, 3)]
    assert ds.item_ids[0] == "1"  # 1-based ids keep their original labels


def test_lightgcn_triplets_wrong_column_count(tmp_path, cache_dir):
    write(tmp_path / "lastfm-lightgcn" / "data1.txt", "1\t2\t3\n1\t3\n")
    write(tmp_path / "lastfm-lightgcn" / "test1.txt", "1\t4\t3\n")
    with pytest.raises(DataError, match=r"^data1.txt line 2: expected 3 columns, got 2$"):
        _load("lastfm-lightgcn", tmp_path, cache_dir)


def _gowalla(tmp_path, train, test):
    write(tmp_path / "gowalla" / "train.txt", train)
    write(tmp_path / "gowalla" / "test.txt", test)
    return tmp_path


def test_gowalla_adjacency_fixed_split(tmp_path, cache_dir):
    train = "0 0 1 2 3\n1 2 3\n2\n3 1 4 4\n"  # user 2 has no items; (3, 4) twice
    test = "0 4\n1 0\n3 2\n"
    ds = _load("gowalla", _gowalla(tmp_path, train, test), cache_dir)
    assert_valid_dataset(ds)
    assert ds.user_ids.tolist() == ["0", "1", "3"]  # ids present in some pair
    assert ds.n_items == 5
    assert _pairs(ds, "test") == {("0", "4"), ("1", "0"), ("3", "2")}
    assert len(ds.train) + len(ds.valid) == 8
    assert len(ds.valid) == 3  # one per user with >= 2 train items


def test_gowalla_kcore_option_keeps_published_membership(tmp_path, cache_dir):
    train = "0 0 1\n1 0 1\n2 0 5\n"
    test = "0 2\n1 2\n2 1\n"
    ds = _load("gowalla", _gowalla(tmp_path, train, test), cache_dir, kcore=2)
    assert "5" not in ds.item_ids.tolist()
    assert _pairs(ds, "test") == {("0", "2"), ("1", "2"), ("2", "1")}


@pytest.mark.parametrize(
    ("train", "test", "message"),
    [
        ("0 1 2\nu1 3\n", "0 1\n", "train.txt line 2: id 'u1' is not a non-negative integer"),
        ("0 1 2\n", "0 3,4\n", "test.txt line 1: id '3,4' is not a non-negative integer"),
        ("", "0 1\n", "train.txt: file is empty"),
        ("0\n1\n", "0 1\n", "train.txt: no (user, item) pairs"),
    ],
)
def test_gowalla_errors(tmp_path, cache_dir, train, test, message):
    with pytest.raises(DataError) as info:
        _load("gowalla", _gowalla(tmp_path, train, test), cache_dir)
    assert str(info.value) == message


# --------------------------------------------------------------------------- generic CSV/TSV


def test_csv_with_header_ratings_and_categories(tmp_path, cache_dir):
    rows = "userId,movieId,rating,timestamp\n" + "".join(
        f"u{u},m{i},{5 if (u + i) % 3 else 2},{u}\n" for u in range(4) for i in range(5)
    )
    cats = "item,genres\nm0,Action Drama\nm1,Drama\nm2,Comedy\nm0,War\n"
    path = write(tmp_path / "ratings.csv", rows)
    cat_path = write(tmp_path / "cats.csv", cats)
    ds = load_dataset(str(path), cache_dir=cache_dir, kcore=None, categories_file=cat_path)
    assert_valid_dataset(ds)
    assert ds.name == "ratings"
    expected = {(f"u{u}", f"m{i}") for u in range(4) for i in range(5) if (u + i) % 3}
    assert _all_pairs(ds) == expected
    assert ds.category_names == ("Action", "Comedy", "Drama", "War", "unknown")
    row = ds.item_categories[ds.item_ids.tolist().index("m0")]
    assert row.tolist() == [1, 0, 1, 1, 0]


def test_tsv_without_header_relative_to_data_dir(tmp_path, cache_dir):
    write(tmp_path / "d" / "plays.tsv", "".join(f"{u}\t{i}\n" for u in range(3) for i in range(4)))
    ds = load_dataset("plays.tsv", tmp_path / "d", cache_dir=cache_dir, kcore=None)
    assert ds.user_ids.tolist() == ["0", "1", "2"] and len(_all_pairs(ds)) == 12


def test_csv_duplicates_count_once(tmp_path, cache_dir):
    # User 9 rates item 0 three times: counted three times it would pass a 3-core.
    rows = "".join(f"{u},{i}\n" for u in range(5) for i in range(5)) + "0,0\n9,0\n9,0\n9,0\n"
    ds = load_dataset(str(write(tmp_path / "a.csv", rows)), cache_dir=cache_dir, kcore=3)
    assert "9" not in ds.user_ids.tolist()
    assert len(_all_pairs(ds)) == 25 and sum(map(len, (ds.train, ds.valid, ds.test))) == 25
    no_core = load_dataset(str(tmp_path / "a.csv"), cache_dir=cache_dir, kcore=None)
    assert sum(map(len, (no_core.train, no_core.valid, no_core.test))) == 26


def test_csv_errors(tmp_path, cache_dir):
    path = write(tmp_path / "r.csv", "user,item\n1,2\n3,4\n")
    bad_cats = write(tmp_path / "c.csv", "2,A\n9,B\n")
    with pytest.raises(DataError) as info:
        load_dataset(str(path), cache_dir=cache_dir, kcore=None, categories_file=bad_cats)
    assert str(info.value) == f"{bad_cats} line 2: item '9' does not occur in {path}"
    with pytest.raises(DataError, match="cannot tell the delimiter"):
        load_dataset(str(path), cache_dir=cache_dir, categories_file=write(tmp_path / "c.txt", "1 A\n"))
    with pytest.raises(DataError, match="categories_file applies to .csv/.tsv datasets only"):
        load_dataset("gowalla", tmp_path, cache_dir=cache_dir, categories_file=bad_cats)
    with pytest.raises(DataError, match=r"r5.csv line 1: expected 2 to 4 columns"):
        load_dataset(str(write(tmp_path / "r5.csv", "1,2,3,4,5\n")), cache_dir=cache_dir)
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(str(tmp_path / "nope.csv"), cache_dir=cache_dir)


def test_same_seed_same_split_other_seed_differs(tmp_path, cache_dir):
    rows = "".join(f"{u},{i}\n" for u in range(30) for i in range(30) if (u * 7 + i) % 4)
    path = str(write(tmp_path / "r.csv", rows))
    first = load_dataset(path, kcore=10, use_cache=False)
    second = load_dataset(path, kcore=10, use_cache=False)
    other = load_dataset(path, kcore=10, use_cache=False, split_seed=1)
    for split in ("train", "valid", "test"):
        np.testing.assert_array_equal(getattr(first, split), getattr(second, split))
    assert not np.array_equal(first.test, other.test)
    assert first.source_hash == second.source_hash != other.source_hash
