"""On-device BPR triplet sampling: epoch permutations and exact uniform negatives.

Reference: Rendle et al., UAI 2009 (uniform negatives, redrawn every epoch).
docs/algorithm.md §2 and docs/engineering.md §6.

Negatives are drawn *exactly* uniformly from I minus S_u+ without rejection: draw a rank
r ~ U{0, ..., I - |S_u+| - 1} and map it to the r-th non-positive item. With the user's
sorted positives p_0 < ... < p_{d-1}, the r-th non-positive is r + #{t : p_t - t <= r}, and
p_t - t is non-decreasing, so the count is a binary search inside the user's CSR segment
(a fixed number of vectorised steps, no Python loop per sample, no int64 keys, so any
U x I fits). This replaces the usual "draw, `searchsorted` over sorted u*I+i keys, retry"
loop, which needs bounded retries and can still fail for heavy users. `is_training_positive`
gives the membership test for samplers with non-uniform proposals that do need rejection.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from dvr_jax.typing import Array, PRNGKey


class TrainArrays(struct.PyTreeNode):
    """Training positives on device, in CSR order.

    Attributes:
      users: int32[P] user of each training pair, sorted by (user, item).
      items: int32[P] item of each training pair.
      indptr: int32[U + 1] CSR row pointer: user u owns pairs [indptr[u], indptr[u+1]).
      shifted_items: int32[P] items[t] - (t - indptr[user]): non-decreasing per user.
      n_items: I (static).
      search_steps: binary-search depth, ceil(log2(max degree + 1)) + 1 (static).
    """

    users: Array
    items: Array
    indptr: Array
    shifted_items: Array
    n_items: int = struct.field(pytree_node=False)
    search_steps: int = struct.field(pytree_node=False)

    @property
    def n_pairs(self) -> int:
        return int(self.users.shape[0])


def make_train_arrays(train_pairs: np.ndarray, n_users: int, n_items: int) -> TrainArrays:
    """Builds `TrainArrays` on the host from (user, item) pairs.

    Args:
      train_pairs: int[P, 2] unique (user, item) pairs.
      n_users: U.
      n_items: I.

    Returns:
      TrainArrays with device arrays.

    Raises:
      ValueError: ids out of range, or a user who is positive on every item (no negative).
    """
    pairs = np.asarray(train_pairs, dtype=np.int64).reshape(-1, 2)
    if len(pairs) and (pairs.min() < 0 or pairs[:, 0].max() >= n_users or pairs[:, 1].max() >= n_items):
        raise ValueError(f"training pair ids out of range for {n_users} users / {n_items} items")
    order = np.lexsort((pairs[:, 1], pairs[:, 0]))
    users, items = pairs[order, 0], pairs[order, 1]
    degree = np.bincount(users, minlength=n_users)
    if degree.size and degree.max() >= n_items:
        raise ValueError(f"user {int(degree.argmax())} is positive on every item: no negative exists")
    indptr = np.concatenate([[0], np.cumsum(degree)])
    local_rank = np.arange(len(users)) - indptr[users]
    steps = int(np.ceil(np.log2(max(int(degree.max(initial=0)), 1) + 1))) + 1
    return TrainArrays(
        users=jnp.asarray(users, jnp.int32),
        items=jnp.asarray(items, jnp.int32),
        indptr=jnp.asarray(indptr, jnp.int32),
        shifted_items=jnp.asarray(items - local_rank, jnp.int32),
        n_items=int(n_items),
        search_steps=steps,
    )


def _segment_count_leq(values: Array, lo: Array, hi: Array, target: Array, steps: int) -> Array:
    """#{t in [lo, hi) : values[t] <= target} for non-decreasing segments, elementwise.

    Args:
      values: int32[P], non-decreasing inside each [lo, hi) segment.
      lo, hi: int32[B] segment bounds.
      target: int32[B].
      steps: static number of bisection steps (enough for the longest segment).

    Returns:
      int32[B] counts.
    """

    def bisect(_, bounds):
        left, right = bounds  # invariant: answer position in [left, right]
        mid = (left + right) // 2
        safe_mid = jnp.clip(mid, 0, values.shape[0] - 1)
        go_right = (mid < right) & (values[safe_mid] <= target)
        return jnp.where(go_right, mid + 1, left), jnp.where(go_right, right, mid)

    left, _ = jax.lax.fori_loop(0, steps, bisect, (lo, hi))
    return left - lo


def sample_uniform_negatives(key: PRNGKey, train: TrainArrays, users: Array) -> Array:
    """Draws one negative per user, uniform over the items that are not training positives.

    Args:
      key: PRNG key.
      train: training positives.
      users: int32[B] user ids.

    Returns:
      int32[B] negative item ids, never in the user's training positives.
    """
    lo, hi = train.indptr[users], train.indptr[users + 1]
    n_negatives = train.n_items - (hi - lo)
    rank = jax.random.randint(key, users.shape, 0, n_negatives, dtype=jnp.int32)
    return rank + _segment_count_leq(train.shifted_items, lo, hi, rank, train.search_steps)


def is_training_positive(train: TrainArrays, users: Array, items: Array) -> Array:
    """Membership test: is `items[b]` a training positive of `users[b]`? bool[B]."""
    lo, hi = train.indptr[users], train.indptr[users + 1]
    below_or_equal = _segment_count_leq(train.items, lo, hi, items, train.search_steps)
    position = jnp.clip(lo + below_or_equal - 1, 0, train.items.shape[0] - 1)
    return (below_or_equal > 0) & (train.items[position] == items)


def epoch_batches(key: PRNGKey, n_pairs: int, batch_size: int) -> Array:
    """A random permutation of the training pairs cut into full batches (last partial dropped).

    Args:
      key: PRNG key of the epoch (fold_in(run_key, epoch)).
      n_pairs: P (static).
      batch_size: B (static).

    Returns:
      int32[P // B, B] pair indices.
    """
    n_batches = n_pairs // batch_size
    order = jax.random.permutation(key, n_pairs)[: n_batches * batch_size]
    return order.astype(jnp.int32).reshape(n_batches, batch_size)


def sample_triplets(key: PRNGKey, train: TrainArrays, pair_index: Array) -> tuple[Array, Array, Array]:
    """Triplets (u, i, j) for a batch of training pairs with uniform negatives.

    Args:
      key: PRNG key for the negatives.
      train: training positives.
      pair_index: int32[B] indices into the training pairs.

    Returns:
      users int32[B], pos_items int32[B], neg_items int32[B].
    """
    users = train.users[pair_index]
    return users, train.items[pair_index], sample_uniform_negatives(key, train, users)
