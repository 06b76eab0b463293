"""TCE-BPR and RCE-BPR: the drop schedule, exact truncation, closed-form weights, the update."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dvr_jax import losses
from dvr_jax.backbones import make_backbone
from dvr_jax.baselines import common, reweighting
from dvr_jax.state import LearnerState, make_adam


def test_drop_rate_ramps_linearly_then_holds():
    rates = [float(reweighting.tce_drop_rate(jnp.int32(t), 0.2, 100)) for t in (0, 25, 50, 99, 100, 5000)]
    np.testing.assert_allclose(rates, [0.0, 0.05, 0.1, 0.198, 0.2, 0.2], rtol=1e-6, atol=1e-9)
    ramp = float(reweighting.tce_drop_rate(jnp.int32(50), 0.25, 100, exponent=2.0))
    assert ramp == pytest.approx(0.25**2 * 0.5)


@pytest.mark.parametrize("batch_size, rate", [(10, 0.2), (10, 0.0), (7, 0.5), (5000, 0.2), (5000, 0.1), (2048, 0.05)])
def test_truncation_drops_exactly_the_largest_losses(rng, batch_size, rate):
    per_sample = rng.permutation(batch_size).astype(np.float32) + rng.random(batch_size).astype(np.float32) * 0.5
    weights = np.asarray(reweighting.truncation_weights(jnp.asarray(per_sample), jnp.float32(rate)))
    n_keep = int(np.floor((1.0 - rate) * batch_size))
    kept = weights > 0
    assert kept.sum() == n_keep
    assert per_sample[kept].max() < per_sample[~kept].min() if n_keep < batch_size else kept.all()
    mean_kept = np.sum(weights * per_sample) / batch_size  # a mean reduction of the weighted losses
    np.testing.assert_allclose(mean_kept, per_sample[kept].mean(), rtol=1e-5)


def test_truncation_at_the_scheduled_rate_of_a_step():
    losses_ = jnp.arange(100, dtype=jnp.float32)[::-1]
    rate = reweighting.tce_drop_rate(jnp.int32(15_000), 0.2, 30_000)  # half-way: ε = 0.1
    weights = np.asarray(reweighting.truncation_weights(losses_, rate))
    assert (weights > 0).sum() == 90 and np.all(weights[:10] == 0)


def test_rce_weights_equal_the_closed_form(rng):
    pos, neg = rng.normal(size=(2, 64)).astype(np.float32)
    for beta in (0.05, 0.2, 1.0):
        expected = (1.0 / (1.0 + np.exp(-(pos - neg)))) ** beta
        got = reweighting.rce_weights(jnp.asarray(pos), jnp.asarray(neg), beta)
        np.testing.assert_allclose(got, expected, rtol=1e-5)
    np.testing.assert_allclose(reweighting.rce_weights(jnp.asarray(pos), jnp.asarray(neg), 0.0), 1.0)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("rule", ["tce", "rce"])
def test_update_is_the_gradient_of_the_weighted_loss(rng, key, rule, reduction):
    backbone = make_backbone("mf", 6, 9, dim=4, init_std=0.5)
    state = LearnerState.create(backbone.init(key), make_adam(0.1, backbone.weight_decay))
    users, pos_items, neg_items = (jnp.asarray(rng.integers(0, n, 12), jnp.int32) for n in (6, 9, 9))
    rate = jnp.float32(0.25)

    def weights_fn(per_sample, pos, neg):
        if rule == "tce":
            return reweighting.truncation_weights(per_sample, rate)
        return reweighting.rce_weights(pos, neg, 0.5)

    new_state, out = common.pairwise_update(
        state, backbone, None, None, users, pos_items, neg_items, weights_fn, reduction=reduction
    )

    def oracle(params):
        pos = jnp.sum(params["user"][users] * params["item"][pos_items], -1)
        neg = jnp.sum(params["user"][users] * params["item"][neg_items], -1)
        per_sample = losses.bpr_per_sample(pos, neg)
        if rule == "tce":  # mean of the 9 smallest of 12 (x 12 under "sum")
            kept = jnp.sort(per_sample)[:9]
            return jnp.mean(kept) * (12 if reduction == "sum" else 1)
        weights = jax.lax.stop_gradient(jax.nn.sigmoid(pos - neg) ** 0.5)
        return losses.reduce_loss(per_sample, weights, reduction=reduction)

    expected = state.apply_gradients(jax.grad(oracle)(state.params))
    np.testing.assert_allclose(new_state.params["user"], expected.params["user"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new_state.params["item"], expected.params["item"], rtol=1e-5, atol=1e-6)
