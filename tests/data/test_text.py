"""Tests of the low-level table and adjacency-list readers (dvr_jax.data.text)."""

from __future__ import annotations

import numpy as np
import pytest

from dvr_jax.data import DataError, text


def test_read_table_columns_header_and_line_numbers():
    data = b"a\tb\tc\n1\tx y\t3\n\n4\t5\t6\r\n"
    table = text.read_table(data, "f.tsv", delimiter="\t", header=True)
    assert table.header == ("a", "b", "c")
    assert [c.tolist() for c in table.columns] == [["1", "4"], ["x y", "5"], ["3", "6"]]
    assert table.line_numbers.tolist() == [2, 4]


@pytest.mark.parametrize(
    ("data", "header", "message"),
    [
        (b"", True, "f.txt: file is empty"),
        (b"\n  \n\t\n", False, "f.txt: file is empty"),
        (b"u\ti\n", True, "f.txt: no data rows after the header"),
        (b"u\ti\n1\t2\n3\n", True, "f.txt line 3: expected 2 columns, got 1"),
        (b"1\t2\t3\n4\t5\n", False, "f.txt line 2: expected 3 columns, got 2"),
        (b"u\ti\n1\t2\nu\ti\n3\t4\n", True, "f.txt line 3: duplicate header line"),
        (b"u\ti\n\xff\t2\n", True, "f.txt line 2: not UTF-8 text"),
    ],
)
def test_read_table_errors(data, header, message):
    with pytest.raises(DataError) as info:
        text.read_table(data, "f.txt", delimiter="\t", header=header, n_columns=None)
    assert str(info.value) == message


def test_parse_ids_reports_first_bad_line():
    column = np.array(["1", "22", "x3", "4.0"])
    with pytest.raises(DataError, match=r"^f line 12: user id 'x3' is not a non-negative"):
        text.parse_ids(column, "f", np.array([10, 11, 12, 13]), "user id")
    with pytest.raises(DataError, match="line 2: item id '-1'"):
        text.parse_ids(np.array(["0", "-1"]), "f", np.array([1, 2]), "item id")
    assert text.parse_ids(np.array([" 7", "12 "]), "f", np.array([1, 2]), "id").tolist() == [7, 12]


def test_parse_floats():
    values = text.parse_floats(np.array(["4", "3.5", "1e1"]), "f", np.array([1, 2, 3]), "rating")
    assert values.tolist() == [4.0, 3.5, 10.0]
    with pytest.raises(DataError, match="f line 3: rating 'five' is not a number"):
        text.parse_floats(np.array(["4", "3", "five"]), "f", np.array([1, 2, 3]), "rating")
    with pytest.raises(DataError, match="f line 1: rating 'nan'"):
        text.parse_floats(np.array(["nan"]), "f", np.array([1]), "rating")


def _adjacency_oracle(data: bytes):
    """Slow reference: split every line in Python."""
    users, items = [], []
    for line in data.decode().splitlines():
        tokens = [int(t) for t in line.split()]
        for item in tokens[1:]:
            users.append(tokens[0])
            items.append(item)
    return users, items


def test_parse_adjacency_matches_python_oracle(rng):
    lines = []
    for user in rng.permutation(200):
        items = rng.integers(0, 10**6, size=rng.integers(0, 12))
        sep = " " if rng.random() < 0.8 else "\t"
        lines.append(sep.join(map(str, [user, *items])) + (" " if rng.random() < 0.2 else ""))
    data = ("\n".join(lines) + "\r\n\n").encode()
    users, items = text.parse_adjacency(data, "train.txt")
    ref_users, ref_items = _adjacency_oracle(data)
    assert users.tolist() == ref_users and items.tolist() == ref_items
    assert users.dtype == np.int64


def test_parse_adjacency_user_without_items_and_errors():
    users, items = text.parse_adjacency(b"0 5 6\n1\n2 7\n", "t.txt")
    assert users.tolist() == [0, 0, 2] and items.tolist() == [5, 6, 7]
    with pytest.raises(DataError, match=r"^t.txt line 2: id 'x4' is not a non-negative integer$"):
        text.parse_adjacency(b"0 1 2\n1 3 x4 5\n", "t.txt")
    with pytest.raises(DataError, match="t.txt line 1: id '1.5'"):
        text.parse_adjacency(b"0 1.5\n", "t.txt")
    with pytest.raises(DataError, match="t.txt: file is empty"):
        text.parse_adjacency(b" \n\n", "t.txt")
    with pytest.raises(DataError, match="line 1: id '1234567890123456789' is too large"):
        text.parse_adjacency(b"0 1234567890123456789\n", "t.txt")
