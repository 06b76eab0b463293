"""The jitted DVR step: masked update, estimators, accumulation, pair values, compile once."""

from __future__ import annotations

from types import SimpleNamespace

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dvr_jax import adapter, dvr, losses, rewards, sampler, step, train
from dvr_jax.backbones import make_backbone
from dvr_jax.state import LearnerState
from dvr_jax.valuator import make_valuator, valuator_features
from tests.helpers import count_compilations, tiny_dataset

BATCH = 32


def _valuator(kind):
    if kind == "slot":
        return make_valuator("slot", h_dim=4, width=8, encoder_hidden=(16, 8))
    return make_valuator("sample", h_dim=4, encoder_hidden=(16,), interaction_rank=3)


def _setup(rng, reward="recall", backbone_name="mf", kind="sample", jit=True, **config):
    dataset = tiny_dataset(rng)
    backbone = make_backbone(backbone_name, dataset.n_users, dataset.n_items, dim=8)
    arrays = sampler.make_train_arrays(dataset.train, dataset.n_users, dataset.n_items)
    valuator = _valuator(kind)
    reward_data = rewards.make_reward_data(dataset, reward, arrays, fraction=0.5, seed=0, chunk_size=8)
    reward_fn = rewards.make_reward_fn(backbone, reward, k=5)
    if kind == "slot":  # each coalition is a full forward of the slot valuator: keep the loss game small
        config.setdefault("loss_game_coalitions", 2)
    cfg = dvr.DVRConfig(reward=reward, **config)
    step = dvr.make_dvr_step(backbone, valuator, reward_fn, cfg)
    step = jax.jit(step) if jit else step  # one compile is cheaper than op-by-op dispatch of the step
    state = dvr.create_dvr_state(jax.random.key(0), backbone, valuator, BATCH, n_pairs=arrays.n_pairs,
                                 accumulate=cfg.reward_interval > 1, freeze_encoder=cfg.freeze_encoder)  # fmt: skip
    data = dvr.DVRData(arrays, backbone.build_graph(dataset.train), reward_data)
    batches = sampler.epoch_batches(jax.random.key(1), arrays.n_pairs, BATCH)
    return backbone, valuator, reward_fn, step, state, data, batches


@pytest.mark.slow
@pytest.mark.parametrize("update_batch", [0, 100])
def test_backbone_update_uses_only_the_first_mask(rng, update_batch):
    """The update is BPR's on the first mask's pairs; with update_batch n, their sum scaled by n / |mask|."""
    backbone, _, _, step, state, data, batches = _setup(rng, estimator="loo", update_batch=update_batch)
    new_state, metrics = step(state, jax.random.key(2), batches[0], data)
    mask = metrics["mask"]
    assert 0 < float(mask.sum()) < BATCH and bool(metrics["finite"])
    params = state.backbone.params
    scale = update_batch / float(mask.sum()) if update_batch else 1.0

    def masked_loss(p):
        u, i, j = metrics["users"], metrics["pos_items"], metrics["neg_items"]
        per_sample = losses.bpr_per_sample(backbone.score_pairs(p, u, i), backbone.score_pairs(p, u, j))
        return scale * jnp.sum(mask * per_sample)

    expected = state.backbone.apply_gradients(jax.grad(masked_loss)(params))
    np.testing.assert_allclose(new_state.backbone.params["user"], expected.params["user"], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("kind, reward", [("sample", "recall"), ("sample", "loss"), ("slot", "gini")])
def test_valuator_and_adapter_update_every_step(rng, reward, kind):
    _, _, _, step, state, data, batches = _setup(rng, reward=reward, kind=kind)
    new_state, metrics = step(state, jax.random.key(2), batches[0], data)
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), state.valuator.params, new_state.valuator.params)
    for part, subtree in changed.items():
        if part != "offset":
            assert any(jax.tree.leaves(subtree)), part
    assert int(new_state.adapter.count) == 1 and np.isfinite(float(metrics["reward"]))
    if reward == "gini":
        assert 0.0 <= float(metrics["reward"]) <= 1.0


def test_the_released_codes_frozen_encoder_and_batch_loss_reward(rng):
    backbone, _, _, step, state, data, batches = _setup(rng, reward="loss", estimator="none", freeze_encoder=True,
                                                        loss_reward="batch")  # fmt: skip
    new_state, metrics = step(state, jax.random.key(2), batches[0], data)
    old, new = state.valuator.params, new_state.valuator.params
    chex.assert_trees_all_equal(old["encoder"], new["encoder"])  # no update and no weight decay
    assert any(jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.any(a != b)), old["game"], new["game"])))
    params, u, i, j = state.backbone.params, metrics["users"], metrics["pos_items"], metrics["neg_items"]
    batch_loss = jnp.sum(losses.bpr_per_sample(backbone.score_pairs(params, u, i), backbone.score_pairs(params, u, j)))
    np.testing.assert_allclose(float(metrics["reward"]), -float(batch_loss), rtol=1e-5)  # pre-update, whole batch


