"""Sparse graph propagation shared by LightGCN and MGCF: host-built operators, one device kernel.

A `SparseOp` is a fixed sparse matrix `M` (f32[R, S]) stored twice, as CSR and as the CSR of
its transpose, both built once on the host. `spmm(op, x)` computes `M @ x` with a custom VJP
whose backward is `Mᵀ @ g` using the pre-built transpose, so neither direction scatters.

Kernel choice (docs/propagation.md; `benchmarks/bench_propagation.py` re-measures it):
`jax.experimental.sparse.BCSR` matmul, which on CPU lowers to the native CSR x dense kernel,
with this custom VJP: 43 / 80 ms forward / forward+backward at 1M nonzeros, 3 layers, D = 64,
against 55 / 223 ms for BCSR with JAX's own transpose rule and 166 / 261 ms for `segment_sum`
(benchmarks/RESULTS.md). The matrix
values are constants: no gradient flows to them.

Operators built here:
  * `normalized_bipartite_adjacency`: LightGCN's `D^-1/2 A D^-1/2` over N = U + I nodes with
    `A = [[0, R], [Rᵀ, 0]]`, no self loops, zero-degree rows 0 (symmetric, so the transpose is
    the matrix itself).
  * `row_normalized`: `D^-1 M` for any (row, col) edge list, the neighbourhood mean used by
    MGCF; empty rows give 0.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import sparse

from dvr_jax.typing import Array


class SparseOp(NamedTuple):
    """A constant sparse matrix and its transpose, both CSR (a pytree of device arrays).

    Attributes:
      matrix: BCSR f32[R, S] (data f32[E], indices i32[E], indptr i32[R + 1]).
      transpose: BCSR f32[S, R], the transpose of `matrix` (the same object when symmetric).
    """

    matrix: sparse.BCSR
    transpose: sparse.BCSR

    @property
    def shape(self) -> tuple[int, int]:
        return self.matrix.shape


def _csr(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, shape: tuple[int, int]) -> sparse.BCSR:
    """Host CSR (rows sorted, columns sorted within a row) -> device BCSR."""
    order = np.lexsort((cols, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    indptr = np.zeros(shape[0] + 1, np.int64)
    np.cumsum(np.bincount(rows, minlength=shape[0]), out=indptr[1:])
    return sparse.BCSR(
        (
            jnp.asarray(vals, jnp.float32),
            jnp.asarray(cols, jnp.int32),
            jnp.asarray(indptr, jnp.int32),
        ),
        shape=shape,
        indices_sorted=True,
        unique_indices=True,
    )


def make_sparse_op(
    rows: np.ndarray,
    cols: np.ndarray,
    vals: np.ndarray,
    shape: tuple[int, int],
    *,
    symmetric: bool = False,
) -> SparseOp:
    """Builds a `SparseOp` from COO triplets on the host.

    Args:
      rows: int[E] row ids in [0, R); (row, col) pairs must be unique.
      cols: int[E] column ids in [0, S).
      vals: float[E] values.
      shape: (R, S).
      symmetric: the matrix equals its transpose (values included); reuse it as the transpose.

    Returns:
      The operator, on the default device.
    """
    rows = np.asarray(rows, np.int64)
    cols = np.asarray(cols, np.int64)
    vals = np.asarray(vals, np.float32)
    matrix = _csr(rows, cols, vals, shape)
    transpose = matrix if symmetric else _csr(cols, rows, vals, (shape[1], shape[0]))
    return SparseOp(matrix=matrix, transpose=transpose)


@jax.custom_vjp
def spmm(op: SparseOp, x: Array) -> Array:
    """`M @ x` for a constant sparse `M`.

    Args:
      op: the operator, f32[R, S].
      x: f32[S, D] dense features.

    Returns:
      f32[R, D].
    """
    return op.matrix @ x


def _spmm_fwd(op: SparseOp, x: Array) -> tuple[Array, SparseOp]:
    return op.matrix @ x, op


def _spmm_bwd(op: SparseOp, g: Array) -> tuple[None, Array]:
    # The matrix is a constant of the graph: no cotangent for it (None = zero).
    return None, op.transpose @ g


spmm.defvjp(_spmm_fwd, _spmm_bwd)


def normalized_bipartite_adjacency(train_pairs: np.ndarray, n_users: int, n_items: int) -> SparseOp:
    """LightGCN's `Ã = D^-1/2 A D^-1/2` on N = U + I nodes (users first, then items).

    `A = [[0, R], [Rᵀ, 0]]` with `R[u, i] = 1` for each distinct training pair; there are no
    self loops and rows of zero degree are 0 (as DVR `dataset.get_sparse_graph` and
    LightGCN-PyTorch `getSparseGraph`).

    Args:
      train_pairs: int[P, 2] (user, item) pairs; duplicates are counted once.
      n_users: U.
      n_items: I.

    Returns:
      A symmetric `SparseOp` of shape (N, N) with 2·|R| nonzeros.
    """
    pairs = np.unique(np.asarray(train_pairs, np.int64).reshape(-1, 2), axis=0)
    users, items = pairs[:, 0], pairs[:, 1] + n_users
    n = n_users + n_items
    degree = np.bincount(np.concatenate([users, items]), minlength=n).astype(np.float64)
    inv_sqrt = np.where(degree > 0, 1.0 / np.sqrt(np.maximum(degree, 1.0)), 0.0)
    rows = np.concatenate([users, items])
    cols = np.concatenate([items, users])
    vals = inv_sqrt[rows] * inv_sqrt[cols]
    return make_sparse_op(rows, cols, vals, (n, n), symmetric=True)


def row_normalized(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> SparseOp:
    """`D^-1 M` for a 0/1 matrix `M` given by its (row, col) pairs: the neighbourhood mean.

    Args:
      rows: int[E] row ids; duplicate (row, col) pairs are counted once.
      cols: int[E] column ids.
      shape: (R, S).

    Returns:
      A `SparseOp` of shape (R, S); `spmm(op, x)[r]` is the mean of `x` over the columns of
      row r, and 0 for an empty row.
    """
    pairs = np.unique(np.stack([np.asarray(rows, np.int64), np.asarray(cols, np.int64)], 1), axis=0)
    rows, cols = pairs[:, 0], pairs[:, 1]
    degree = np.bincount(rows, minlength=shape[0]).astype(np.float64)
    vals = 1.0 / degree[rows]
    return make_sparse_op(rows, cols, vals, shape)


def lightgcn_propagate(adjacency: SparseOp, ego: Array, n_layers: int) -> Array:
    """Layer mean of LightGCN propagation: `(1 / (K + 1)) Σ_{k=0..K} Ã^k E⁰`.

    Args:
      adjacency: `Ã`, f32[N, N].
      ego: E⁰, f32[N, D].
      n_layers: K (static).

    Returns:
      f32[N, D].
    """
    layer = ego
    total = ego
    for _ in range(n_layers):
        layer = spmm(adjacency, layer)
        total = total + layer
    return total / (n_layers + 1)
