"""The REINFORCE metric adapter: Bernoulli selection, advantage with an EMA baseline, surrogate.

Reference: DVR paper, Sec. 5.2 (eqs. 5.9-5.13), with the corrections of docs/algorithm.md §6
and docs/departures.md §7: the valuator does gradient *ascent* on the expected validation
reward,

  L_pg = -sg(A_t) * (1/B) sum_b [s_b log(p_b + eps) + (1 - s_b) log(1 - p_b + eps)],

where s ~ Bernoulli(p) is the sampled selection (the full Bernoulli log-likelihood, not the
authors' `R * mean log w`), and A_t = (R_t - b_t) / sigma_t uses an EMA baseline b_t and
scale sigma_t computed *before* R_t is seen, so E[A_t grad log pi] is proportional to the
gradient of E[R]. Minimising L_pg with Adam therefore *raises* the log-probability of
selections followed by a better-than-baseline reward. DVRL's exploration band keeps the mean
probability in [0.1, 0.9]: L_e = lambda_e (ReLU(mean p - 0.9) + ReLU(0.1 - mean p)).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from dvr_jax.typing import Array, PRNGKey

LOG_EPSILON = 1e-8


class AdapterState(NamedTuple):
    """EMA baseline of the reward.

    Attributes:
      baseline: f32[] b_t, EMA of past rewards.
      second_moment: f32[] EMA of (R - b)^2, the advantage scale.
      count: i32[] rewards seen so far.
      start_reward: f32[] reward at the start of the current accumulation window (the
        `delta` estimator's pre-step reward when the valuator updates every k > 1 steps).
    """

    baseline: Array
    second_moment: Array
    count: Array
    start_reward: Array


def init_adapter() -> AdapterState:
    """Baseline state before the first reward."""

    def zero():
        return jnp.zeros((), jnp.float32)  # distinct buffers: the state is donated

    return AdapterState(zero(), zero(), jnp.zeros((), jnp.int32), zero())


def select(key: PRNGKey, probs: Array, *, max_redraws: int = 100) -> Array:
    """Draws s ~ Bernoulli(probs), redrawing (rejection) while no sample is selected.

    Past `max_redraws` empty draws (never seen for B in the thousands) one sample drawn
    proportionally to `probs` is selected, so the mask is never empty.

    Args:
      key: PRNG key.
      probs: f32[B] selection probabilities in (0, 1).
      max_redraws: bound on redraws.

    Returns:
      f32[B] mask of 0/1.
    """

    def draw(state):
        attempt, _ = state
        return attempt + 1, jax.random.bernoulli(jax.random.fold_in(key, attempt), probs)

    def empty(state):
        attempt, mask = state
        return (attempt < max_redraws) & ~jnp.any(mask)

    _, mask = jax.lax.while_loop(empty, draw, draw((jnp.int32(0), jnp.zeros(probs.shape, bool))))
    fallback = jax.random.categorical(jax.random.fold_in(key, max_redraws + 1), jnp.log(probs + LOG_EPSILON))
    mask = jnp.where(jnp.any(mask), mask, jnp.arange(probs.shape[0]) == fallback)
    return mask.astype(jnp.float32)


def bernoulli_log_prob(probs: Array, mask: Array) -> Array:
    """Per-sample log pi(s_b) = s_b log(p_b + eps) + (1 - s_b) log(1 - p_b + eps); f32[B]."""
    return mask * jnp.log(probs + LOG_EPSILON) + (1.0 - mask) * jnp.log(1.0 - probs + LOG_EPSILON)


def advantage(
    state: AdapterState, reward: Array, *, window: float = 20.0, normalize: bool = True
) -> tuple[Array, AdapterState]:
    """Advantage of `reward` against the EMA baseline, and the updated baseline.

    The first reward initialises the baseline (advantage 0). Normalisation by the EMA
    scale starts once `window` rewards have been seen, so a tiny early scale cannot blow
    the advantage up.

    Args:
      state: baseline state (not yet including `reward`).
      reward: f32[] R_t.
      window: T_w, EMA window.
      normalize: divide by the EMA scale.

    Returns:
      (A_t f32[], new state).
    """
    first = state.count == 0
    baseline = jnp.where(first, reward, state.baseline)
    centred = reward - baseline
    scale = jnp.sqrt(jnp.maximum(state.second_moment, 1e-12))
    use_scale = normalize & (state.count.astype(jnp.float32) >= window)
    adv = jnp.where(use_scale, centred / scale, centred)
    new_state = state._replace(
        baseline=baseline + centred / window,
        second_moment=jnp.where(first, 0.0, state.second_moment + (centred**2 - state.second_moment) / window),
        count=state.count + 1,
    )
    return adv, new_state


def policy_loss(probs: Array, mask: Array, adv: Array, *, reduction: str = "mean") -> Array:
    """Score-function surrogate -sg(A) * reduce_b log pi(s_b); its gradient ascends E[R]."""
    log_prob = bernoulli_log_prob(probs, jax.lax.stop_gradient(mask))
    total = jnp.mean(log_prob) if reduction == "mean" else jnp.sum(log_prob)
    return -jax.lax.stop_gradient(adv) * total


def code_policy_loss(values: Array, reward: Array) -> Array:
    """The released code's surrogate R * mean log(w + 1e-8) (compat ablation, docs/departures.md §7)."""
    return jax.lax.stop_gradient(reward) * jnp.mean(jnp.log(values + LOG_EPSILON))


def exploration_penalty(probs: Array, *, low: float = 0.1, high: float = 0.9) -> Array:
    """DVRL's band on the mean selection probability: ReLU(mean p - high) + ReLU(low - mean p)."""
    mean = jnp.mean(probs)
    return jax.nn.relu(mean - high) + jax.nn.relu(low - mean)


ESTIMATORS = ("ema", "counterfactual", "loo", "delta", "none")


def loo_advantages(rewards: Array) -> Array:
    """Leave-one-out advantages A_k = R_k - mean_{j != k} R_j of K >= 2 rewards; f32[K].

    The K masks are drawn independently from the same policy, so the baseline of mask k
    (the mean reward of the others) is independent of it and the estimator is unbiased.
    """
    k = rewards.shape[0]
    return rewards - (jnp.sum(rewards) - rewards) / (k - 1)


def scaled_advantage(
    state: AdapterState, raw: Array, *, window: float = 20.0, normalize: bool = True
) -> tuple[Array, AdapterState]:
    """Divides raw advantages by the running RMS of *earlier* ones, and updates that RMS.

    Used by the counterfactual, leave-one-out and delta estimators, whose raw advantages
    already have a baseline. The scale is computed before `raw` is seen, so it only
    rescales the step (unbiasedness is kept); it is applied once `window` steps have
    been seen, so a tiny early scale cannot blow the advantage up.

    Args:
      state: adapter state (its `second_moment` is the EMA of raw**2).
      raw: f32[] or f32[K] raw advantages of this step.
      window: EMA window.
      normalize: divide by the running RMS.

    Returns:
      (advantages with the shape of `raw`, new state).
    """
    scale = jnp.sqrt(jnp.maximum(state.second_moment, 1e-12))
    use_scale = normalize & (state.count.astype(jnp.float32) >= window)
    adv = jnp.where(use_scale, raw / scale, raw)
    first = state.count == 0
    moment = jnp.mean(jnp.square(raw))
    new_state = state._replace(
        second_moment=jnp.where(first, moment, state.second_moment + (moment - state.second_moment) / window),
        count=state.count + 1,
    )
    return adv, new_state
