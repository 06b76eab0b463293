"""Parsers of the published layouts: raw bytes -> `Parsed` records + side info.

Layouts: hetrec2011 LastFM (`user_artists.dat`), LightGCN triplets (`user item count`,
1-based, a fixed train/test split), LightGCN/NGCF adjacency lists (`user item item ...`,
a fixed split) and RecBole atomic files (`.inter` / `.item` / `.user`, read by header
field name); the generic CSV/TSV layout lives in `dvr_jax.data.csv_format`. Parsers only
read and validate; binarising, filtering and splitting happen in
`dvr_jax.data.preprocess`. Every parser takes a mapping from a file *role* (e.g.
"train") to a `SourceFile` and raises `DataError` naming the file and line of the first
problem.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from dvr_jax.data import preprocess, text
from dvr_jax.data.errors import at_line

TRAIN, TEST = 0, 2  # split codes of fixed-split files (1 is validation, carved later)


class SourceFile(NamedTuple):
    """One input file: `label` names it in messages, `data` holds its bytes."""

    label: str
    data: bytes


class Interactions(NamedTuple):
    """Raw (user, item) records with original ids encoded as codes into label arrays.

    Attributes:
      users: int64[P] codes into `user_labels`.
      items: int64[P] codes into `item_labels`.
      user_labels: str[U0] original user ids, in numeric order when numeric.
      item_labels: str[I0] original item ids.
      ratings: float64[P] explicit ratings, or None (every record is a positive).
      split: int8[P] `TRAIN` / `TEST` for fixed published splits, else None.
    """

    users: np.ndarray
    items: np.ndarray
    user_labels: np.ndarray
    item_labels: np.ndarray
    ratings: np.ndarray | None = None
    split: np.ndarray | None = None


class Parsed(NamedTuple):
    """Parser output.

    Attributes:
      interactions: the raw records.
      item_categories: original item id -> tuple of category names, or None.
      user_attributes: attribute name -> {original user id -> value (str)}, or None.
    """

    interactions: Interactions
    item_categories: dict[str, tuple[str, ...]] | None = None
    user_attributes: dict[str, dict[str, str]] | None = None


def encode_ids(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Maps ids to dense codes; labels sort numerically when all ids are plain integers.

    Args:
      values: int64[P] or str[P] original ids.

    Returns:
      codes: int64[P] in [0, n).
      labels: str[n] distinct original ids, `labels[codes] == values` (as strings).
    """
    if values.dtype.kind in "iu":  # non-negative numeric ids: linear-time renumbering
        codes, uniq = preprocess.dense_codes(values.astype(np.int64))
        return codes, uniq.astype(str)
    uniq, codes = np.unique(values, return_inverse=True)
    lengths = np.char.str_len(uniq)
    canonical = np.char.isdecimal(uniq) & ((lengths == 1) | ~np.char.startswith(uniq, "0"))
    if uniq.size and canonical.all():
        order = np.lexsort((uniq, lengths))  # numeric order for canonical decimals
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        uniq, codes = uniq[order], rank[codes]
    return codes.astype(np.int64), uniq


def make_interactions(
    users: np.ndarray,
    items: np.ndarray,
    ratings: np.ndarray | None = None,
    split: np.ndarray | None = None,
) -> Interactions:
    """Encodes raw id arrays into an `Interactions` record.

    Args:
      users: int64[P] or str[P] original user ids.
      items: int64[P] or str[P] original item ids.
      ratings: float64[P] explicit ratings, or None.
      split: int8[P] `TRAIN` / `TEST` codes of a published split, or None.

    Returns:
      The `Interactions` with ids replaced by codes into sorted label arrays.
    """
    user_codes, user_labels = encode_ids(users)
    item_codes, item_labels = encode_ids(items)
    return Interactions(user_codes, item_codes, user_labels, item_labels, ratings, split)


def _require_pairs(n_pairs: int, source: SourceFile) -> None:
    """Raises when a file parsed to zero (user, item) pairs."""
    if n_pairs == 0:
        raise at_line(source.label, None, "no (user, item) pairs")


def _field_index(
    header: tuple[str, ...],
    names: tuple[str, ...],
    source: SourceFile,
    *,
    required: bool,
) -> int | None:
    """Finds a header field by name (ignoring any `:type` suffix and case)."""
    bare = [field.split(":")[0].strip().lower() for field in header]
    for name in names:
        if name.lower() in bare:
            return bare.index(name.lower())
    if required:
        raise at_line(
            source.label,
            1,
            f"header has no {names[0]} field (fields: {', '.join(header)})",
        )
    return None


def hetrec_pairs(data: bytes, label: str) -> tuple[np.ndarray, np.ndarray]:
    """Reads (userID, artistID) of a hetrec2011 `user_artists.dat` by header name.

    Returns:
      users: int64[P] and items: int64[P], the original ids.
    """
    source = SourceFile(label, data)
    table = text.read_table(data, label, delimiter="\t", header=True)
    u_col = _field_index(table.header, ("userID",), source, required=True)
    i_col = _field_index(table.header, ("artistID",), source, required=True)
    lines = table.line_numbers
    users = text.parse_ids(table.columns[u_col], label, lines, "user id")
    items = text.parse_ids(table.columns[i_col], label, lines, "artist id")
    return users, items


