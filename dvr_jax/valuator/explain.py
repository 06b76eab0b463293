"""Explanation exports: per-sample Shapley rows with triplet ids; the Fig. 2 statistic.

Reference: DVR paper, Sec. 6.5 / Fig. 2 (cosine between data values and the negative BPR
loss, per batch); docs/algorithm.md §4.1 and docs/departures.md §19 (phi_b is a value
*within its batch*).
`shapley_loss_cosine` is a pure jnp function usable inside the jitted step;
`explanation_rows` is host-side NumPy (logging cadence only), never reachable from
jitted code.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from dvr_jax.typing import Array

EXPLANATION_DTYPE = np.dtype(
    [
        ("user", np.int64),
        ("pos_item", np.int64),
        ("neg_item", np.int64),
        ("shapley", np.float64),
        ("loss", np.float64),
    ]
)


def shapley_loss_cosine(shapley: Array, losses: Array) -> Array:
    """Cosine between the batch's Shapley values and its negative per-sample BPR losses.

    .. math::
        \\cos(\\phi, -\\ell) = -\\langle \\phi, \\ell \\rangle
        / (\\|\\phi\\| \\|\\ell\\|)

    Args:
      shapley: f[B] Shapley values of the batch.
      losses: f[B] per-sample BPR losses of the same batch.

    Returns:
      f[] cosine in [-1, 1]; 0 when either vector is all zero.
    """
    losses = losses.astype(shapley.dtype)
    norms = jnp.sqrt(jnp.sum(jnp.square(shapley)) * jnp.sum(jnp.square(losses)))
    tiny = jnp.finfo(shapley.dtype).tiny
    return -jnp.sum(shapley * losses) / jnp.maximum(norms, tiny)


def explanation_rows(
    shapley: Array | np.ndarray,
    user_ids: Array | np.ndarray,
    pos_item_ids: Array | np.ndarray,
    neg_item_ids: Array | np.ndarray,
    losses: Array | np.ndarray | None = None,
) -> np.ndarray:
    """Per-sample data values with their (user, positive item, negative item),
    host-side.

    The caller maps the internal ids to the dataset's original ids (e.g.
    `dataset.user_ids[rows["user"]]`); padded slots should be dropped by the caller.

    Args:
      shapley: f[B] Shapley values.
      user_ids: int[B] internal user ids.
      pos_item_ids: int[B] internal positive item ids.
      neg_item_ids: int[B] internal negative item ids.
      losses: f[B] per-sample BPR losses, or None (stored as NaN).

    Returns:
      A NumPy structured array of length B with fields user, pos_item, neg_item,
      shapley, loss.
    """
    values = np.asarray(shapley, np.float64)
    rows = np.empty(values.shape[0], EXPLANATION_DTYPE)
    rows["user"] = np.asarray(user_ids)
    rows["pos_item"] = np.asarray(pos_item_ids)
    rows["neg_item"] = np.asarray(neg_item_ids)
    rows["shapley"] = values
    rows["loss"] = np.nan if losses is None else np.asarray(losses, np.float64)
    return rows
