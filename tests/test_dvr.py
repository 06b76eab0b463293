"""The jitted DVR step: masked update, valuator update, compile once, jit == no-jit."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dvr_jax import dvr, losses, rewards, sampler
from dvr_jax.backbones import make_backbone
from dvr_jax.valuator import make_valuator
from tests.helpers import count_compilations, tiny_dataset

BATCH = 32


def _setup(rng, reward="recall", backbone_name="mf", **config):
    dataset = tiny_dataset(rng)
    backbone = make_backbone(backbone_name, dataset.n_users, dataset.n_items, dim=8)
    arrays = sampler.make_train_arrays(dataset.train, dataset.n_users, dataset.n_items)
    valuator = make_valuator(h_dim=4, width=8, encoder_hidden=(16, 8))
    reward_data = rewards.make_reward_data(dataset, reward, arrays, fraction=0.5, seed=0, chunk_size=8)
    step = dvr.make_dvr_step(backbone, valuator, rewards.make_reward_fn(backbone, reward, k=5),
                             dvr.DVRConfig(reward=reward, **config))  # fmt: skip
    state = dvr.create_dvr_state(jax.random.key(0), backbone, valuator, BATCH)
    data = dvr.DVRData(arrays, backbone.build_graph(dataset.train), reward_data)
    batches = sampler.epoch_batches(jax.random.key(1), arrays.n_pairs, BATCH)
    return backbone, step, state, data, batches


def test_backbone_update_uses_only_the_selected_samples(rng):
    backbone, step, state, data, batches = _setup(rng)
    new_state, metrics = step(state, jax.random.key(2), batches[0], data)
    mask = metrics["mask"]
    assert 0 < float(mask.sum()) < BATCH and bool(metrics["finite"])
    params = state.backbone.params

    def masked_loss(p):
        u, i, j = metrics["users"], metrics["pos_items"], metrics["neg_items"]
        return jnp.sum(mask * losses.bpr_per_sample(backbone.score_pairs(p, u, i), backbone.score_pairs(p, u, j)))

    expected = state.backbone.apply_gradients(jax.grad(masked_loss)(params))
    np.testing.assert_allclose(new_state.backbone.params["user"], expected.params["user"], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("reward", ["recall", "loss", "gini"])
def test_valuator_and_baseline_update_every_step(rng, reward):
    _, step, state, data, batches = _setup(rng, reward=reward)
    new_state, metrics = step(state, jax.random.key(2), batches[0], data)
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), state.valuator.params, new_state.valuator.params)
    assert any(jax.tree.leaves(changed["encoder"])) and any(jax.tree.leaves(changed["harsanyi"]))
    assert int(new_state.adapter.count) == 1 and float(new_state.adapter.baseline) == float(metrics["reward"])
    assert np.isfinite(float(metrics["reward"]))
    if reward == "gini":
        assert 0.0 <= float(metrics["reward"]) <= 1.0


def test_reward_interval_skips_the_valuator_update(rng):
    _, step, state, data, batches = _setup(rng, reward_interval=2)
    state, first = step(state, jax.random.key(2), batches[0], data)  # step 0: update
    before = state.valuator.params
    state, second = step(state, jax.random.key(2), batches[1], data)  # step 1: skipped
    assert int(state.adapter.count) == 1 and float(second["reward"]) == 0.0
    assert all(jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), before, state.valuator.params)))


def test_dot_mode_weights_are_the_probabilities(rng):
    _, step, state, data, batches = _setup(rng, weight_mode="dot")
    _, metrics = step(state, jax.random.key(2), batches[0], data)
    np.testing.assert_allclose(metrics["mask"], metrics["probs"], rtol=1e-6)


def test_jit_equals_no_jit_and_compiles_once(rng):
    _, step, state, data, batches = _setup(rng, backbone_name="lightgcn")
    key = jax.random.key(2)
    eager, eager_metrics = step(state, key, batches[0], data)
    jitted = jax.jit(step, donate_argnums=(0,))
    current = jax.tree.map(jnp.copy, state)
    batch_list = [batches[index] for index in range(4)]
    with count_compilations() as compiles:
        current, first = jitted(current, key, batch_list[0], data)
        for pair_index in batch_list[1:]:
            current, metrics = jitted(current, key, pair_index, data)
    assert compiles[0] == 1
    np.testing.assert_allclose(first["shapley"], eager_metrics["shapley"], rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(first["mask"], eager_metrics["mask"])
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(current.valuator.params))