def parse_hetrec_lastfm(files: Mapping[str, SourceFile]) -> Parsed:
    """hetrec2011-lastfm-2k `user_artists.dat`: every listened artist is a positive.

    The `weight` (listening count) column is not used: listening counts are no ratings.
    """
    source = files["interactions"]
    return Parsed(make_interactions(*hetrec_pairs(source.data, source.label)))


def parse_lightgcn_triplets(files: Mapping[str, SourceFile]) -> Parsed:
    """LightGCN LastFM `data1.txt` / `test1.txt`: `user item count`, tab-separated."""
    parts = []
    for role, code in (("train", TRAIN), ("test", TEST)):
        source = files[role]
        table = text.read_table(source.data, source.label, delimiter="\t", header=False, n_columns=3)
        users = text.parse_ids(table.columns[0], source.label, table.line_numbers, "user id")
        items = text.parse_ids(table.columns[1], source.label, table.line_numbers, "item id")
        parts.append((users, items, np.full(users.size, code, np.int8)))
    users, items, split = (np.concatenate(col) for col in zip(*parts, strict=True))
    return Parsed(make_interactions(users, items, split=split))


def parse_adjacency_split(files: Mapping[str, SourceFile]) -> Parsed:
    """LightGCN/NGCF Gowalla `train.txt` / `test.txt`: `user item item ...` per line."""
    parts = []
    for role, code in (("train", TRAIN), ("test", TEST)):
        source = files[role]
        users, items = text.parse_adjacency(source.data, source.label)
        _require_pairs(users.size, source)
        parts.append((users, items, np.full(users.size, code, np.int8)))
    users, items, split = (np.concatenate(col) for col in zip(*parts, strict=True))
    return Parsed(make_interactions(users, items, split=split))


def parse_atomic(files: Mapping[str, SourceFile]) -> Parsed:
    """RecBole atomic files: `.inter` (required), `.item` and `.user` (optional).

    Fields are found by name: `user_id`, `item_id`, optional `rating` in `.inter`;
    `item_id` and `class` (a space-separated `token_seq`) in `.item`; `user_id` plus
    any of `gender`, `age` in `.user`.
    """
    source = files["inter"]
    table = text.read_table(source.data, source.label, delimiter="\t", header=True)
    u_col = _field_index(table.header, ("user_id",), source, required=True)
    i_col = _field_index(table.header, ("item_id",), source, required=True)
    r_col = _field_index(table.header, ("rating",), source, required=False)
    for col in (u_col, i_col):
        text.require_values(
            table.columns[col],
            source.label,
            table.line_numbers,
            f"{table.header[col]} field (column {col + 1})",
        )
    ratings = None
    if r_col is not None:
        ratings = text.parse_floats(table.columns[r_col], source.label, table.line_numbers, "rating")
    parsed = Parsed(make_interactions(table.columns[u_col], table.columns[i_col], ratings))
    categories = _atomic_categories(files["item"]) if "item" in files else None
    attributes = _atomic_user_attributes(files["user"]) if "user" in files else None
    return parsed._replace(item_categories=categories, user_attributes=attributes)


def _atomic_categories(source: SourceFile) -> dict[str, tuple[str, ...]] | None:
    """`item_id` -> `class` tokens of a RecBole `.item` file (None without `class`)."""
    table = text.read_table(source.data, source.label, delimiter="\t", header=True)
    i_col = _field_index(table.header, ("item_id",), source, required=True)
    c_col = _field_index(table.header, ("class",), source, required=False)
    if c_col is None:
        return None
    return merge_categories(table.columns[i_col], table.columns[c_col])


def _atomic_user_attributes(source: SourceFile) -> dict[str, dict[str, str]]:
    """`gender` / `age` columns of a RecBole `.user` file keyed by original user id."""
    table = text.read_table(source.data, source.label, delimiter="\t", header=True)
    u_col = _field_index(table.header, ("user_id",), source, required=True)
    attributes = {}
    for name in ("gender", "age"):
        col = _field_index(table.header, (name,), source, required=False)
        if col is not None:
            attributes[name] = dict(zip(table.columns[u_col], table.columns[col], strict=True))
    return attributes


def merge_categories(items: np.ndarray, fields: np.ndarray) -> dict[str, tuple[str, ...]]:
    """Category lists per item from whitespace-separated fields.

    Args:
      items: str[R] original item ids (repeats allowed: their categories accumulate).
      fields: str[R] space-separated category names (may be empty).

    Returns:
      original item id -> distinct category names in first-seen order.
    """
    merged: dict[str, tuple[str, ...]] = {}
    for item, field in zip(items.tolist(), fields.tolist(), strict=True):
        names = tuple(field.split())
        merged[item] = tuple(dict.fromkeys(merged.get(item, ()) + names))
    return merged
