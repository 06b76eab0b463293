"""The DVR train step: data valuation, Bernoulli selection, masked BPR update, REINFORCE update.

One jitted step does, with static shapes (docs/valuation.md gives the maths and the reasons):

  sample triplets -> per-sample BPR loss l(Theta_t) (one forward, kept as a VJP)
  -> features [sg(ego u, i, j); sg(l)] -> valuator -> Shapley values phi -> probabilities p
  -> K masks s_k ~ Bernoulli(p) ("sample" mode) or weights sg(p) ("dot" mode)
  -> K backbone gradients of sum_b s_kb l_b (the same VJP, cotangents s_k) and Adam steps
     (K = 1, or K = `num_masks` for the leave-one-out estimator; plus one step with every
     sample selected for the counterfactual estimator); training continues from mask 0
  -> validation rewards of the hypothetical models, the advantage of the chosen estimator,
     and the valuator update on
     alpha_mse MSE + alpha_pg L_pg(p, s, A) + lambda_e L_explore(p).

Estimators (`DVRConfig.estimator`): `ema` (R - EMA baseline), `counterfactual`
(R(s) - R(all selected), from the same Theta_t and Adam state), `loo` (K masks,
A_k = R_k - mean_{j != k} R_j), `delta` (R(Theta_{t+1}) - R(Theta_t)), `none` (A = R).

MSE targets (`DVRConfig.mse_target`): `batch` fits the valuator's full-batch output
v(N) to the target (the paper), `coalition` fits v(S) on the coalitions S that were
actually trained on, each to its own outcome (-sum_{b in S} l_b for the loss reward,
100 R(Theta_{t+1}(S)) for metric rewards), with the residual taken per sample of the
coalition. For every reward the valuator also fits the loss game, v(S) ~ -sum_{b in S}
l_b, on every one-sample coalition (where the valuator evaluates them in one pass) and
on random coalitions of log-uniform sizes (`loss_game_weight`, `loss_game_coalitions`).

With `reward_interval = k > 1` the valuator is updated once every k steps from the k
batches it valued (one shared reward and advantage for the window): the valuator
does not change inside the window, so the gradient pieces of each batch are accumulated
exactly as they are computed and combined when the reward arrives.

Also per step: the first-order influence of every triplet on the validation loss
(`dvr_jax.influence`, the ground truth values are checked against) and running sums of
every training pair's value, probability and influence (indexed by pair, on device).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from dvr_jax import adapter, influence, sampler, train
from dvr_jax.backbones.base import Backbone, Graph
from dvr_jax.rewards import RewardData
from dvr_jax.state import LearnerState, make_adam
from dvr_jax.typing import Array, Params, PRNGKey
from dvr_jax.valuator import Valuator, loss_target, metric_target, shapley_loss_cosine, valuator_features

MSE_TARGETS = ("coalition", "batch")


class PairValues(struct.PyTreeNode):
    """Running sums over the run of each training pair's values (indexed like TrainArrays).

    Attributes:
      value: f32[P] sum of the pair's Shapley values.
      prob: f32[P] sum of its selection probabilities.
      influence: f32[P] sum of its first-order validation influences.
      visits: f32[P] number of times the pair was in a batch.
    """

    value: Array
    prob: Array
    influence: Array
    visits: Array

    @classmethod
    def create(cls, n_pairs: int) -> "PairValues":
        return cls(*(jnp.zeros((n_pairs,), jnp.float32) for _ in range(4)))  # distinct buffers (donation)

    def add(self, index: Array, value: Array, prob: Array, infl: Array) -> "PairValues":
        return PairValues(
            self.value.at[index].add(value.astype(jnp.float32)),
            self.prob.at[index].add(prob.astype(jnp.float32)),
            self.influence.at[index].add(infl.astype(jnp.float32)),
            self.visits.at[index].add(1.0),
        )


class Accumulator(struct.PyTreeNode):
    """Valuator-gradient pieces of the batches since the last valuator update (k > 1).

    Attributes:
      known: gradient of the terms known without the reward (exploration, loss-reward MSE).
      log_prob: gradient of the mean Bernoulli log-likelihood of the drawn masks.
      pred: gradient of the MSE prediction y_b.
      pred_times_value: y_b times the gradient of y_b.
      count: f32[] batches accumulated.
    """

    known: Params
    log_prob: Params
    pred: Params
    pred_times_value: Params
    count: Array

    @classmethod
    def zeros_like(cls, params: Params) -> "Accumulator":
        zeros = [jax.tree.map(jnp.zeros_like, params) for _ in range(4)]  # distinct buffers (donation)
        return cls(*zeros, jnp.zeros((), jnp.float32))


class DVRState(struct.PyTreeNode):
    """Backbone and valuator learners, reward baseline, per-pair values, accumulator."""

    backbone: LearnerState
    valuator: LearnerState
    adapter: adapter.AdapterState
    pairs: PairValues
    accum: Accumulator | None = None


class DVRData(NamedTuple):
    """Arrays the DVR step reads: training positives, graph, validation reward data."""

    train: sampler.TrainArrays
    graph: Graph
    reward: RewardData


class DVRConfig(NamedTuple):
    """Static hyper-parameters of the DVR step."""

    reward: str = "recall"
    weight_mode: str = "sample"  # or "dot"
    pg_mode: str = "reinforce"  # or "code" (compat ablation)
    reduction: str = "sum"
    alpha_mse: float = 1.0
    alpha_pg: float = 1.0
    lambda_explore: float = 1000.0
    baseline_window: float = 20.0
    normalize_advantage: bool = True
    reward_interval: int = 1
    estimator: str = "loo"
    num_masks: int = 4
    mse_target: str = "coalition"
    influence: bool = True
    loss_game_weight: float = 1.0
    loss_game_coalitions: int = 16


def check_config(cfg: DVRConfig) -> None:
    """Raises ValueError on option combinations the step cannot run."""
    if cfg.estimator not in adapter.ESTIMATORS:
        raise ValueError(f"estimator must be one of {', '.join(adapter.ESTIMATORS)}, got {cfg.estimator!r}")
    if cfg.mse_target not in MSE_TARGETS:
        raise ValueError(f"mse_target must be one of {', '.join(MSE_TARGETS)}, got {cfg.mse_target!r}")
    if cfg.estimator == "loo" and cfg.num_masks < 2:
        raise ValueError(f"the loo estimator needs num_masks >= 2, got {cfg.num_masks}")
    if cfg.reward_interval > 1 and cfg.estimator in ("loo", "counterfactual"):
        raise ValueError(f"estimator {cfg.estimator!r} needs the reward every step (reward_interval 1)")
    if cfg.reward_interval > 1 and cfg.pg_mode == "code":
        raise ValueError("pg_mode 'code' needs the reward every step (reward_interval 1)")
    if cfg.weight_mode == "dot" and cfg.estimator in ("loo", "counterfactual"):
        raise ValueError(f"estimator {cfg.estimator!r} needs sampled masks (weight_mode 'sample')")


def create_dvr_state(
    key: PRNGKey,
    backbone: Backbone,
    valuator: Valuator,
    batch_size: int,
    *,
    n_pairs: int,
    backbone_params: Params | None = None,
    learning_rate: float = 1e-3,
    valuator_learning_rate: float = 1e-3,
    valuator_weight_decay: float = 1e-3,
    accumulate: bool = False,
) -> DVRState:
    """Initial DVR state; `backbone_params` warm-starts the backbone (fresh Adam moments)."""
    k_backbone, k_valuator = jax.random.split(key)
    params = backbone.init(k_backbone) if backbone_params is None else backbone_params
    ids = jnp.zeros((batch_size,), jnp.int32)
    feats = valuator_features(backbone.pair_features(params, ids, ids, ids), jnp.zeros((batch_size,), jnp.float32))
    vparams = valuator.init(k_valuator, feats)
    return DVRState(
        backbone=LearnerState.create(params, make_adam(learning_rate, backbone.weight_decay)),
        valuator=LearnerState.create(vparams, make_adam(valuator_learning_rate, valuator_weight_decay)),
        adapter=adapter.init_adapter(),
        pairs=PairValues.create(n_pairs),
        accum=Accumulator.zeros_like(vparams) if accumulate else None,
    )


def _tree_add(*trees):
    return jax.tree.map(lambda *xs: sum(xs[1:], xs[0]), *trees)


def _tree_scale(tree, scale):
    return jax.tree.map(lambda x: x * scale, tree)


def random_coalitions(key: PRNGKey, count: int, n_slots: int) -> Array:
    """`count` random coalitions f32[count, B] whose sizes are log-uniform on {1, ..., B}.

    Small coalitions (down to single samples) are the informative ones for a per-sample
    target, large ones keep the full-batch scale in view.
    """
    k_size, k_order = jax.random.split(key)
    sizes = jnp.floor(jnp.exp(jax.random.uniform(k_size, (count,)) * jnp.log(n_slots + 1.0)))
    sizes = jnp.clip(sizes, 1, n_slots)
    ranks = jnp.argsort(jax.random.uniform(k_order, (count, n_slots)), axis=1)
    return (ranks < sizes[:, None]).astype(jnp.float32)


def loss_game_mse(values: Array, losses: Array, masks: Array) -> Array:
    """mean_m ((v(S_m) + sum_{b in S_m} l_b) / |S_m|)^2: the loss game's fit on coalitions.

    The residual is taken per sample of the coalition, so a large coalition (whose summed
    residual has a variance growing with its size) pins the level without drowning the
    per-sample signal of the small ones.
    """
    targets = jax.vmap(lambda m: loss_target(losses, m))(masks)
    sizes = jnp.maximum(jnp.sum(masks, axis=1), 1.0)
    return jnp.mean(jnp.square((values - jax.lax.stop_gradient(targets)) / sizes))


def singleton_mse(singletons: Array, losses: Array) -> Array:
    """mean_b (v({b}) + l_b)^2: the loss game on every one-sample coalition."""
    return jnp.mean(jnp.square(singletons + jax.lax.stop_gradient(losses)))


def loss_game_grads(
    valuator: Valuator, vparams: Params, feats: Array, losses: Array, key: PRNGKey, *, weight: float, coalitions: int
) -> Params:
    """Valuator gradient of the loss game, weight * (L_coalitions + L_singletons).

    The loss game's target -sum_{b in S} l_b is known for any coalition S, so it is fitted
    on `coalitions` random coalitions of log-uniform sizes and, when the valuator can
    evaluate them in one pass, on every one-sample coalition.
    """
    if weight == 0:
        return jax.tree.map(jnp.zeros_like, vparams)
    masks = random_coalitions(key, coalitions, losses.shape[0])

    def game_loss(vp):
        values = jax.vmap(lambda m: valuator.output(vp, feats, m))(masks)
        total = loss_game_mse(values, losses, masks)
        if valuator.singletons is not None:
            total = total + singleton_mse(valuator.singletons(vp, feats), losses)
        return weight * total

    return jax.grad(game_loss)(vparams)


def make_dvr_step(backbone: Backbone, valuator: Valuator, reward_fn: Callable, cfg: DVRConfig | None = None):
    """Builds the DVR step `step(state, key, pair_index, data) -> (state, metrics)`.

    Args:
      backbone: any backbone.
      valuator: from `dvr_jax.valuator.make_valuator`.
      reward_fn: `reward_fn(params, graph, reward_data) -> f32[]` from `dvr_jax.rewards`.
      cfg: static hyper-parameters (default `DVRConfig()`).

    Returns:
      The pure step; `key` is the run key (the step folds in the backbone step count).
      metrics: scalars (loss, reward, advantage, mean_prob, selected, cosine, null_fraction,
      zero_fraction, tied_fraction, spearman_influence, finite, reward_due) and per-sample
      arrays (users, pos_items, neg_items, shapley, probs, mask, influence).
    """
    cfg = DVRConfig() if cfg is None else cfg
    check_config(cfg)
    sampled = cfg.weight_mode == "sample"
    n_masks = cfg.num_masks if cfg.estimator == "loo" else 1
    counterfactual = cfg.estimator == "counterfactual"
    coalition = cfg.mse_target == "coalition" and sampled
    interval = cfg.reward_interval

    def rewards_of(params_stack, graph, reward_data):
        return jax.lax.map(lambda p: reward_fn(p, graph, reward_data), params_stack)

    def step(state: DVRState, key: PRNGKey, pair_index: Array, data: DVRData):
        k_negative, k_select, k_dropout = jax.random.split(jax.random.fold_in(key, state.backbone.step), 3)
        users, pos_items, neg_items = sampler.sample_triplets(k_negative, data.train, pair_index)
        params = state.backbone.params

        def backbone_losses(p):
            return train.per_sample_bpr(p, backbone, data.graph, users, pos_items, neg_items, k_dropout)

        (per_sample, _), backbone_vjp = jax.vjp(backbone_losses, params)
        feats = valuator_features(backbone.pair_features(params, users, pos_items, neg_items), per_sample)
        batch = per_sample.shape[0]

        def value(vparams):
            out = valuator.forward(vparams, feats)
            return (out.prediction, valuator.probabilities(vparams, out.shapley)), out

        (prediction, probs), valuator_vjp, out = jax.vjp(value, state.valuator.params, has_aux=True)
        fixed_probs = jax.lax.stop_gradient(probs)
        if sampled:
            masks = jax.vmap(adapter.select, in_axes=(0, None))(jax.random.split(k_select, n_masks), fixed_probs)
        else:
            masks = fixed_probs[None]
        # Coalition outputs v(s_k) of the drawn masks, kept as a second VJP.
        coalition_preds, coalition_vjp = jax.vjp(
            lambda vp: jax.vmap(lambda m: valuator.output(vp, feats, m))(masks), state.valuator.params
        )

        game_grads = loss_game_grads(valuator, state.valuator.params, feats, per_sample, jax.random.fold_in(k_select, 1),
                                     weight=cfg.loss_game_weight, coalitions=cfg.loss_game_coalitions)  # fmt: skip
        coalition_sizes = jnp.maximum(jnp.sum(masks, axis=1), 1.0)

        # Hypothetical backbone steps: one per mask (+ all selected for the counterfactual).
        weights = jnp.concatenate([masks, jnp.ones((1, batch), masks.dtype)]) if counterfactual else masks
        scale = 1.0 if cfg.reduction == "sum" else 1.0 / batch
        one = jnp.ones((), per_sample.dtype)
        if weights.shape[0] == 1:
            (grads,) = backbone_vjp((weights[0] * scale, one))
            learners = jax.tree.map(lambda x: x[None], state.backbone.apply_gradients(grads))
        else:
            learners = jax.vmap(lambda w: state.backbone.apply_gradients(backbone_vjp((w * scale, one))[0]))(weights)
        new_backbone = jax.tree.map(lambda x: x[0], learners)

        if cfg.influence:
            r = data.reward
            infl = influence.batch_influence(
                lambda p: backbone_losses(p)[0],
                lambda p: influence.validation_loss(backbone, p, data.graph, r.users, r.pos_items, r.neg_items),
                params,
            )
        else:
            infl = jnp.zeros_like(per_sample)

        def coalition_targets(rewards):
            if cfg.reward == "loss":
                return jax.vmap(lambda m: loss_target(per_sample, m))(masks)
            return metric_target(rewards[:n_masks])

        def head_loss(pred, p, coal, adv, rewards):
            """Valuator loss as a function of its forward outputs (rewards fixed)."""
            total = cfg.lambda_explore * adapter.exploration_penalty(p)
            if coalition:
                preds, targets, sizes = coal, coalition_targets(rewards), coalition_sizes
                if counterfactual:
                    preds = jnp.concatenate([preds, pred[None]])
                    targets = jnp.concatenate([targets, (loss_target(per_sample) if cfg.reward == "loss"
                                                         else metric_target(rewards[-1]))[None]])  # fmt: skip
                    sizes = jnp.concatenate([sizes, jnp.full((1,), batch, sizes.dtype)])
                residual = (preds - jax.lax.stop_gradient(targets)) / sizes  # per sample of the coalition
                total = total + cfg.alpha_mse * jnp.mean(jnp.square(residual))
            else:
                target = loss_target(per_sample) if cfg.reward == "loss" else metric_target(rewards[0])
                total = total + cfg.alpha_mse * jnp.square(pred - target)
            if sampled and cfg.pg_mode == "reinforce":
                log_probs = jax.vmap(lambda m, a: adapter.policy_loss(p, m, a))(masks, adv)
                total = total + cfg.alpha_pg * jnp.mean(log_probs)
            elif cfg.pg_mode == "code":
                total = total + cfg.alpha_pg * adapter.code_policy_loss(p, rewards[0])
            return total

        def valuator_grads(cotangents):
            ct_pred, ct_probs, ct_coal = cotangents
            (g_value,) = valuator_vjp((ct_pred, ct_probs))
            (g_coal,) = coalition_vjp(ct_coal)
            return _tree_add(g_value, g_coal)

        def advantages(rewards, before, adapter_state):
            if cfg.estimator == "ema":
                adv, new = adapter.advantage(adapter_state, rewards[0], window=cfg.baseline_window,
                                             normalize=cfg.normalize_advantage)  # fmt: skip
                return adv[None], new
            if cfg.estimator == "none":
                return rewards[:1], adapter_state._replace(count=adapter_state.count + 1)
            if cfg.estimator == "loo":
                raw = adapter.loo_advantages(rewards)
            elif cfg.estimator == "counterfactual":
                raw = (rewards[0] - rewards[1])[None]
            else:  # delta
                raw = (rewards[0] - before)[None]
            return adapter.scaled_advantage(adapter_state, raw, window=cfg.baseline_window,
                                            normalize=cfg.normalize_advantage)  # fmt: skip

        def reward_before():
            if cfg.estimator != "delta":
                return jnp.zeros((), jnp.float32)
            return reward_fn(params, data.graph, data.reward)

        if interval == 1:
            rewards = rewards_of(learners.params, data.graph, data.reward)
            adv, new_adapter = advantages(rewards, reward_before(), state.adapter)
            cotangents = jax.grad(head_loss, argnums=(0, 1, 2))(prediction, probs, coalition_preds, adv, rewards)
            new_valuator = state.valuator.apply_gradients(_tree_add(valuator_grads(cotangents), game_grads))
            new_accum, due, reward, mean_adv = state.accum, jnp.asarray(True), rewards[0], jnp.mean(adv)
        else:
            new_valuator, new_adapter, new_accum, due, reward, mean_adv = _accumulate(
                state, data, params, prediction, probs, coalition_preds, masks, per_sample,
                learners, rewards_of, advantages, valuator_grads, reward_fn, game_grads,
            )  # fmt: skip

        pairs = state.pairs.add(pair_index, out.shapley, fixed_probs, infl)
        finite = jnp.isfinite(jnp.sum(per_sample)) & jnp.isfinite(reward) & jnp.all(jnp.isfinite(out.shapley))
        metrics = {
            "loss": jnp.mean(per_sample), "reward": reward, "advantage": mean_adv, "mean_prob": jnp.mean(probs),
            "selected": jnp.mean(masks[0]), "cosine": shapley_loss_cosine(out.shapley, per_sample),
            "null_fraction": out.null_fraction, "zero_fraction": out.zero_fraction,
            "tied_fraction": out.tied_fraction, "spearman_influence": influence.spearman(out.shapley, infl),
            "finite": finite, "reward_due": due,
            "users": users, "pos_items": pos_items, "neg_items": neg_items,
            "shapley": out.shapley, "probs": probs, "mask": masks[0], "influence": infl,
        }  # fmt: skip
        return DVRState(new_backbone, new_valuator, new_adapter, pairs, new_accum), metrics

    def _accumulate(state, data, params, prediction, probs, coalition_preds, masks, per_sample,
                    learners, rewards_of, advantages, valuator_grads, reward_fn, game_grads):  # fmt: skip
        """k > 1: add this batch's gradient pieces; update the valuator at the window's end."""
        step_index = state.backbone.step
        zeros_coal = jnp.zeros_like(coalition_preds)
        zero_pred, zero_probs = jnp.zeros_like(prediction), jnp.zeros_like(probs)
        known_mse = coalition and cfg.reward == "loss"
        coalition_sizes = jnp.maximum(jnp.sum(masks, axis=1), 1.0)

        def known(pred, p, coal):
            total = cfg.lambda_explore * adapter.exploration_penalty(p)
            if known_mse:
                targets = jax.vmap(lambda m: loss_target(per_sample, m))(masks)
                total = total + cfg.alpha_mse * jnp.mean(jnp.square((coal - targets) / coalition_sizes))
            elif cfg.reward == "loss":
                total = total + cfg.alpha_mse * jnp.square(pred - loss_target(per_sample))
            return total

        g_known = valuator_grads(jax.grad(known, argnums=(0, 1, 2))(prediction, probs, coalition_preds))
        g_known = _tree_add(g_known, game_grads)
        if sampled and cfg.pg_mode == "reinforce":
            log_prob = jax.grad(lambda p: jnp.mean(adapter.bernoulli_log_prob(p, masks[0])))(probs)
            g_log_prob = valuator_grads((zero_pred, log_prob, zeros_coal))
        else:
            g_log_prob = jax.tree.map(jnp.zeros_like, g_known)
        if coalition:  # the residual is per sample of the coalition: ((y_b - y*) / n)^2
            pred_value, inv_size2 = coalition_preds[0], 1.0 / jnp.square(coalition_sizes[0])
            g_pred = valuator_grads((zero_pred, zero_probs, zeros_coal.at[0].set(inv_size2)))
        else:
            pred_value = prediction
            g_pred = valuator_grads((jnp.ones_like(prediction), zero_probs, zeros_coal))
        accum = state.accum
        accum = Accumulator(
            _tree_add(accum.known, g_known), _tree_add(accum.log_prob, g_log_prob), _tree_add(accum.pred, g_pred),
            _tree_add(accum.pred_times_value, _tree_scale(g_pred, pred_value)), accum.count + 1.0,
        )  # fmt: skip
        adapter_state = state.adapter
        if cfg.estimator == "delta":
            start = jax.lax.cond(step_index % interval == 0, lambda: reward_fn(params, data.graph, data.reward),
                                 lambda: adapter_state.start_reward)  # fmt: skip
            adapter_state = adapter_state._replace(start_reward=start)
        due = step_index % interval == interval - 1

        def update(_):
            rewards = rewards_of(learners.params, data.graph, data.reward)
            adv, new_adapter = advantages(rewards, adapter_state.start_reward, adapter_state)
            grads = accum.known
            if cfg.reward != "loss":  # metric MSE: sum_b (y_b - y*)^2, y* known only now
                target = metric_target(rewards[0])
                mse = _tree_add(accum.pred_times_value, _tree_scale(accum.pred, -target))
                grads = _tree_add(grads, _tree_scale(mse, 2.0 * cfg.alpha_mse))
            grads = _tree_add(grads, _tree_scale(accum.log_prob, -cfg.alpha_pg * adv[0]))
            grads = _tree_scale(grads, 1.0 / accum.count)
            fresh = Accumulator.zeros_like(accum.known)
            return state.valuator.apply_gradients(grads), new_adapter, fresh, rewards[0], adv[0]

        def wait(_):
            zero = jnp.zeros((), jnp.float32)
            return state.valuator, adapter_state, accum, zero, zero

        new_valuator, new_adapter, new_accum, reward, adv = jax.lax.cond(due, update, wait, None)
        return new_valuator, new_adapter, new_accum, due, reward, adv

    return step
