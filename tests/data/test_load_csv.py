"""`load_dataset` on tiny generic CSV/TSV files with optional item categories."""

from __future__ import annotations

import re

import numpy as np
import pytest

from dvr_jax.data import DataError, load_dataset
from tests.data.checks import (
    all_pairs,
    assert_valid_dataset,
    write,
)


def test_csv_with_header_ratings_and_categories(tmp_path, cache_dir):
    rows = "userId,movieId,rating,timestamp\n" + "".join(
        f"u{u},m{i},{5 if (u + i) % 3 else 2},{u}\n" for u in range(4) for i in range(5)
    )
    cats = "item,genres\nm0,Action Drama\nm1,Drama\nm2,Comedy\nm0,War\n"
    path = write(tmp_path / "ratings.csv", rows)
    cat_path = write(tmp_path / "cats.csv", cats)
    ds = load_dataset(str(path), cache_dir=cache_dir, kcore=0, categories_file=cat_path)
    assert_valid_dataset(ds)
    assert ds.name == "ratings"
    expected = {(f"u{u}", f"m{i}") for u in range(4) for i in range(5) if (u + i) % 3}
    assert all_pairs(ds) == expected
    assert ds.category_names == ("Action", "Comedy", "Drama", "War", "unknown")
    row = ds.item_categories[ds.item_ids.tolist().index("m0")]
    assert row.tolist() == [1, 0, 1, 1, 0]


def test_tsv_without_header_relative_to_data_dir(tmp_path, cache_dir):
    write(
        tmp_path / "d" / "plays.tsv",
        "".join(f"{u}\t{i}\n" for u in range(3) for i in range(4)),
    )
    ds = load_dataset("plays.tsv", tmp_path / "d", cache_dir=cache_dir, kcore=0)
    assert ds.user_ids.tolist() == ["0", "1", "2"] and len(all_pairs(ds)) == 12


def test_csv_duplicates_count_once(tmp_path, cache_dir):
    # User 9 rates item 0 three times: counted three times it would pass a 3-core.
    rows = "".join(f"{u},{i}\n" for u in range(5) for i in range(5)) + "0,0\n9,0\n9,0\n9,0\n"
    ds = load_dataset(str(write(tmp_path / "a.csv", rows)), cache_dir=cache_dir, kcore=3)
    assert "9" not in ds.user_ids.tolist()
    assert len(all_pairs(ds)) == 25 and sum(map(len, (ds.train, ds.valid, ds.test))) == 25
    no_core = load_dataset(str(tmp_path / "a.csv"), cache_dir=cache_dir, kcore=0)
    assert sum(map(len, (no_core.train, no_core.valid, no_core.test))) == 26


def test_csv_errors(tmp_path, cache_dir):
    path = write(tmp_path / "r.csv", "user,item\n1,2\n3,4\n")
    bad_cats = write(tmp_path / "c.csv", "2,A\n9,B\n")
    with pytest.raises(DataError) as info:
        load_dataset(str(path), cache_dir=cache_dir, kcore=0, categories_file=bad_cats)
    assert str(info.value) == f"{bad_cats} line 2: item '9' does not occur in {path}"
    with pytest.raises(DataError, match="cannot tell the delimiter"):
        load_dataset(
            str(path),
            cache_dir=cache_dir,
            categories_file=write(tmp_path / "c.txt", "1 A\n"),
        )
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


@pytest.mark.parametrize(
    ("first_line", "is_header"),
    [
        ("userId,movieId,rating", True),
        ("user_id:token,item_id:token,rating:float", True),
        ("reviewerID,asin,overall", True),
        ('"user","item","rating"', True),
        ("user_12,item_3,5", False),  # ids that merely start with "user" are data
        ("7,3,5", False),
    ],
)
def test_csv_header_recognised_by_name(tmp_path, cache_dir, first_line, is_header):
    rows = first_line + "\n" + "".join(f"user_{u},item_{i},5\n" for u in range(3) for i in range(3))
    ds = load_dataset(str(write(tmp_path / "h.csv", rows)), cache_dir=cache_dir, kcore=0)
    assert len(all_pairs(ds)) == 9 + (0 if is_header else 1)


