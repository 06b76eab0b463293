"""Host-side builder of the static-shape device arrays that full ranking consumes.

The evaluated users are split into `n_chunks` chunks of `C` rows (the last rows padded
with a masked pad user). Per chunk, the exclusion set (items ranked at -inf) and the
held-out set G_u are stored as padded `(row, item)` lists, so that the device code
builds what it needs with one scatter per chunk; a dense `[U, I]` matrix is never
materialised.
Pad entries use row `C`, which every scatter drops (`mode="drop"`).

Users are assigned to chunks by descending exclusion count in snake order, which
balances the per-chunk list lengths (and so the padding) whatever the id order.

The default chunk size keeps a chunk's float32[C, I] score block in the last-level cache
on CPU: on the 2-core benchmark machine (32 MiB L3), XLA's score matmul costs 60 ms per
1000 Gowalla users while the block stays under ~31 MiB and 130 ms above (C = 200 vs 224
at I = 40,981; the same threshold at I = 20,000), which halves the whole evaluation
time. Accelerators get large chunks.
"""

from __future__ import annotations

from typing import Literal

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from dvr_jax.data.dataset import Dataset
from dvr_jax.typing import Array

CPU_SCORE_BLOCK = 6 * 2**20  # float32 scores per CPU chunk: 24 MiB, under a 32 MiB L3
ACCELERATOR_SCORE_BLOCK = 2**27  # 512 MiB of float32 scores per chunk on GPU / TPU


