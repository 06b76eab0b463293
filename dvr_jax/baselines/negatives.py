"""Non-uniform negative samplers on device: rejection of positives, popularity, geometric ranks.

Shared by the sampling baselines (AOBPR, WBPR, PRIS). Every sampler is vectorised over the
batch with static shapes. Proposals that may hit a training positive go through
`rejection_negatives`, a `lax.while_loop` that redraws only the rejected slots, so the
accepted items follow the proposal restricted to I minus S_u+ exactly; after `max_rounds`
rounds the (astronomically rare) leftovers fall back to an exact uniform negative.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from dvr_jax import sampler
from dvr_jax.typing import Array, PRNGKey

MAX_ROUNDS = 64


def rejection_negatives(
    key: PRNGKey,
    train: sampler.TrainArrays,
    users: Array,
    propose: Callable[[PRNGKey], Array],
    *,
    max_rounds: int = MAX_ROUNDS,
) -> tuple[Array, Array]:
    """Draws from `propose` until no slot holds a training positive of its user.

    Args:
      key: PRNG key.
      train: training positives.
      users: int32[...] user of each slot.
      propose: `propose(key) -> int32[...]` candidate items, one per slot (same shape as
        `users`); called once per round for all slots.
      max_rounds: rounds before the fallback (static).

    Returns:
      (items int32[...], accepted bool[...]): `accepted` is False where the fallback (an exact
      uniform negative) was used.
    """
    flat_users = users.reshape(-1)

    def is_negative(items: Array) -> Array:
        return ~sampler.is_training_positive(train, flat_users, items.reshape(-1)).reshape(users.shape)

    def cond(carry):
        round_index, accepted, _ = carry
        return (round_index < max_rounds) & ~jnp.all(accepted)

    def body(carry):
        round_index, accepted, items = carry
        candidates = propose(jax.random.fold_in(key, round_index))
        ok = is_negative(candidates) & ~accepted
        return round_index + 1, accepted | ok, jnp.where(ok, candidates, items)

    start = (jnp.zeros((), jnp.int32), jnp.zeros(users.shape, bool), jnp.zeros(users.shape, jnp.int32))
    _, accepted, items = jax.lax.while_loop(cond, body, start)
    fallback = sampler.sample_uniform_negatives(jax.random.fold_in(key, max_rounds), train, flat_users)
    return jnp.where(accepted, items, fallback.reshape(users.shape)), accepted


def uniform_negatives(key: PRNGKey, train: sampler.TrainArrays, users: Array) -> Array:
    """Exact uniform negatives over I minus S_u+ for users of any shape, int32[...]."""
    return sampler.sample_uniform_negatives(key, train, users.reshape(-1)).reshape(users.shape)


def popularity_cdf(popularity: Array, exponent: float = 1.0) -> Array:
    """Cumulative sums of `popularity ** exponent`, f32[I] (the sampler's table).

    Args:
      popularity: f32[I] training interaction counts.
      exponent: popularity exponent (1: proportional to popularity).

    Returns:
      f32[I] non-decreasing; items with zero popularity have zero mass.
    """
    mass = jnp.where(popularity > 0, jnp.power(jnp.maximum(popularity, 1e-30), exponent), 0.0)
    return jnp.cumsum(mass.astype(jnp.float32))


def sample_from_cdf(key: PRNGKey, cdf: Array, shape: tuple[int, ...]) -> Array:
    """Items drawn with probability proportional to the increments of `cdf`, int32[shape]."""
    target = jax.random.uniform(key, shape, jnp.float32) * cdf[-1]
    index = jnp.searchsorted(cdf, target, side="right")
    return jnp.clip(index, 0, cdf.shape[0] - 1).astype(jnp.int32)


def truncated_geometric(key: PRNGKey, shape: tuple[int, ...], n: int, scale: float) -> Array:
    """Zero-based ranks k in {0, ..., n-1} with P(k) proportional to exp(-k / scale).

    This is AOBPR's P(r) ∝ exp(-r/λ) over r = k + 1 in {1..n} (the common factor e^{-1/λ}
    cancels). Inverse CDF: k = floor(-λ log(1 - u (1 - e^{-n/λ}))), u ~ U[0, 1).

    Args:
      key: PRNG key.
      shape: output shape.
      n: number of ranks (static).
      scale: λ > 0.

    Returns:
      int32[shape].
    """
    u = jax.random.uniform(key, shape, jnp.float32)
    tail = -jnp.expm1(jnp.float32(-n / scale))  # 1 - e^{-n/λ}
    k = jnp.floor(-scale * jnp.log1p(-u * tail))
    return jnp.clip(k, 0, n - 1).astype(jnp.int32)
