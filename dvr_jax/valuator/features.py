"""Per-sample valuator inputs: stop-gradient ego embeddings and a per-sample BPR loss.

The DVR step passes each pair's loss averaged over several negatives (`loss_negatives`,
`dvr_jax.dvr.pair_losses`); with one negative it is the triplet's own loss, the paper's input.

Reference: the authors' `main.py` (DVR input `[p_u; q_i; q_j; l_b]`, all detached);
docs/algorithm.md §3.3. The valuator never back-propagates into the backbone, so both parts
are wrapped in stop_gradient.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from dvr_jax.typing import Array


def valuator_features(pair_features: Array, losses: Array) -> Array:
    """Concatenates stop-gradient pair features and per-sample losses.

    Args:
      pair_features: f32[B, 3D] `backbone.pair_features(params, users, pos, neg)` (6D
        for NeuMF).
      losses: f32[B] per-sample BPR losses at the current backbone parameters (the triplet's,
        or the pair's averaged over several negatives).

    Returns:
      f32[B, F] with F = 3D + 1 (the loss is the last column).
    """
    pair_features = jax.lax.stop_gradient(pair_features)
    losses = jax.lax.stop_gradient(losses).astype(pair_features.dtype)
    return jnp.concatenate([pair_features, losses[:, None]], axis=1)
