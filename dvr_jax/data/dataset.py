"""The processed dataset every other module consumes: ids, splits and side information.

A `Dataset` is plain host NumPy (no JAX). It is produced by `dvr_jax.data.load_dataset`
and turned into device arrays by `dvr_jax.sampler.make_train_arrays` and
`dvr_jax.evaluation.ranking.make_eval_arrays`.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Implicit-feedback interactions split into train / validation / test.

    Attributes:
      name: dataset name (registry key or user dataset name).
      n_users: U, users are ids in [0, U).
      n_items: I, items are ids in [0, I).
      train: int32[P_train, 2] (user, item) pairs, sorted by (user, item), no duplicates.
      valid: int32[P_valid, 2] pairs, disjoint from train.
      test: int32[P_test, 2] pairs, disjoint from train and valid.
      user_ids: original user id (as str) of each internal user, object[U].
      item_ids: original item id (as str) of each internal item, object[I].
      item_categories: float32[I, n_cat] multi-hot item categories, or None.
      category_names: names of the n_cat categories, or None.
      user_attributes: dict of name -> array[U] (e.g. gender, age), possibly empty.
      source_hash: hex digest of the source files and options (cache key).
    """

    name: str
    n_users: int
    n_items: int
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray
    item_categories: np.ndarray | None = None
    category_names: tuple[str, ...] | None = None
    user_attributes: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    source_hash: str = ""

    @property
    def n_categories(self) -> int:
        return 0 if self.item_categories is None else int(self.item_categories.shape[1])

    def summary(self) -> dict[str, int]:
        """Counts of users, items and pairs per split."""
        return {
            "users": self.n_users,
            "items": self.n_items,
            "train": int(len(self.train)),
            "valid": int(len(self.valid)),
            "test": int(len(self.test)),
        }