def test_loo_advantage_is_the_leave_one_out_of_k_hypothetical_steps(rng):
    backbone, valuator, reward_fn, step, state, data, batches = _setup(rng, estimator="loo", num_masks=3)
    key = jax.random.key(2)
    _, metrics = step(state, key, batches[0], data)
    # Rebuild the three masks and rewards by hand from the same keys and probabilities.
    _, k_select, k_dropout = jax.random.split(jax.random.fold_in(key, state.backbone.step), 3)
    masks = jax.vmap(adapter.select, in_axes=(0, None))(jax.random.split(k_select, 3), metrics["probs"])
    np.testing.assert_array_equal(masks[0], metrics["mask"])
    u, i, j = metrics["users"], metrics["pos_items"], metrics["neg_items"]

    def reward_after(mask):
        grads = jax.grad(lambda p: jnp.sum(mask * train.per_sample_bpr(p, backbone, data.graph, u, i, j, k_dropout)[0])
                         )(state.backbone.params)  # fmt: skip
        return reward_fn(state.backbone.apply_gradients(grads).params, data.graph, data.aux)

    got = np.array([float(reward_after(m)) for m in masks])
    np.testing.assert_allclose(float(metrics["reward"]), got[0], rtol=1e-6)
    expected = got - (got.sum() - got) / 2
    np.testing.assert_allclose(float(metrics["advantage"]), expected.mean(), rtol=1e-4, atol=1e-7)


def test_counterfactual_advantage_is_reward_against_all_selected(rng):
    backbone, _, reward_fn, step, state, data, batches = _setup(rng, estimator="counterfactual", reward="loss")
    key = jax.random.key(3)
    _, metrics = step(state, key, batches[0], data)
    _, _, k_dropout = jax.random.split(jax.random.fold_in(key, state.backbone.step), 3)
    u, i, j = metrics["users"], metrics["pos_items"], metrics["neg_items"]
    grads = jax.grad(lambda p: jnp.sum(train.per_sample_bpr(p, backbone, data.graph, u, i, j, k_dropout)[0]))(
        state.backbone.params
    )
    all_selected = float(reward_fn(state.backbone.apply_gradients(grads).params, data.graph, data.aux))
    np.testing.assert_allclose(
        float(metrics["advantage"]), float(metrics["reward"]) - all_selected, rtol=1e-4, atol=1e-6
    )


def test_pair_values_accumulate_by_pair(rng):
    _, _, _, step, state, data, batches = _setup(rng, estimator="ema")
    state1, m1 = step(state, jax.random.key(2), batches[0], data)
    state2, m2 = step(state1, jax.random.key(2), batches[0], data)
    index = np.asarray(batches[0])
    pairs = state2.pairs
    np.testing.assert_array_equal(np.asarray(pairs.visits)[index], 2.0)
    assert float(jnp.sum(pairs.visits)) == 2 * BATCH
    np.testing.assert_allclose(np.asarray(pairs.value)[index], np.asarray(m1["shapley"] + m2["shapley"]), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(pairs.influence)[index], np.asarray(m1["influence"] + m2["influence"]),
                               rtol=1e-5, atol=1e-9)  # fmt: skip
    assert float(jnp.std(m1["influence"])) > 0.0


