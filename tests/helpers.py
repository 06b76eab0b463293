"""Test helpers: tiny synthetic datasets and a compilation counter."""

from __future__ import annotations

import contextlib

import jax
import numpy as np

from dvr_jax.data.dataset import Dataset


def random_pairs(rng: np.random.Generator, n_users: int, n_items: int, density: float) -> np.ndarray:
    """Unique (user, item) pairs, every user with at least 3 items, sorted."""
    mask = rng.random((n_users, n_items)) < density
    for u in range(n_users):
        if mask[u].sum() < 3:
            mask[u, rng.choice(n_items, 3, replace=False)] = True
    users, items = np.nonzero(mask)
    return np.stack([users, items], 1).astype(np.int32)


def tiny_dataset(rng: np.random.Generator, n_users: int = 30, n_items: int = 40, density: float = 0.2) -> Dataset:
    """A random Dataset split 8:1:1 per user (every user has >= 3 interactions)."""
    pairs = random_pairs(rng, n_users, n_items, density)
    train, valid, test = [], [], []
    for u in range(n_users):
        items = rng.permutation(pairs[pairs[:, 0] == u, 1])
        n_hold = max(1, round(0.1 * len(items)))
        valid += [(u, i) for i in items[:n_hold]]
        test += [(u, i) for i in items[n_hold : 2 * n_hold]]
        train += [(u, i) for i in items[2 * n_hold :]]

    def as_pairs(rows):
        arr = np.asarray(rows, np.int32).reshape(-1, 2)
        return arr[np.lexsort((arr[:, 1], arr[:, 0]))]

    return Dataset(
        name="tiny",
        n_users=n_users,
        n_items=n_items,
        train=as_pairs(train),
        valid=as_pairs(valid),
        test=as_pairs(test),
        user_ids=np.arange(n_users).astype(str),
        item_ids=np.arange(n_items).astype(str),
    )


@contextlib.contextmanager
def count_compilations():
    """Counts lowerings (compilations, persistent-cache hits included) of jitted functions inside the block.

    Usage: `with count_compilations() as n: ...; n[0]`.
    """
    count = [0]

    def listener(event, *args, **kwargs):
        if event == "/jax/core/compile/jaxpr_to_mlir_module_duration":
            count[0] += 1

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield count
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
