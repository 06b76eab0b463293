"""Each baseline's rule checked through the method's own `step` (docs/baselines.md §4-9).

Two probes make a step observable without copying its key plumbing:

* the gradient of a first step is read from Adam's first moment (mu = (1 - b1) g after one
  update, exactly; the backbones here have no weight decay);
* `_probe_backbone` scores (u, i) by a free table entry, and its regulariser Σ count[u, j] over
  the batch's negatives is 0 (count = 0) but has gradient c_uj = how often (u, j) was drawn as a
  negative. With one row per user the counts give every row's negatives.

Plain BPR (uniform negatives, unit weights) fails every test below.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import stats

from dvr_jax import baselines, losses, sampler
from dvr_jax.backbones import make_backbone, propagation
from dvr_jax.backbones.base import Backbone
from dvr_jax.baselines import til_parts

ADAM_B1 = 0.9


def _probe_backbone(n_users: int, n_items: int, scores: np.ndarray, factors: int = 1) -> Backbone:
    """Params {"score": ŷ f32[U, I], "count": zeros f32[U, I], "user"/"item": f32[., F] factors for AOBPR}."""

    def init(key):
        k_user, k_item = jax.random.split(key)
        return {"score": jnp.asarray(scores, jnp.float32), "count": jnp.zeros((n_users, n_items), jnp.float32),
                "user": jax.random.normal(k_user, (n_users, factors)),
                "item": jax.random.normal(k_item, (n_items, factors))}  # fmt: skip

    def regularizer(params, reps, users, pos, neg):
        rows = users if neg.ndim == 1 else jnp.broadcast_to(users[:, None], neg.shape)
        return jnp.sum(params["count"][rows, neg])

    def unused(*args):
        raise NotImplementedError

    return Backbone(
        name="probe", init=init, build_graph=lambda pairs: None, encode=lambda params, graph, key=None: params,
        score_pairs=lambda reps, users, items, key=None: reps["score"][users, items],
        score_all=lambda reps, users: reps["score"][users], pair_features=unused, regularizer=regularizer,
        weight_decay=0.0,
    )  # fmt: skip


def _first_step_gradient(learner) -> dict:
    """The gradient of the one update a learner has taken, g = mu / (1 - b1)."""
    is_adam = lambda s: isinstance(s, optax.ScaleByAdamState)  # noqa: E731
    (adam,) = [s for s in jax.tree.leaves(learner.opt_state, is_leaf=is_adam) if is_adam(s)]
    assert int(adam.count) == 1
    return jax.tree.map(lambda m: np.asarray(m, np.float64) / (1.0 - ADAM_B1), adam.mu)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _one_row_per_user(rng, n_users=12, n_items=10):
    """Data, a batch holding one training pair of every user, and a spread-out score table."""
    mask = rng.random((n_users, n_items)) < 0.3
    mask[:, 0] = True  # every user has a positive and at least one negative (item n_items - 1)
    mask[:, -1] = False
    train = np.argwhere(mask).astype(np.int32)
    arrays = sampler.make_train_arrays(train, n_users, n_items)
    pair_index = jnp.asarray(np.asarray(arrays.indptr)[:-1], jnp.int32)
    scores = rng.normal(scale=2.0, size=(n_users, n_items))
    return train, arrays, pair_index, scores


def _row_negatives(counts: np.ndarray, n_rows: int) -> np.ndarray:
    """The one negative of each row (user) from the probe's counts."""
    assert np.allclose(counts.sum(1), 1.0)
    return np.argmax(counts, axis=1)[:n_rows]


def _bpr_score_gradient(scores, users, pos, neg, weights):
    """∂/∂ŷ of Σ_b w_b softplus(ŷ_uj - ŷ_ui) (users distinct)."""
    grad = np.zeros_like(scores)
    slope = weights * _sigmoid(scores[users, neg] - scores[users, pos])
    np.add.at(grad, (users, neg), slope)
    np.add.at(grad, (users, pos), -slope)
    return grad


