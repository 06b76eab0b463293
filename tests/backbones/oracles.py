"""Dense NumPy oracles and tiny synthetic graphs for the backbone tests."""

from __future__ import annotations

import numpy as np


def random_pairs(rng: np.random.Generator, n_users: int, n_items: int, n_pairs: int) -> np.ndarray:
    """Unique (user, item) pairs; the last user and the last item get no interaction."""
    users = rng.integers(0, n_users - 1, n_pairs)
    items = rng.integers(0, n_items - 1, n_pairs)
    return np.unique(np.stack([users, items], 1), axis=0).astype(np.int32)


def interaction_matrix(pairs: np.ndarray, n_users: int, n_items: int) -> np.ndarray:
    """Dense 0/1 R, f64[U, I]."""
    dense = np.zeros((n_users, n_items))
    dense[pairs[:, 0], pairs[:, 1]] = 1.0
    return dense


def normalized_adjacency(pairs: np.ndarray, n_users: int, n_items: int) -> np.ndarray:
    """`D^-1/2 A D^-1/2` the RecBole `get_norm_adj_mat` way, zero-degree rows 0, f64[N, N]."""
    r = interaction_matrix(pairs, n_users, n_items)
    a = np.block([[np.zeros((n_users, n_users)), r], [r.T, np.zeros((n_items, n_items))]])
    degree = a.sum(1)
    inv_sqrt = np.zeros_like(degree)
    inv_sqrt[degree > 0] = degree[degree > 0] ** -0.5
    return inv_sqrt[:, None] * a * inv_sqrt[None, :]


def row_mean(matrix: np.ndarray) -> np.ndarray:
    """`D^-1 M` with empty rows 0."""
    degree = matrix.sum(1, keepdims=True)
    return np.divide(matrix, degree, out=np.zeros_like(matrix), where=degree > 0)


def cosine_top_k(r: np.ndarray, k: int) -> np.ndarray:
    """Loop oracle: 0/1 f64[R, R] marking each row's top-k positive-cosine rows, ties by id."""
    norms = np.sqrt(r.sum(1))
    n = r.shape[0]
    out = np.zeros((n, n))
    for a in range(n):
        candidates = []
        for b in range(n):
            if a == b or norms[a] == 0 or norms[b] == 0:
                continue
            sim = float(r[a] @ r[b]) / (norms[a] * norms[b])
            if sim > 0:
                candidates.append((-sim, b))
        for _, b in sorted(candidates)[:k]:
            out[a, b] = 1.0
    return out
