"""BPR loss and the jitted BPR train step: hand-computed loss, finite update, compile once."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dvr_jax import losses, sampler, train
from dvr_jax.backbones import make_mf
from dvr_jax.state import make_adam, standard_promotion
from tests.helpers import count_compilations, random_pairs


def test_bpr_per_sample_hand_computed():
    got = losses.bpr_per_sample(jnp.array([2.0, 0.0]), jnp.array([1.0, 0.0]))
    expected = [-np.log(1 / (1 + np.exp(-1.0)) + 1e-8), -np.log(0.5 + 1e-8)]
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_masked_entries_contribute_zero():
    per_sample = jnp.array([1.0, 2.0, jnp.inf, 4.0])
    mask = jnp.array([1.0, 1.0, 0.0, 1.0])
    assert float(losses.reduce_loss(per_sample, mask)) == 7.0
    assert float(losses.reduce_loss(per_sample[:2], reduction="mean")) == 1.5


def test_coupled_weight_decay_adds_to_gradient_before_adam():
    params = {"w": jnp.array([2.0])}
    grads = {"w": jnp.array([0.5])}
    tx = make_adam(0.1, 1e-1)
    updates, _ = tx.update(grads, tx.init(params), params)
    # First Adam step is -lr * sign(g + wd * w) (bias-corrected m / sqrt(v) = 1), so a
    # gradient of -0.1 moves up without decay and down once the decay 0.1 * 2.0 is added.
    np.testing.assert_allclose(updates["w"], [-0.1], rtol=1e-4)
    updates, _ = tx.update({"w": jnp.array([-0.1])}, tx.init(params), params)
    np.testing.assert_allclose(updates["w"], [-0.1], rtol=1e-4)  # -0.1 + 0.2 > 0: still down
    plain = standard_promotion(optax.adam(0.1))
    updates, _ = plain.update({"w": jnp.array([-0.1])}, plain.init(params), params)
    np.testing.assert_allclose(updates["w"], [0.1], rtol=1e-4)


def _setup(rng, batch_size=32):
    pairs = random_pairs(rng, 40, 25, 0.3)
    arrays = sampler.make_train_arrays(pairs, 40, 25)
    backbone = make_mf(40, 25, dim=8)
    state = train.create_backbone_state(jax.random.key(0), backbone)
    data = train.StepData(arrays, backbone.build_graph(pairs))
    batches = sampler.epoch_batches(jax.random.key(1), arrays.n_pairs, batch_size)
    return backbone, state, data, batches


def test_step_matches_manual_gradient_and_is_finite(rng):
    backbone, state, data, batches = _setup(rng)
    step = train.make_bpr_step(backbone)
    key = jax.random.key(3)
    new_state, metrics = step(state, key, batches[0], data)
    assert bool(metrics["finite"]) and int(new_state.step) == 1
    # Recompute the same triplets and gradient by hand.
    k_negative, _ = jax.random.split(jax.random.fold_in(key, 0))
    users, pos, neg = sampler.sample_triplets(k_negative, data.train, batches[0])
    p, q = state.params["user"], state.params["item"]

    def manual(p, q):
        diff = jnp.sum(p[users] * q[pos], -1) - jnp.sum(p[users] * q[neg], -1)
        return jnp.sum(-jnp.log(jax.nn.sigmoid(diff) + 1e-8))

    grads = jax.grad(manual, argnums=(0, 1))(p, q)
    expected = state.apply_gradients({"user": grads[0], "item": grads[1]})
    np.testing.assert_allclose(new_state.params["user"], expected.params["user"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(metrics["loss"], manual(p, q) / len(users), rtol=1e-5)


def test_jit_equals_no_jit_and_compiles_once(rng):
    backbone, state, data, batches = _setup(rng)
    step = train.make_bpr_step(backbone)
    key = jax.random.key(3)
    eager_state, _ = step(state, key, batches[0], data)
    jitted = jax.jit(step, donate_argnums=(0,))
    copy = jax.tree.map(jnp.copy, state)
    with count_compilations() as compiles:
        jit_state, _ = jitted(copy, key, batches[0], data)
        for i in range(1, 4):
            jit_state, _ = jitted(jit_state, key, batches[i], data)
    assert compiles[0] == 1
    first, _ = jax.jit(step)(state, key, batches[0], data)
    np.testing.assert_allclose(first.params["item"], eager_state.params["item"], rtol=1e-5, atol=1e-7)


def test_training_lowers_the_loss(rng):
    backbone, state, data, batches = _setup(rng, batch_size=16)
    step = jax.jit(train.make_bpr_step(backbone))
    key = jax.random.key(0)
    first = None
    for epoch in range(30):
        for pair_index in sampler.epoch_batches(jax.random.fold_in(key, epoch), data.train.n_pairs, 16):
            state, metrics = step(state, key, pair_index, data)
            first = float(metrics["loss"]) if first is None else first
    assert float(metrics["loss"]) < 0.95 * first