def test_accumulated_valuator_update_equals_the_gradient_over_the_window(rng):
    """reward_interval 2: one update from both batches, with one shared reward and advantage."""
    # loss_negatives=1: the window loss below rebuilds the features from the triplets' own losses
    backbone, valuator, _, step, state, data, batches = _setup(rng, estimator="none", reward_interval=2,
                                                               lambda_explore=1.0, loss_game_weight=0.0,
                                                               loss_negatives=1)  # fmt: skip
    state = state.replace(valuator=LearnerState.create(state.valuator.params, optax.sgd(1.0)))
    key = jax.random.key(4)
    state1, m0 = step(state, key, batches[0], data)
    assert int(state1.adapter.count) == 0 and float(state1.accum.count) == 1.0
    np.testing.assert_array_equal(state1.valuator.params["offset"], state.valuator.params["offset"])
    state2, m1 = step(state1, key, batches[1], data)
    assert int(state2.adapter.count) == 1 and float(state2.accum.count) == 0.0 and bool(m1["reward_due"])
    reward = m1["reward"]
    cfg = dvr.DVRConfig()

    def window_loss(vparams):
        total = 0.0
        for learner, m in ((state, m0), (state1, m1)):
            params = learner.backbone.params
            u, i, j = m["users"], m["pos_items"], m["neg_items"]
            per_sample = losses.bpr_per_sample(backbone.score_pairs(params, u, i), backbone.score_pairs(params, u, j))
            feats = valuator_features(backbone.pair_features(params, u, i, j), per_sample)
            probs = valuator.probabilities(vparams, valuator.forward(vparams, feats).shapley)
            coalition_value = valuator.output(vparams, feats, m["mask"])
            total = total + adapter.exploration_penalty(probs)
            total = total + cfg.alpha_mse * jnp.square((coalition_value - 100.0 * reward) / jnp.sum(m["mask"]))
            total = total - cfg.alpha_pg * reward * jnp.mean(adapter.bernoulli_log_prob(probs, m["mask"]))
        return total / 2

    expected = jax.grad(window_loss)(state.valuator.params)
    got = jax.tree.map(lambda old, new: old - new, state.valuator.params, state2.valuator.params)
    for g, e in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
        np.testing.assert_allclose(np.asarray(g), np.asarray(e), rtol=2e-3, atol=1e-5)


def test_delta_estimator_with_accumulation_uses_the_reward_at_the_window_start(rng):
    _, _, reward_fn, step, state, data, batches = _setup(rng, estimator="delta", reward_interval=2, reward="loss")
    start = float(reward_fn(state.backbone.params, data.graph, data.aux))
    state1, _ = step(state, jax.random.key(2), batches[0], data)
    np.testing.assert_allclose(float(state1.adapter.start_reward), start, rtol=1e-6)
    _, m1 = step(state1, jax.random.key(2), batches[1], data)
    np.testing.assert_allclose(float(m1["advantage"]), float(m1["reward"]) - start, rtol=1e-4, atol=1e-6)


def test_row_gains_count_each_row_as_the_update_batch():
    """A NumPy oracle: n / sum_b w_b per row; a row without weight gets gain 1."""
    rows = np.array([[1.0, 0.0, 1.0, 1.0], [0.2, 0.3, 0.0, 0.5], [0.0, 0.0, 0.0, 0.0]], np.float32)
    np.testing.assert_allclose(np.asarray(dvr.row_gains(jnp.asarray(rows), 6)), [2.0, 6.0, 1.0], rtol=1e-6)
    with pytest.raises(ValueError, match="update_batch must be >= 0"):
        dvr.check_config(dvr.DVRConfig(update_batch=-1))


def test_dot_mode_weights_are_the_probabilities(rng):
    _, _, _, step, state, data, batches = _setup(rng, weight_mode="dot", estimator="ema")
    _, metrics = step(state, jax.random.key(2), batches[0], data)
    np.testing.assert_allclose(metrics["mask"], metrics["probs"], rtol=1e-6)


def test_pair_losses_average_the_triplets_loss_and_fresh_negatives(rng):
    """A NumPy oracle: mean over the triplet's own BPR loss and n - 1 negatives drawn with the same key."""
    dataset = tiny_dataset(rng)
    backbone = make_backbone("mf", dataset.n_users, dataset.n_items, dim=8)
    params = backbone.init(jax.random.key(0))
    arrays = sampler.make_train_arrays(dataset.train, dataset.n_users, dataset.n_items)
    users, pos, neg = (jnp.asarray(dataset.train[:BATCH, 0]), jnp.asarray(dataset.train[:BATCH, 1]),
                       jnp.asarray(rng.integers(0, dataset.n_items, BATCH), jnp.int32))  # fmt: skip
    p_u, q = np.asarray(params["user"], np.float64), np.asarray(params["item"], np.float64)
    s_pos = np.sum(p_u[users] * q[pos], 1)
    own = np.log1p(np.exp(-(s_pos - np.sum(p_u[users] * q[neg], 1))))
    forward = SimpleNamespace(per_sample=jnp.asarray(own, jnp.float32), pos=jnp.asarray(s_pos, jnp.float32))
    batch = SimpleNamespace(users=users, pos_items=pos, neg_items=neg)
    ctx = SimpleNamespace(forward=forward, batch=batch, learner=SimpleNamespace(params=params),
                          data=SimpleNamespace(train=arrays, graph=None))  # fmt: skip
    key = jax.random.key(5)
    np.testing.assert_array_equal(dvr.pair_losses(backbone, ctx, key, 1), forward.per_sample)
    got = np.asarray(dvr.pair_losses(backbone, ctx, key, 4))
    fresh = np.asarray(sampler.sample_uniform_negatives(key, arrays, jnp.repeat(users, 3))).reshape(BATCH, 3)
    positives = {tuple(p) for p in dataset.train}
    assert not any((int(u), int(j)) in positives for u, row in zip(users, fresh) for j in row)
    extra = np.log1p(np.exp(-(s_pos[:, None] - np.einsum("bd,bkd->bk", p_u[users], q[fresh]))))
    np.testing.assert_allclose(got, (own + extra.sum(1)) / 4, rtol=1e-5)


