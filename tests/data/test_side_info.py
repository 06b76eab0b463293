"""Tests of category matrices and user-attribute arrays (dvr_jax.data.side_info)."""

from __future__ import annotations

import numpy as np

from dvr_jax.data import side_info


def test_category_matrix_vocabulary_and_unknown():
    items = np.array(["b", "a", "z"], dtype=object)
    matrix, names = side_info.category_matrix(items, {"a": ("X", "Y"), "b": ("Y",), "gone": ("W",)})
    assert names == ("W", "X", "Y", "unknown")  # "W" stays although "gone" was dropped
    np.testing.assert_array_equal(matrix, np.array([[0, 0, 1, 0], [0, 1, 1, 0], [0, 0, 0, 1]], np.float32))
    assert matrix.dtype == np.float32


def test_category_matrix_without_unknown_when_all_items_have_one():
    _, names = side_info.category_matrix(np.array(["a"], dtype=object), {"a": ("X",)})
    assert names == ("X",)


def test_attribute_array_numeric_and_text():
    users = np.array(["1", "2", "3"], dtype=object)
    ages = side_info.attribute_array(users, {"1": "24", "3": "53"})
    assert ages.dtype == np.int32 and ages.tolist() == [24, -1, 53]
    genders = side_info.attribute_array(users, {"1": "M", "2": "F"})
    assert genders.tolist() == ["M", "F", ""]
    mixed = side_info.attribute_array(users, {"1": "24", "2": "n/a"})
    assert mixed.tolist() == ["24", "n/a", ""]
