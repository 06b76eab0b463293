"""Advantage estimators on a toy bandit whose reward drifts: unbiased, and the
counterfactual and leave-one-out estimators have lower variance than the EMA baseline.

The toy: B = 4 samples with fixed selection probabilities p; at step t a common term
xi_t = 0.05 t + N(0, 2^2) (the drift of training, shared by every hypothetical step
from the same parameters) plus R(s) = sum_b c_b s_b + N(0, 0.05^2). The true gradient of
E[R] w.r.t. logit(p_b) is c_b p_b (1 - p_b); an estimator's per-step estimate is
mean_k A_k (s_k - p).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dvr_jax import adapter

PROBS = jnp.array([0.2, 0.5, 0.7, 0.9])
COEF = jnp.array([1.0, -0.5, 2.0, 0.3])
DRIFT, COMMON, NOISE, STEPS, K = 0.05, 2.0, 0.05, 40_000, 4


def _estimates(estimator: str, key: jax.Array) -> np.ndarray:
    """Per-step gradient estimates f[STEPS, B] of one estimator."""

    def reward(mask, common, k):
        return jnp.sum(COEF * mask) + common + NOISE * jax.random.normal(k)

    def one_step(state, inputs):
        t, k = inputs
        k_common, k_masks, k_noise = jax.random.split(k, 3)
        common = DRIFT * t + COMMON * jax.random.normal(k_common)
        n = K if estimator == "loo" else 1
        masks = jax.random.bernoulli(k_masks, jnp.broadcast_to(PROBS, (n, 4)), (n, 4)).astype(jnp.float32)
        noise_keys = jax.random.split(k_noise, n + 1)
        rewards = jax.vmap(reward, in_axes=(0, None, 0))(masks, common, noise_keys[:n])
        if estimator == "ema":
            adv, state = adapter.advantage(state, rewards[0], window=20.0, normalize=False)
            adv = adv[None]
        elif estimator == "counterfactual":
            adv = (rewards[0] - reward(jnp.ones_like(PROBS), common, noise_keys[n]))[None]
        elif estimator == "delta":
            before = common - DRIFT + NOISE * jax.random.normal(noise_keys[n])  # the pre-step model
            adv = (rewards[0] - before)[None]
        else:
            adv = adapter.loo_advantages(rewards)
        return state, jnp.mean(adv[:, None] * (masks - PROBS[None]), axis=0)

    inputs = (jnp.arange(STEPS, dtype=jnp.float32), jax.random.split(key, STEPS))
    _, grads = jax.lax.scan(one_step, adapter.init_adapter(), inputs)
    return np.asarray(grads)


@pytest.fixture(scope="module")
def estimates():
    keys = jax.random.split(jax.random.key(0), 4)
    return {name: _estimates(name, k) for name, k in zip(("ema", "counterfactual", "loo", "delta"), keys)}


@pytest.mark.parametrize("estimator", ["ema", "counterfactual", "loo", "delta"])
def test_estimator_is_unbiased_under_drift(estimates, estimator):
    grads = estimates[estimator]
    expected = np.asarray(COEF * PROBS * (1 - PROBS))
    stderr = grads.std(0) / np.sqrt(len(grads))
    assert np.all(np.abs(grads.mean(0) - expected) < 5 * stderr + 1e-4), (grads.mean(0), expected)


def test_counterfactual_and_loo_have_lower_variance_than_ema(estimates):
    """Measured total variances: ema 4.19, counterfactual 1.96, loo 0.26, delta 2.41.

    Without the common term (xi_t = 0) EMA's is 0.76: the counterfactual's advantage
    R(s) - R(all) has a non-zero mean, so it only wins when the drift dominates, while
    leave-one-out wins in both regimes.
    """
    variance = {name: float(grads.var(0).sum()) for name, grads in estimates.items()}
    assert variance["counterfactual"] < 0.5 * variance["ema"], variance
    assert variance["loo"] < 0.1 * variance["ema"], variance


def test_loo_advantages_hand_computed():
    got = adapter.loo_advantages(jnp.array([1.0, 2.0, 6.0]))
    np.testing.assert_allclose(got, [1.0 - 4.0, 2.0 - 3.5, 6.0 - 1.5])


def test_scaled_advantage_uses_only_earlier_rewards():
    state = adapter.init_adapter()
    adv, state = adapter.scaled_advantage(state, jnp.float32(2.0), window=2.0)
    assert float(adv) == 2.0 and float(state.second_moment) == 4.0  # first: raw, moment = raw^2
    adv, state = adapter.scaled_advantage(state, jnp.array([1.0, 3.0]), window=2.0)
    np.testing.assert_allclose(adv, [1.0, 3.0])  # count 1 < window: not scaled yet
    np.testing.assert_allclose(float(state.second_moment), 4.0 + (5.0 - 4.0) / 2)
    adv, _ = adapter.scaled_advantage(state, jnp.float32(9.0), window=2.0)
    np.testing.assert_allclose(float(adv), 9.0 / np.sqrt(4.5), rtol=1e-6)  # scale from before
