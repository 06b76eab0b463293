"""MSE prediction targets and loss for the valuator's read-out y_G.

Reference: DVR paper eq. 5.7 (`y* = sum l`) and the authors' `main.py` (`-sum l` for
the loss reward, `100 R` for recall/ndcg). docs/algorithm.md §7.3 and docs/departures.md §9:
`y* = -sum_b l_b`
(the code's sign; higher phi = lower loss) for `loss`, `y* = 100 * R~` for every
metric reward (oriented higher-is-better).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from dvr_jax.typing import Array, PRNGKey

LOSS_TARGET_SCALES = ("sum", "mean")


def loss_target(losses: Array, present: Array | None = None, *, scale: str = "sum") -> Array:
    """Target for the `loss` reward: `-sum_{b in S} l_b` (optionally divided by B).

    With `present` it is the coalition target of a coalition fit (docs/algorithm.md §7.3).

    Args:
      losses: f[B] per-sample BPR losses (pre-update, same training batch).
      present: bool[B] or f[B] coalition mask S; None = whole batch.
      scale: "sum" (default) or "mean" (divide by the B slots).

    Returns:
      f[] target (no gradient).
    """
    if scale not in LOSS_TARGET_SCALES:
        raise ValueError(f"scale must be one of {LOSS_TARGET_SCALES}, got {scale!r}")
    losses = jax.lax.stop_gradient(losses)
    if present is not None:
        losses = losses * present.astype(losses.dtype)
    total = -jnp.sum(losses)
    return total / losses.shape[0] if scale == "mean" else total


def sample_coalition(key: PRNGKey, n_slots: int, keep_prob: float = 0.5) -> Array:
    """Random coalition (each slot kept with probability `keep_prob`), docs/algorithm.md §7.3.

    For the optional coalition training of the loss game (off by default).

    Use as `present = sample_coalition(k, B)`, then
    `valuator.mse_loss(params, feats, loss_target(losses, present), present)`.

    Args:
      key: PRNG key.
      n_slots: B.
      keep_prob: probability that a slot is present.

    Returns:
      f32[B] 0/1 presence mask.
    """
    return jax.random.bernoulli(key, keep_prob, (n_slots,)).astype(jnp.float32)


def metric_target(reward: Array) -> Array:
    """Target for metric rewards: `100 * R~` (R~ oriented so that higher is better).

    Args:
      reward: f[] reward, e.g. validation Recall@20 or 1 - Gini@20.

    Returns:
      f[] target (no gradient).
    """
    return 100.0 * jax.lax.stop_gradient(reward)


def prediction_mse(prediction: Array, target: Array) -> Array:
    """Squared error `(y_G - sg(y*))^2` of the valuator prediction.

    Args:
      prediction: f[] valuator output y_G.
      target: f[] target y*.

    Returns:
      f[] loss.
    """
    target = jax.lax.stop_gradient(jnp.asarray(target, prediction.dtype))
    return jnp.square(prediction - target)