@pytest.mark.parametrize("step_count, rate", [(0, 0.0), (5, 0.125), (10, 0.25), (40, 0.25)])
def test_tce_step_descends_the_mean_loss_of_the_kept_smallest_losses(rng, key, step_count, rate):
    train, arrays, pair_index, scores = _one_row_per_user(rng)
    probe = _probe_backbone(12, 10, scores)
    method = baselines.make_tce_method(probe, drop_rate=0.25, num_gradual=10)
    state = method.init(key).replace(step=jnp.int32(step_count))  # ε(t): ramp to 0.25 over 10 steps
    new_state, metrics = jax.jit(method.step)(state, key, pair_index, baselines.BaselineData(arrays, None, {}))
    grads = _first_step_gradient(new_state)
    users, pos = train[np.asarray(pair_index)].T
    neg = _row_negatives(grads["count"], 12)
    loss = np.logaddexp(0.0, scores[users, neg] - scores[users, pos])
    n_keep = int(np.floor((1.0 - rate) * 12 + 1e-6))
    keep = np.zeros(12)
    keep[np.argsort(loss)[:n_keep]] = 12 / n_keep  # "sum" reduction: B × the mean of the kept
    assert float(metrics["drop_rate"]) == pytest.approx(rate)
    np.testing.assert_allclose(grads["score"], _bpr_score_gradient(scores, users, pos, neg, keep), rtol=1e-5,
                               atol=1e-6)  # fmt: skip


def test_rce_step_weights_each_triplet_by_its_pair_confidence(rng, key):
    train, arrays, pair_index, scores = _one_row_per_user(rng)
    method = baselines.make_rce_method(_probe_backbone(12, 10, scores), beta=0.5)
    data = baselines.BaselineData(arrays, None, {})
    new_state, metrics = jax.jit(method.step)(method.init(key), key, pair_index, data)
    grads = _first_step_gradient(new_state)
    users, pos = train[np.asarray(pair_index)].T
    neg = _row_negatives(grads["count"], 12)
    weights = _sigmoid(scores[users, pos] - scores[users, neg]) ** 0.5
    assert weights.std() > 0.1  # far from the constant weights of BPR
    np.testing.assert_allclose(grads["score"], _bpr_score_gradient(scores, users, pos, neg, weights), rtol=1e-5,
                               atol=1e-6)  # fmt: skip
    assert float(metrics["mean_weight"]) == pytest.approx(weights.mean(), rel=1e-5)


@pytest.mark.parametrize("proposal, temperature", [("uniform", 0.5), ("pop", 1.0)])
def test_pris_step_weights_the_negatives_by_a_softmax_over_their_scores(rng, key, proposal, temperature):
    train, arrays, pair_index, scores = _one_row_per_user(rng)
    popularity = np.asarray(baselines.item_popularity(train, 10), np.float64)
    method = baselines.make_pris_method(_probe_backbone(12, 10, scores), num_negatives=4, temperature=temperature,
                                        proposal=proposal)  # fmt: skip
    data = baselines.BaselineData(arrays, None, {"popularity": baselines.item_popularity(train, 10)})
    new_state, metrics = jax.jit(method.step)(method.init(key), key, pair_index, data)
    grads = _first_step_gradient(new_state)
    counts = np.rint(grads["count"])  # c_uj: user u's row drew j that many times (4 in all)
    np.testing.assert_allclose(grads["count"], counts, atol=1e-4)
    assert np.all(counts.sum(1) == 4) and np.all(counts[train[:, 0], train[:, 1]] == 0)
    log_q = np.log(np.maximum(popularity, 1e-30)) if proposal == "pop" else np.zeros(10)
    logits = np.where(counts > 0, scores / temperature - log_q[None, :], -np.inf)
    slot_weight = np.exp(logits - logits.max(1, keepdims=True))
    slot_weight /= (counts * slot_weight).sum(1, keepdims=True)  # w of one slot holding j; Σ_l w_l = 1
    users, pos = train[np.asarray(pair_index)].T
    slope = counts * slot_weight * _sigmoid(scores - scores[users, pos][:, None])
    expected = slope.copy()
    expected[users, pos] -= slope.sum(1)
    np.testing.assert_allclose(grads["score"], expected, rtol=1e-5, atol=1e-6)
    entropy = -np.sum(counts * slot_weight * np.log(np.where(counts > 0, slot_weight, 1.0)), 1).mean()
    assert float(metrics["weight_entropy"]) == pytest.approx(entropy, rel=1e-4) and entropy < np.log(4) - 0.05


