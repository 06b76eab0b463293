"""Side information aligned to the final internal ids: item categories, user attributes.

Item categories (used by the CC@K / ILD@K rewards) become a multi-hot float32[I, n_cat]
matrix over a sorted vocabulary; an item with no category gets the category "unknown"
(docs/data.md §3, step 6), so every row has at least one 1. User attributes (gender,
age: fairness analyses) become one array[U] each: int32 with -1 for unknown when every
known value is an integer, else str with "" for unknown.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

UNKNOWN_CATEGORY = "unknown"


def category_matrix(
    item_ids: np.ndarray, categories: Mapping[str, tuple[str, ...]]
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Multi-hot item categories for the kept items.

    The vocabulary is every category named in the source (ml-100k keeps all 19 genres
    even when k-core filtering drops every item of one), plus "unknown" when needed.

    Args:
      item_ids: object/str[I] original id of each internal item.
      categories: original item id -> category names (items may be absent).

    Returns:
      matrix: float32[I, n_cat] with 1.0 where the item has the category.
      names: the n_cat category names, sorted.
    """
    lists = [categories.get(item, ()) or (UNKNOWN_CATEGORY,) for item in item_ids.tolist()]
    vocabulary = {c for cats in categories.values() for c in cats}
    names = tuple(sorted(vocabulary.union(*map(set, lists))))
    index = {c: j for j, c in enumerate(names)}
    rows = np.repeat(np.arange(len(lists)), [len(cats) for cats in lists])
    cols = np.array([index[c] for cats in lists for c in cats], dtype=np.int64)
    matrix = np.zeros((len(lists), len(names)), dtype=np.float32)
    matrix[rows, cols] = 1.0
    return matrix, names


def attribute_array(user_ids: np.ndarray, values: Mapping[str, str]) -> np.ndarray:
    """One user attribute aligned to internal user ids.

    Args:
      user_ids: object/str[U] original id of each internal user.
      values: original user id -> attribute value (users may be absent).

    Returns:
      int32[U] (unknown: -1) when every known value is an integer, else str[U]
      (unknown: "").
    """
    column = np.array([values.get(u, "") for u in user_ids.tolist()], dtype=str)
    present = column != ""
    if present.any() and np.char.isdecimal(column[present]).all():
        numbers = np.where(present, column, "0").astype(np.int64)
        return np.where(present, numbers, -1).astype(np.int32)
    return column