def test_a_step_with_more_loss_negatives_feeds_the_valuator_another_loss(rng):
    """Same data, batch and key: the valuator reads and fits another loss, so it ends elsewhere."""
    del rng
    outs = []
    for n in (1, 8):
        _, _, _, step, state, data, batches = _setup(np.random.default_rng(0), reward="loss", estimator="ema",
                                                     loss_negatives=n)  # fmt: skip
        outs.append(step(state, jax.random.key(2), batches[0], data))
    (one, m_one), (eight, m_eight) = outs
    assert float(m_one["cosine"]) != float(m_eight["cosine"])
    assert any(bool(jnp.any(a != b)) for a, b in zip(jax.tree.leaves(one.valuator.params),
                                                     jax.tree.leaves(eight.valuator.params)))  # fmt: skip
    with pytest.raises(ValueError, match="loss_negatives"):
        dvr.check_config(dvr.DVRConfig(loss_negatives=0))


def test_bad_estimator_combinations_are_rejected():
    with pytest.raises(ValueError, match="reward every step"):
        dvr.check_config(dvr.DVRConfig(estimator="loo", reward_interval=3))
    with pytest.raises(ValueError, match="num_masks"):
        dvr.check_config(dvr.DVRConfig(estimator="loo", num_masks=1))
    with pytest.raises(ValueError, match="estimator must be"):
        dvr.check_config(dvr.DVRConfig(estimator="bogus"))


@pytest.mark.slow
def test_jit_equals_no_jit_and_compiles_once(rng):
    _, _, _, step, state, data, batches = _setup(rng, backbone_name="lightgcn", jit=False)
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


def test_random_coalitions_span_sizes_from_one_to_the_batch():
    masks = np.asarray(dvr.random_coalitions(jax.random.key(0), 2000, 50))
    sizes = masks.sum(1)
    assert set(np.unique(masks)) <= {0.0, 1.0} and sizes.min() == 1 and sizes.max() == 50
    assert 0.2 < np.mean(sizes <= 7) < 0.7  # log-uniform: about half the sizes are <= sqrt(B)


def test_loss_game_mse_hand_computed():
    values = jnp.array([-1.0, -4.0])
    losses_b = jnp.array([0.5, 1.0, 2.0])
    masks = jnp.array([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    expected = ((-1.0 + 0.5) ** 2 + ((-4.0 + 3.5) / 3) ** 2) / 2
    np.testing.assert_allclose(float(dvr.loss_game_mse(values, losses_b, masks)), expected, rtol=1e-6)


def test_singleton_mse_hand_computed():
    got = dvr.singleton_mse(jnp.array([-0.5, -2.0]), jnp.array([1.0, 1.0]))
    np.testing.assert_allclose(float(got), (0.25 + 1.0) / 2, rtol=1e-6)


def test_a_gained_row_scales_the_loss_gradient_not_the_regulariser(rng):
    """pull_back with gain g equals the cotangents w * g pulled back (LightGCN: its L2 is in the loss)."""
    dataset = tiny_dataset(rng)
    backbone = make_backbone("lightgcn", dataset.n_users, dataset.n_items, dim=4, l2=1e-2)
    params, graph = backbone.init(jax.random.key(0)), backbone.build_graph(dataset.train)
    users, pos, neg = (jnp.asarray(rng.integers(0, n, BATCH)) for n in (dataset.n_users, dataset.n_items,
                                                                         dataset.n_items))  # fmt: skip
    _, _, fwd = step.forward(backbone, params, graph, None, lambda _: (step.Batch(users, pos, neg), None))
    weights = jnp.asarray(rng.random(BATCH) < 0.5, jnp.float32)
    assert float(fwd.regularizer) > 0
    gained = step.pull_back(fwd, weights, 1.0, jnp.float32(2.5))
    chex.assert_trees_all_close(gained, step.pull_back(fwd, weights * 2.5, 1.0), rtol=1e-5, atol=1e-7)
    ungained = step.pull_back(fwd, weights, 1.0)
    with pytest.raises(AssertionError):  # the gain does change the gradient
        chex.assert_trees_all_close(gained, ungained, rtol=1e-3)