def _draw_counts(method, key, pair_index, data):
    """Negative counts c[u, j] of one step over a batch of pair indices."""
    new_state, metrics = jax.jit(method.step)(method.init(key), key, pair_index, data)
    assert bool(metrics["finite"])
    learner = getattr(new_state, "backbone", new_state)
    counts = _first_step_gradient(learner)["count"]
    np.testing.assert_allclose(counts, np.rint(counts), atol=1e-3)
    return np.rint(counts)


def _chi_square_pvalue(counts: np.ndarray, law: np.ndarray) -> float:
    """Pooled chi-square of per-user counts against per-user laws (rows summing to 1)."""
    expected = law * counts.sum(1, keepdims=True)
    cells = expected > 0
    assert counts[~cells].sum() == 0
    return stats.chisquare(counts[cells], expected[cells]).pvalue


def test_wbpr_step_draws_negatives_in_proportion_to_a_power_of_popularity(rng, key):
    exponent = 0.5
    n_users, n_items = 6, 12
    mask = rng.random((n_users, n_items)) < np.linspace(0.9, 0.05, n_items)[None, :]  # skewed popularity
    mask[:, 0], mask[:, -1] = True, False  # the last item is never a positive, so never a negative
    train = np.argwhere(mask).astype(np.int32)
    arrays = sampler.make_train_arrays(train, n_users, n_items)
    rows = jnp.asarray(np.tile(np.asarray(arrays.indptr)[:-1], 4000), jnp.int32)  # 4000 draws per user
    probe = _probe_backbone(n_users, n_items, np.zeros((n_users, n_items)))
    method = baselines.make_wbpr_method(probe, exponent=exponent)
    data = baselines.BaselineData(arrays, None, {"popularity": baselines.item_popularity(train, n_items)})
    counts = _draw_counts(method, key, rows, data)
    popularity = mask.sum(0).astype(np.float64)
    law = np.where(mask, 0.0, popularity[None, :] ** exponent)
    law /= law.sum(1, keepdims=True)
    assert counts[:, -1].sum() == 0 and counts[mask].sum() == 0
    assert _chi_square_pvalue(counts, law) > 1e-3
    uniform = np.where(mask | (popularity == 0)[None, :], 0.0, 1.0)
    assert _chi_square_pvalue(counts, uniform / uniform.sum(1, keepdims=True)) < 1e-9  # the test has power


def test_aobpr_step_oversamples_the_items_ranked_high_by_the_user_factors(key):
    n_users, n_items, factors, scale = 2, 10, 3, 2.0
    train = np.array([[0, 1], [0, 6], [1, 0], [1, 4]], np.int32)
    arrays = sampler.make_train_arrays(train, n_users, n_items)
    probe = _probe_backbone(n_users, n_items, np.zeros((n_users, n_items)), factors)
    method = baselines.make_aobpr_method(probe, n_items=n_items, factor_dim=factors, batch_size=16,
                                         lambda_rel=scale / n_items)  # fmt: skip
    rows = jnp.asarray(np.tile([0, 2], 10_000), jnp.int32)  # 10 000 draws for each user
    counts = _draw_counts(method, key, rows, baselines.BaselineData(arrays, None, {}))
    # Oracle on the initial factors (the first step ranks the initial model): P(j | u) ∝
    # Σ_f P(f | u) P(rank of j in f's order, reversed when p_uf < 0), P(f | u) ∝ |p_uf| σ_f, on j ∉ S_u+.
    user, item = (np.asarray(method.backbone_params(method.init(key))[name]) for name in ("user", "item"))
    p_rank = np.exp(-np.arange(1, n_items + 1) / scale)
    law = np.zeros((n_users, n_items))
    for u in range(n_users):
        p_factor = np.abs(user[u]) * item.std(0)
        for f in range(factors):
            order = np.argsort(-item[:, f], kind="stable")
            law[u, order if user[u, f] > 0 else order[::-1]] += p_factor[f] / p_factor.sum() * p_rank
    law[train[:, 0], train[:, 1]] = 0.0
    law /= law.sum(1, keepdims=True)
    assert _chi_square_pvalue(counts, law) > 1e-3
    uniform = np.ones((n_users, n_items))
    uniform[train[:, 0], train[:, 1]] = 0.0
    assert _chi_square_pvalue(counts, uniform / uniform.sum(1, keepdims=True)) < 1e-9  # the test has power
    top = np.argmax(law, axis=1)  # the likeliest negative takes well over its uniform share
    assert np.all(counts[np.arange(n_users), top] > 1.5 * counts.sum(1) / (n_items - 2))


