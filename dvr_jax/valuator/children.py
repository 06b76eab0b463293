"""Children-selection initialisers for Harsanyi blocks (logits tau', docs/harsanyi.md §2).

Reference: Chen et al., "HarsanyiNet: computing accurate Shapley values in a single
forward propagation", ICML 2023 (official `HarsanyiMLP.py` init: tau' = -V0 everywhere,
then +V0 on `floor(act_ratio * D)` distinct inputs per unit). docs/harsanyi.md §2
adds `cover`, which deals a random permutation of the inputs round-robin to the units so
that no input (sample slot) is a null player.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from dvr_jax.typing import Array, PRNGKey

CHILDREN_INITS = ("random", "cover")


def children_count(act_ratio: float, n_inputs: int) -> int:
    """Number of children drawn per unit: `max(1, floor(act_ratio * D))`, capped at D.

    The official layer-1 rule `max((1 + 1e-30)/D, act_ratio)` intends "at least one
    child" but can round to zero; we state the intent directly and apply it to every
    layer (DVR values are >= 1).

    Args:
      act_ratio: fraction of inputs selected per unit.
      n_inputs: D, number of inputs of the block.

    Returns:
      The per-unit child count k, 1 <= k <= D.
    """
    return min(n_inputs, max(1, math.floor(act_ratio * n_inputs + 1e-9)))


def children_logits_init(
    kind: str = "random", act_ratio: float = 0.01, v0: float = 1.0
) -> Callable[[PRNGKey, tuple[int, ...], jnp.dtype], Array]:
    """Builds a Flax initialiser for children-selection logits of shape (M, D).

    Args:
      kind: "random" (HarsanyiNet: k distinct uniform children per unit) or "cover" (a
        random permutation of the D inputs is dealt round-robin to the M units, then
        each unit is topped up with random children to k; every input is a child of at
        least one unit).
      act_ratio: fraction of inputs selected per unit,
        k = `children_count(act_ratio, D)`.
      v0: magnitude of the initial logits (+v0 selected, -v0 not selected).

    Returns:
      `init(key, shape=(M, D), dtype) -> Array[M, D]` with entries in {-v0, +v0}.
    """
    if kind not in CHILDREN_INITS:
        raise ValueError(f"children_init must be one of {CHILDREN_INITS}, got {kind!r}")

    def init(key: PRNGKey, shape: tuple[int, ...], dtype=jnp.float32) -> Array:
        n_units, n_inputs = shape
        k = children_count(act_ratio, n_inputs)
        k_noise, k_perm = jax.random.split(key)
        score = jax.random.uniform(k_noise, (n_units, n_inputs))
        count = jnp.full((n_units,), k, jnp.int32)
        if kind == "cover":
            perm = jax.random.permutation(k_perm, n_inputs)
            owner = jnp.arange(n_inputs) % n_units
            cover = jnp.zeros((n_units, n_inputs), jnp.bool_).at[owner, perm].set(True)
            # Cover entries outrank every random entry (scores in [0, 1) vs [2, 3)).
            score = score + 2.0 * cover.astype(score.dtype)
            count = jnp.maximum(count, jnp.sum(cover, axis=1, dtype=jnp.int32))
        rank = jnp.argsort(jnp.argsort(-score, axis=1), axis=1).astype(jnp.int32)
        chosen = rank < count[:, None]
        return jnp.where(chosen, v0, -v0).astype(dtype)

    return init