def test_category_file_header_and_path_objects(tmp_path, cache_dir):
    path = write(tmp_path / "r.tsv", "".join(f"{u}\t{i}\n" for u in range(3) for i in range(3)))
    cats = write(tmp_path / "c.tsv", "movieId\tgenres\n0\tA\n1\tB A\n")
    ds = load_dataset(path, cache_dir=cache_dir, kcore=0, categories_file=cats)
    assert ds.category_names == ("A", "B", "unknown")
    assert ds.item_categories.tolist() == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("1\t2\t5.0\n12\t\t5.0\n", "r.tsv line 2: empty item field (column 2)"),
        ("1\t2\n \t3\n", "r.tsv line 2: empty user field (column 1)"),
        ("user\titem\n\n1\t2\n4\t \n", "r.tsv line 4: empty item field (column 2)"),
    ],
)
def test_empty_id_fields_are_rejected(tmp_path, cache_dir, rows, message):
    path = write(tmp_path / "r.tsv", rows)
    with pytest.raises(DataError) as info:
        load_dataset(str(path), cache_dir=cache_dir, kcore=0)
    assert str(info.value) == f"{tmp_path}/{message}"


def test_semicolon_separated_csv_gets_a_hint(tmp_path, cache_dir):
    path = write(tmp_path / "s.csv", "\nuser;item;rating\n1;2;5\n1;3;4\n")
    with pytest.raises(DataError) as info:
        load_dataset(str(path), cache_dir=cache_dir, kcore=0)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path} line 2: the file looks semicolon-separated")
    assert "tr ';' '\\t'" in message and str(tmp_path / "s.tsv") in message
    # The conversion the message suggests loads the file.
    write(tmp_path / "s.tsv", path.read_text().replace(";", "\t"))
    ds = load_dataset(str(tmp_path / "s.tsv"), cache_dir=cache_dir, kcore=0)
    assert all_pairs(ds) == {("1", "2"), ("1", "3")}


@pytest.mark.parametrize(
    ("name", "rows", "hint"),
    [
        ("t.csv", "1\t2\n", "the file looks tab-separated; rename it to t.tsv"),
        ("c.tsv", "1,2,5\n", "the file looks comma-separated; rename it to c.csv"),
        ("p.tsv", "1|2\n", "the file looks pipe-separated; convert it with tr '|'"),
    ],
)
def test_other_delimiter_gets_a_hint(tmp_path, cache_dir, name, rows, hint):
    with pytest.raises(DataError, match=f"{name} line 1: {re.escape(hint)}"):
        load_dataset(str(write(tmp_path / name, rows)), cache_dir=cache_dir)


def test_semicolon_separated_category_file_gets_a_hint(tmp_path, cache_dir):
    path = write(tmp_path / "r.csv", "1,2\n3,4\n")
    cats = write(tmp_path / "c.csv", "item;genres\n2;A\n")
    with pytest.raises(DataError, match=r"c.csv line 1: the file looks semicolon-sep"):
        load_dataset(str(path), cache_dir=cache_dir, kcore=0, categories_file=cats)


def test_semicolon_hint_also_converts_decimal_commas(tmp_path, cache_dir):
    path = write(tmp_path / "s.csv", "user;item;rating\n1;2;4,5\n1;3;3,5\n")
    with pytest.raises(DataError, match=re.escape("tr ';,' '\\t.' < ")):
        load_dataset(str(path), cache_dir=cache_dir, kcore=0)
    text = path.read_text().replace(";", "\t").replace(",", ".")
    converted = write(tmp_path / "s.tsv", text)
    ds = load_dataset(str(converted), cache_dir=cache_dir, kcore=0)
    assert all_pairs(ds) == {("1", "2")}