def default_chunk_size(n_items: int, backend: str | None = None) -> int:
    """Users per chunk such that the float32[C, I] score block fits `backend`'s budget.

    Args:
      n_items: I.
      backend: "cpu", "gpu", "tpu"...; default `jax.default_backend()`.

    Returns:
      C >= 16 (CPU: about 6 Mi scores, e.g. 153 for Gowalla's 40,981 items).
    """
    backend = jax.default_backend() if backend is None else backend
    budget = CPU_SCORE_BLOCK if backend == "cpu" else ACCELERATOR_SCORE_BLOCK
    return max(16, budget // max(n_items, 1))


@flax.struct.dataclass
class EvalArrays:
    """Device arrays for chunked full-ranking evaluation of one split.

    Attributes:
      users: int32[n_chunks, C] user ids; pad rows hold user 0.
      user_mask: bool[n_chunks, C] True for evaluated users, False for pad rows.
      n_pos: int32[n_chunks, C] held-out counts |G_u| (0 on pad rows).
      exclude_rows: int32[n_chunks, L_E] chunk row of each excluded pair; pad = C.
      exclude_items: int32[n_chunks, L_E] excluded item of each pair; pad = 0.
      heldout_rows: int32[n_chunks, L_G] chunk row of each held-out pair; pad = C.
      heldout_items: int32[n_chunks, L_G] held-out item of each pair; pad = 0.
      n_users: static, number of evaluated users (sum of `user_mask`).
      n_items: static, I (items ranked).
      split: static, "valid" or "test".
    """

    users: Array
    user_mask: Array
    n_pos: Array
    exclude_rows: Array
    exclude_items: Array
    heldout_rows: Array
    heldout_items: Array
    n_users: int = flax.struct.field(pytree_node=False)
    n_items: int = flax.struct.field(pytree_node=False)
    split: str = flax.struct.field(pytree_node=False)

    @property
    def n_chunks(self) -> int:
        return int(self.users.shape[0])

    @property
    def chunk_size(self) -> int:
        return int(self.users.shape[1])


def _split_pairs(dataset: Dataset, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(exclusion pairs, held-out pairs) of a split, both int[P, 2]."""
    if split == "valid":
        return dataset.train, dataset.valid
    if split == "test":
        return np.concatenate([dataset.train, dataset.valid], axis=0), dataset.test
    raise ValueError(f"split must be 'valid' or 'test', got {split!r}")


def _chunk_lists(
    pairs: np.ndarray,
    chunk_of: np.ndarray,
    row_of: np.ndarray,
    n_chunks: int,
    pad_row: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Groups the evaluated users' (user, item) pairs into per-chunk (row, item) lists.

    Args:
      pairs: int[P, 2] (user, item) pairs.
      chunk_of: int[U] chunk of each user, -1 when the user is not evaluated.
      row_of: int[U] row of each user inside its chunk.
      n_chunks: number of chunks.
      pad_row: row index of pad entries (the chunk size C, dropped by scatters).

    Returns:
      (rows, items), both int32[n_chunks, L] with L >= 1 the longest chunk list;
      within a chunk entries are sorted by (row, item) and pads come last.
    """
    pair_users = pairs[:, 0].astype(np.int64)
    chunks = chunk_of[pair_users]
    keep = chunks >= 0
    chunks, rows, items = chunks[keep], row_of[pair_users[keep]], pairs[keep, 1]
    order = np.lexsort((items, rows, chunks))
    chunks, rows, items = chunks[order], rows[order], items[order]
    counts = np.bincount(chunks, minlength=n_chunks)
    length = max(int(counts.max(initial=0)), 1)
    starts = np.cumsum(counts) - counts
    within = np.arange(len(chunks)) - starts[chunks]
    out_rows = np.full((n_chunks, length), pad_row, np.int32)
    out_items = np.zeros((n_chunks, length), np.int32)
    out_rows[chunks, within] = rows
    out_items[chunks, within] = items
    return out_rows, out_items


def make_eval_arrays(
    dataset: Dataset,
    split: Literal["valid", "test"],
    *,
    chunk_size: int | None = None,
    users: np.ndarray | None = None,
) -> EvalArrays:
    """Builds a split's chunked evaluation arrays (host NumPy, then one transfer).

    Exclusion set E_u: training items for "valid"; training and validation items for
    "test". Held-out set G_u: the split's items. Only users with |G_u| >= 1 are
    evaluated.

    Args:
      dataset: the processed dataset.
      split: "valid" or "test".
      chunk_size: maximum users per chunk; None gives `default_chunk_size(I)`. The chunk
        size used is the smallest that keeps the same number of chunks,
        ceil(n / ceil(n / chunk_size)), to minimise padding.
      users: optional int[n] user ids restricting evaluation to this subset (e.g. DVR's
        fixed reward users); ids without held-out items are ignored.

    Returns:
      The `EvalArrays`.

    Raises:
      ValueError: on an unknown split, a bad chunk size, out-of-range user ids, or
        when no user is left to evaluate.
    """
    if chunk_size is None:
        chunk_size = default_chunk_size(dataset.n_items)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    exclude, heldout = _split_pairs(dataset, split)
    n_users_all = dataset.n_users
    n_pos_all = np.bincount(heldout[:, 0], minlength=n_users_all)
    selected = n_pos_all > 0
    if users is not None:
        users = np.asarray(users).reshape(-1)
        if users.size and (users.min() < 0 or users.max() >= n_users_all):
            raise ValueError(f"user ids must lie in [0, {n_users_all})")
        chosen = np.zeros(n_users_all, bool)
        chosen[users] = True
        selected &= chosen
    eval_users = np.flatnonzero(selected)
    n_eval = len(eval_users)
    if n_eval == 0:
        raise ValueError(f"no user has {split} items to evaluate")
    n_chunks = -(-n_eval // chunk_size)
    size = -(-n_eval // n_chunks)

    n_exclude_all = np.bincount(exclude[:, 0], minlength=n_users_all)
    order = eval_users[np.argsort(-n_exclude_all[eval_users], kind="stable")]
    position = np.arange(n_eval)
    rounds, column = position // n_chunks, position % n_chunks
    chunk = np.where(rounds % 2 == 0, column, n_chunks - 1 - column)
    chunk_of = np.full(n_users_all, -1, np.int64)
    row_of = np.zeros(n_users_all, np.int64)
    chunk_of[order], row_of[order] = chunk, rounds

    users_arr = np.zeros((n_chunks, size), np.int32)
    mask_arr = np.zeros((n_chunks, size), bool)
    n_pos_arr = np.zeros((n_chunks, size), np.int32)
    users_arr[chunk, rounds] = order
    mask_arr[chunk, rounds] = True
    n_pos_arr[chunk, rounds] = n_pos_all[order]
    layout = (chunk_of, row_of, n_chunks, size)
    exclude_rows, exclude_items = _chunk_lists(exclude, *layout)
    heldout_rows, heldout_items = _chunk_lists(heldout, *layout)
    return EvalArrays(
        users=jnp.asarray(users_arr),
        user_mask=jnp.asarray(mask_arr),
        n_pos=jnp.asarray(n_pos_arr),
        exclude_rows=jnp.asarray(exclude_rows),
        exclude_items=jnp.asarray(exclude_items),
        heldout_rows=jnp.asarray(heldout_rows),
        heldout_items=jnp.asarray(heldout_items),
        n_users=n_eval,
        n_items=dataset.n_items,
        split=split,
    )
