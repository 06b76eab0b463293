"""`load_dataset` on tiny RecBole atomic files (ml-100k layout and user datasets)."""

from __future__ import annotations

import numpy as np
import pytest

from dvr_jax.data import DataError
from tests.data.checks import (
    all_pairs,
    assert_valid_dataset,
    load_offline,
    write,
)


def _ml(tmp_path, inter_rows, item_rows=None, user_rows=None, name="ml-100k"):
    # Fields deliberately out of the usual order: they are found by name.
    header = "item_id:token\trating:float\tuser_id:token\ttimestamp:float\n"
    body = "".join(f"{i}\t{r}\t{u}\t{t}\n" for t, (u, i, r) in enumerate(inter_rows))
    folder = tmp_path / name
    write(folder / f"{name}.inter", header + body)
    if item_rows is not None:
        head = "item_id:token\tmovie_title:token_seq\trelease_year:token\t"
        head += "class:token_seq\n"
        write(
            folder / f"{name}.item",
            head + "".join(f"{i}\tT {i}\t1995\t{c}\n" for i, c in item_rows),
        )
    if user_rows is not None:
        head = "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
        write(
            folder / f"{name}.user",
            head + "".join(f"{u}\t{a}\t{g}\tx\t1\n" for u, a, g in user_rows),
        )
    return tmp_path


def test_atomic_threshold_duplicates_categories_attributes(tmp_path, cache_dir):
    rows = [(u, i, 5) for u in (1, 2, 3) for i in (10, 11, 12)]
    rows += [(1, 10, 4), (1, 10, 5)]  # duplicates of a positive: counted once
    rows += [(2, 13, 2), (2, 13, 4.5)]  # negative + positive duplicate: one positive
    rows += [(3, 14, 3.5), (4, 10, 1)]  # negatives only: item 14 and user 4 vanish
    items = [(10, "Action Comedy"), (11, "Drama"), (12, ""), (14, "War")]
    users = [(1, 24, "M"), (2, 53, "F")]
    ds = load_offline("ml-100k", _ml(tmp_path, rows, items, users), cache_dir, kcore=0)
    assert_valid_dataset(ds)
    assert ds.user_ids.tolist() == ["1", "2", "3"]
    assert ds.item_ids.tolist() == ["10", "11", "12", "13"]
    assert len(all_pairs(ds)) == 10
    assert ("2", "13") in all_pairs(ds) and ("4", "10") not in all_pairs(ds)
    # The vocabulary keeps "War" although item 14 was dropped; items 12 (empty field)
    # and 13 (absent from .item) fall into "unknown".
    assert ds.category_names == ("Action", "Comedy", "Drama", "War", "unknown")
    np.testing.assert_array_equal(
        ds.item_categories,
        np.array(
            [[1, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 0, 0, 1], [0, 0, 0, 0, 1]],
            np.float32,
        ),
    )
    assert ds.user_attributes["age"].tolist() == [24, 53, -1]
    assert ds.user_attributes["age"].dtype == np.int32
    assert ds.user_attributes["gender"].tolist() == ["M", "F", ""]


def test_atomic_threshold_option(tmp_path, cache_dir):
    rows = [(1, 10, 3), (1, 11, 4), (1, 12, 5), (2, 10, 3)]
    path = _ml(tmp_path, rows, name="mine")
    assert len(all_pairs(load_offline("mine", path, cache_dir, kcore=0))) == 2
    assert len(all_pairs(load_offline("mine", path, cache_dir, kcore=0, rating_threshold=3))) == 4


def test_user_atomic_dataset_by_name(tmp_path, cache_dir):
    rows = [(u, i, 5) for u in range(12) for i in range(12) if (u + i) % 5]
    ds = load_offline("mydata", _ml(tmp_path, rows, name="mydata"), cache_dir, kcore=3)
    assert_valid_dataset(ds)
    assert ds.name == "mydata" and ds.item_categories is None
    assert len(all_pairs(ds)) == len(rows)


def test_atomic_without_rating_field(tmp_path, cache_dir):
    write(tmp_path / "x" / "x.inter", "user_id:token\titem_id:token\na\tp\nb\tq\na\tq\n")
    ds = load_offline("x", tmp_path, cache_dir, kcore=0)
    assert ds.user_ids.tolist() == ["a", "b"] and len(all_pairs(ds)) == 3


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "x.inter: file is empty"),
        ("user_id:token\titem_id:token\n", "x.inter: no data rows after the header"),
        (
            "user_id:token\titem_id:token\n1\t2\n1\n",
            "x.inter line 3: expected 2 columns, got 1",
        ),
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
        (
            "user_id:token\titem_id:token\n1\t2\n3\t \n",
            "x.inter line 3: empty item_id:token field (column 2)",
        ),
        (
            "item_id:token\tuser_id:token\n2\t\n",
            "x.inter line 2: empty user_id:token field (column 2)",
        ),
    ],
)
def test_atomic_errors(tmp_path, cache_dir, content, message):
    write(tmp_path / "x" / "x.inter", content)
    with pytest.raises(DataError) as info:
        load_offline("x", tmp_path, cache_dir, kcore=0)
    assert str(info.value) == message
