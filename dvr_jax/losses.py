"""Per-sample BPR loss and masked reductions.

Reference: Rendle et al., UAI 2009. docs/algorithm.md §3.1: the per-sample loss keeps the
authors' epsilon, l_b = -log(sigmoid(s_ui - s_uj) + 1e-8).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from dvr_jax.typing import Array

BPR_EPSILON = 1e-8


def bpr_per_sample(pos_scores: Array, neg_scores: Array) -> Array:
    """Per-sample BPR loss.

    .. math:: \\ell_b = -\\log(\\sigma(s_{ui} - s_{uj}) + 10^{-8})

    Args:
      pos_scores: float32[B] scores of the positive items.
      neg_scores: float32[B] scores of the negative items.

    Returns:
      float32[B] losses (>= 0 up to the epsilon).
    """
    return -jnp.log(jax.nn.sigmoid(pos_scores - neg_scores) + BPR_EPSILON)


def reduce_loss(per_sample: Array, weights: Array | None = None, *, reduction: str = "sum") -> Array:
    """Weighted sum or mean of per-sample losses; masked entries contribute exactly zero.

    Args:
      per_sample: float32[B].
      weights: float32[B] or bool[B] weights / mask, or None for all ones.
      reduction: "sum" (authors' code) or "mean" (mean over the full batch B).

    Returns:
      float32[] loss.
    """
    if weights is not None:
        per_sample = jnp.where(weights != 0, per_sample * weights.astype(per_sample.dtype), 0.0)
    if reduction == "sum":
        return jnp.sum(per_sample)
    if reduction == "mean":
        return jnp.mean(per_sample)
    raise ValueError(f"unknown reduction {reduction!r}; expected 'sum' or 'mean'")
