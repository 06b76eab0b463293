"""REINFORCE adapter (docs/algorithm.md §6): unbiasedness, sign, exploration band, baseline."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dvr_jax import adapter
from dvr_jax.state import standard_promotion


def test_bernoulli_log_prob_hand_computed():
    got = adapter.bernoulli_log_prob(jnp.array([0.2, 0.7]), jnp.array([1.0, 0.0]))
    np.testing.assert_allclose(got, np.log([0.2 + 1e-8, 0.3 + 1e-8]), rtol=1e-6)


def test_select_never_returns_an_empty_mask(key):
    probs = jnp.full((3,), 0.05)
    masks = jax.vmap(lambda k: adapter.select(k, probs))(jax.random.split(key, 2000))
    assert float(masks.sum(axis=1).min()) >= 1.0
    assert set(np.unique(masks).tolist()) <= {0.0, 1.0}


def test_advantage_follows_the_ema_baseline():
    state = adapter.init_adapter()
    adv, state = adapter.advantage(state, jnp.float32(2.0), window=4.0, normalize=False)
    assert float(adv) == 0.0 and float(state.baseline) == 2.0  # b_0 = R_0
    adv, state = adapter.advantage(state, jnp.float32(4.0), window=4.0, normalize=False)
    assert float(adv) == 2.0 and float(state.baseline) == 2.5  # b + (R - b) / T_w
    assert float(state.second_moment) == 1.0  # 0 + (4 - 0) / 4


def test_estimator_is_unbiased_on_a_toy_bandit(key):
    """Unbiased: mean of A_t (s_t - p) equals d E[R] / d logit(p) = c p (1 - p)."""
    probs = jnp.array([0.2, 0.5, 0.7, 0.9])
    coef = jnp.array([1.0, -0.5, 2.0, 0.3])
    logits = jnp.log(probs / (1 - probs))

    def one_draw(state, k):
        k_select, k_noise = jax.random.split(k)
        mask = jax.random.bernoulli(k_select, probs).astype(jnp.float32)
        reward = jnp.sum(coef * mask) + 0.1 * jax.random.normal(k_noise)
        adv, state = adapter.advantage(state, reward, window=20.0, normalize=False)
        grad_logits = jax.grad(lambda z: -adapter.policy_loss(jax.nn.sigmoid(z), mask, adv, reduction="sum"))(logits)
        return state, grad_logits

    _, grads = jax.lax.scan(one_draw, adapter.init_adapter(), jax.random.split(key, 100_000))
    estimate = np.asarray(grads.mean(0))
    stderr = np.asarray(grads.std(0)) / np.sqrt(grads.shape[0])
    expected = np.asarray(coef * probs * (1 - probs))
    assert np.all(np.abs(estimate - expected) < 5 * stderr + 1e-3), (estimate, expected)


def test_positive_advantage_step_raises_log_probability_of_the_selection():
    logits = jnp.array([0.3, -0.2, 0.1])
    mask = jnp.array([1.0, 0.0, 1.0])
    grad = jax.grad(lambda z: adapter.policy_loss(jax.nn.sigmoid(z), mask, jnp.float32(1.0)))(logits)
    before = adapter.bernoulli_log_prob(jax.nn.sigmoid(logits), mask).sum()
    after = adapter.bernoulli_log_prob(jax.nn.sigmoid(logits - 0.1 * grad), mask).sum()
    assert float(after) > float(before)


def test_policy_learns_to_select_the_rewarding_sample(key):
    """Sign: if selecting sample 0 raises the reward, p_0 increases."""
    tx = standard_promotion(optax.adam(0.05))

    def update(carry, k):
        logits, opt_state, adapter_state = carry
        probs = jax.nn.sigmoid(logits)
        mask = jax.random.bernoulli(k, probs).astype(jnp.float32)
        adv, adapter_state = adapter.advantage(adapter_state, mask[0] + 0.0 * mask.sum())
        grads = jax.grad(lambda z: adapter.policy_loss(jax.nn.sigmoid(z), mask, adv))(logits)
        updates, opt_state = tx.update(grads, opt_state)
        return (optax.apply_updates(logits, updates), opt_state, adapter_state), None

    logits = jnp.zeros((4,))
    (logits, _, _), _ = jax.lax.scan(
        update, (logits, tx.init(logits), adapter.init_adapter()), jax.random.split(key, 400)
    )
    probs = jax.nn.sigmoid(logits)
    assert float(probs[0]) > 0.8 and float(jnp.abs(probs[1:] - 0.5).max()) < 0.3


def test_exploration_penalty_pushes_the_mean_probability_into_the_band():
    """Exploration band: with all p near 1, descending the penalty brings mean p below 0.9."""
    logits = jnp.full((5,), 3.0)
    for _ in range(300):
        logits = logits - 20.0 * jax.grad(lambda z: adapter.exploration_penalty(jax.nn.sigmoid(z)))(logits)
    assert float(jax.nn.sigmoid(logits).mean()) <= 0.9 + 1e-3
    assert float(adapter.exploration_penalty(jnp.full((4,), 0.5))) == 0.0
    np.testing.assert_allclose(adapter.exploration_penalty(jnp.full((4,), 0.05)), 0.05, rtol=1e-5)