def _til_data():
    """8 users, 4 items, each user with exactly one non-positive item (so uniform negatives are fixed)."""
    negative = np.array([3, 2, 1, 0, 3, 2, 1, 0])
    train = np.array([[u, i] for u in range(8) for i in range(4) if i != negative[u]], np.int32)
    arrays = sampler.make_train_arrays(train, 8, 4)
    aux = {"mean_op": propagation.row_normalized(train[:, 0], train[:, 1], (8, 4))}
    return train, negative, arrays, baselines.BaselineData(arrays, None, aux)


@pytest.mark.parametrize("variant", ["ui", "mi"])
def test_til_step_learns_the_generator_by_the_lookahead_gradient_and_weights_the_update(key, variant):
    train, negative, arrays, data = _til_data()
    alpha = 0.1
    backbone = make_backbone("mf", 8, 4, dim=4, init_std=0.7, weight_decay=0.0)
    method = baselines.make_til_method(backbone, n_items=4, state_dim=8, variant=variant, hidden=8, outer="train",
                                       n_clusters=2, learning_rate=alpha, meta_learning_rate=0.05)  # fmt: skip
    state = method.init(key)
    pair_index = jnp.arange(len(train), dtype=jnp.int32)
    new_state, metrics = jax.jit(method.step)(state, key, pair_index, data)
    params = state.backbone.params
    users, pos, neg = train[:, 0], train[:, 1], negative[train[:, 0]]
    user, item = (np.asarray(params[name]) for name in ("user", "item"))
    u, i, j = user[users], item[pos], item[neg]
    if variant == "ui":  # ν_u: mean embedding of u's training positives
        interest = np.stack([item[train[train[:, 0] == v, 1]].mean(0) for v in range(8)])[users]
        states = np.concatenate([i * u + i * interest, j * u + j * interest], 1)
    else:  # c_i: centroid of i's community (the labels the step computed)
        clusters = np.asarray(new_state.clusters)
        center = np.stack([item[clusters == c].mean(0) for c in clusters])  # c_i of each item i
        c_i, c_j = center[pos], center[neg]
        states = np.concatenate([u * i + u * c_i + c_i * i, u * j + u * c_j + c_j * j], 1)

    @jax.jit
    def oracle(params, generator, new_generator, states):
        def per_sample(p):
            scores = [jnp.sum(p["user"][users] * p["item"][items], -1) for items in (pos, neg)]
            return losses.bpr_per_sample(*scores)

        def weighted_grads(weights):
            return jax.grad(lambda p: jnp.sum(weights * per_sample(p)))(params)

        def lookahead_loss(generator):  # L_out(Θ − α ∇_Θ Σ_b w_b(Φ) ℓ_b), on the same batch
            grads = weighted_grads(til_parts.generator_weights(generator, states))
            return jnp.mean(per_sample(jax.tree.map(lambda t, g: t - alpha * g, params, grads)))

        outer_loss, meta_grads = jax.value_and_grad(lookahead_loss)(generator)
        weights = til_parts.generator_weights(new_generator, states)  # the updated generator's
        return outer_loss, meta_grads, weights, weighted_grads(weights), weighted_grads(jnp.ones_like(weights))

    outer_loss, meta_grads, weights, expected, plain = oracle(
        params, state.generator.params, new_state.generator.params, jnp.asarray(states, jnp.float32)
    )
    got_meta = _first_step_gradient(new_state.generator)
    scale = max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(meta_grads))
    assert scale > 1e-4  # a real meta-gradient, and the generator moved along it
    chex.assert_trees_all_close(got_meta, meta_grads, rtol=1e-3, atol=1e-3 * scale)
    got = _first_step_gradient(new_state.backbone)
    chex.assert_trees_all_close(got, expected, rtol=1e-4, atol=1e-6)
    assert not any(np.allclose(got[name], plain[name], rtol=1e-2) for name in got)  # not plain BPR
    assert float(jnp.std(weights)) > 0.01 and abs(float(jnp.mean(weights)) - 1.0) > 0.01
    assert float(metrics["mean_weight"]) == pytest.approx(float(jnp.mean(weights)), rel=1e-5)
    assert float(metrics["outer_loss"]) == pytest.approx(float(outer_loss), rel=1e-5)
