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

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import struct

from dvr_jax import adapter, influence, sampler
from dvr_jax.backbones.base import Backbone
from dvr_jax.state import LearnerState, make_adam
from dvr_jax.step import (
    Context,
    GainedRows,
    StateLayout,
    StepData,
    Weighter,
    make_learner_init,
    make_step,
    uniform_sampler,
)
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
    def create(cls, n_pairs: int) -> PairValues:
        return cls(*(jnp.zeros((n_pairs,), jnp.float32) for _ in range(4)))  # distinct buffers (donation)

    def add(self, index: Array, value: Array, prob: Array, infl: Array) -> PairValues:
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
    def zeros_like(cls, params: Params) -> Accumulator:
        zeros = [jax.tree.map(jnp.zeros_like, params) for _ in range(4)]  # distinct buffers (donation)
        return cls(*zeros, jnp.zeros((), jnp.float32))


class DVRState(struct.PyTreeNode):
    """Backbone and valuator learners, reward baseline, per-pair values, accumulator."""

    backbone: LearnerState
    valuator: LearnerState
    adapter: adapter.AdapterState
    pairs: PairValues
    accum: Accumulator | None = None


DVRData = StepData  # the shared step data; `aux` holds the validation `RewardData`


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
    loss_game_weight: float = 10.0
    loss_game_coalitions: int = 16
    freeze_encoder: bool = False  # the released code's frozen sample encoder (compat ablation)
    loss_reward: str = "valid"  # or "batch": -sum of the pre-update batch losses (the released code's); loss only
    loss_negatives: int = 16  # negatives per pair in the loss the valuator reads and fits (1: the triplet's own)
    update_batch: int = 0  # 0: the weighted sum; n > 0: each row's loss gradient times n / its weight


LOSS_REWARDS = ("valid", "batch")


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
    if cfg.loss_reward not in LOSS_REWARDS:
        raise ValueError(f"loss_reward must be one of {', '.join(LOSS_REWARDS)}, got {cfg.loss_reward!r}")
    if cfg.loss_negatives < 1:
        raise ValueError(f"loss_negatives must be >= 1, got {cfg.loss_negatives}")
    if cfg.weight_mode == "dot" and cfg.estimator in ("loo", "counterfactual"):
        raise ValueError(f"estimator {cfg.estimator!r} needs sampled masks (weight_mode 'sample')")
    if cfg.update_batch < 0:
        raise ValueError(f"update_batch must be >= 0, got {cfg.update_batch}")


def row_gains(rows: Array, update_batch: int) -> Array:
    """The gain of each weight row that makes its loss count as `update_batch` pairs: n / Σ_b w_b.

    The backbone's Adam adds the coupled L2 term once per step whatever the loss, so a
    summed loss over fewer pairs (a selected half, a smaller batch) makes the L2 pull
    relatively stronger. With the gain (applied to the row's loss gradient,
    `dvr_jax.step.GainedRows`) the selected pairs weigh against the L2 term as a full BPR batch of
    n pairs does (docs/algorithm.md §5). A row without weight gets gain 1 (its loss is 0).

    Args:
      rows: f32[M, B] masks or weights, >= 0.
      update_batch: n > 0.

    Returns:
      f32[M].
    """
    total = jnp.sum(rows, axis=1)
    return jnp.where(total > 0, update_batch / jnp.where(total > 0, total, 1.0), 1.0)


def valuator_parts(
    key: PRNGKey,
    backbone: Backbone,
    valuator: Valuator,
    params: Params,
    batch_size: int,
    *,
    n_pairs: int,
    valuator_learning_rate: float = 1e-3,
    valuator_weight_decay: float = 1e-3,
    accumulate: bool = False,
    freeze_encoder: bool = False,
) -> tuple:
    """The DVR weighter's state: (valuator learner, adapter state, pair values, accumulator or None).

    `freeze_encoder`: the valuator's optimiser leaves its `encoder` subtree at its initial
    values (no update, no weight decay), as the released code's detached encoder does.
    """
    ids = jnp.zeros((batch_size,), jnp.int32)
    feats = valuator_features(backbone.pair_features(params, ids, ids, ids), jnp.zeros((batch_size,), jnp.float32))
    vparams = valuator.init(key, feats)
    optimizer = make_adam(valuator_learning_rate, valuator_weight_decay)
    if freeze_encoder:
        labels = {name: jax.tree.map(lambda _, n=name: "frozen" if n == "encoder" else "trained", sub)
                  for name, sub in vparams.items()}  # fmt: skip
        optimizer = optax.multi_transform({"trained": optimizer, "frozen": optax.set_to_zero()}, labels)
    return (
        LearnerState.create(vparams, optimizer),
        adapter.init_adapter(),
        PairValues.create(n_pairs),
        Accumulator.zeros_like(vparams) if accumulate else None,
    )


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
    freeze_encoder: bool = False,
) -> DVRState:
    """Initial DVR state; `backbone_params` warm-starts the backbone (fresh Adam moments)."""
    k_backbone, k_valuator = jax.random.split(key)
    learner = make_learner_init(backbone, learning_rate=learning_rate, init_params=backbone_params)(k_backbone)
    parts = valuator_parts(k_valuator, backbone, valuator, learner.params, batch_size, n_pairs=n_pairs,
                           valuator_learning_rate=valuator_learning_rate,
                           valuator_weight_decay=valuator_weight_decay, accumulate=accumulate,
                           freeze_encoder=freeze_encoder)  # fmt: skip
    return DVR_LAYOUT.join(learner, None, parts)


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
    return (ranks.astype(jnp.float32) < sizes[:, None]).astype(jnp.float32)


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


def pair_losses(backbone: Backbone, ctx: Context, key: PRNGKey, n_negatives: int) -> Array:
    """f32[B]: each pair's BPR loss averaged over its triplet's negative and n - 1 fresh ones.

    With `n_negatives = 1` this is the triplet's own loss l_b (the paper's valuator input).
    More negatives (uniform over the user's non-positives, at Theta_t, no gradient) make it
    an estimate of the pair's expected loss under the sampler, the quantity that tells an
    implausible pair from a plausible one, with less of the draw of one negative in it.
    The fresh negatives are scored on one more `encode` at Theta_t (for graph backbones one
    more propagation) without dropout; the triplet's own term is the step's forward.
    """
    per_sample = ctx.forward.per_sample
    if n_negatives == 1:
        return per_sample
    batch = ctx.batch
    reps = jax.lax.stop_gradient(backbone.encode(ctx.learner.params, ctx.data.graph))
    users = jnp.repeat(batch.users, n_negatives - 1)
    negatives = sampler.sample_uniform_negatives(key, ctx.data.train, users)
    neg = backbone.score_pairs(reps, users, negatives).reshape(batch.users.shape[0], n_negatives - 1)
    extra = -jax.nn.log_sigmoid(jax.lax.stop_gradient(ctx.forward.pos)[:, None] - neg)
    return jax.lax.stop_gradient((per_sample + jnp.sum(extra, axis=1)) / n_negatives)


DVR_STREAMS = ("sample", "select", "dropout")  # the step's random streams, in split order
DVR_LAYOUT = StateLayout(
    lambda state: (state.backbone, None, (state.valuator, state.adapter, state.pairs, state.accum)),
    lambda learner, sampler_state, parts: DVRState(learner, *parts),
)


class _Valued(NamedTuple):
    """What the DVR weighter computed before the backbone steps (the valuator's forward, kept as VJPs)."""

    feats: Array
    losses: Array
    prediction: Array
    probs: Array
    fixed_probs: Array
    out: Any
    valuator_vjp: Callable
    masks: Array
    coalition_preds: Array
    coalition_vjp: Callable
    game_grads: Params


def make_dvr_weighter(
    backbone: Backbone,
    valuator: Valuator,
    reward_fn: Callable,
    cfg: DVRConfig | None = None,
    *,
    batch_size: int | None = None,
    n_pairs: int | None = None,
    valuator_learning_rate: float = 1e-3,
    valuator_weight_decay: float = 1e-3,
    constrain: Callable[[Params], Params] | None = None,
) -> Weighter:
    """DVR as a `dvr_jax.step.Weighter`: valuator-drawn masks as weight rows, REINFORCE update.

    `weights` values the batch (one valuator forward, kept as a VJP) and returns the K masks
    (plus an all-ones row for the counterfactual estimator) as f32[M, B]; the shared step
    takes one hypothetical Adam step per row through the backbone's one VJP; `update` rewards
    those models and trains the valuator (docs/algorithm.md §4-7). `batch_size` and `n_pairs`
    size the state made by `init` (the valuator's init batch and the per-pair running values).
    `constrain` is applied to the backbone-params-shaped gradient the step computes besides
    its own update (the influence direction): `dvr_jax.sharding.table_constraint` keeps it
    split like tables split over a "model" axis; None leaves it to the partitioner.
    """
    cfg = DVRConfig() if cfg is None else cfg
    check_config(cfg)
    sampled = cfg.weight_mode == "sample"
    n_masks = cfg.num_masks if cfg.estimator == "loo" else 1
    counterfactual = cfg.estimator == "counterfactual"
    coalition = cfg.mse_target == "coalition" and sampled
    interval = cfg.reward_interval

    def init(key: PRNGKey, params: Params) -> tuple:
        if batch_size is None or n_pairs is None:
            raise ValueError("the DVR weighter's init needs batch_size and n_pairs")
        return valuator_parts(key, backbone, valuator, params, batch_size, n_pairs=n_pairs,
                              valuator_learning_rate=valuator_learning_rate,
                              valuator_weight_decay=valuator_weight_decay, accumulate=interval > 1,
                              freeze_encoder=cfg.freeze_encoder)  # fmt: skip

    batch_loss_reward = cfg.reward == "loss" and cfg.loss_reward == "batch"

    def reward_at(params, ctx: Context):
        """The reward of one model; the batch loss reward is the pre-update batch's, whatever the model."""
        if batch_loss_reward:
            return -jnp.sum(ctx.forward.per_sample)
        return reward_fn(params, ctx.data.graph, ctx.data.aux)

    def rewards_of(params_stack, ctx: Context):
        return jax.lax.map(lambda p: reward_at(p, ctx), params_stack)

    def weights(parts, ctx: Context):
        valuator_state = parts[0]
        batch, k_select = ctx.batch, ctx.streams["select"]
        losses = pair_losses(backbone, ctx, jax.random.fold_in(k_select, 2), cfg.loss_negatives)
        pair_feats = backbone.pair_features(ctx.learner.params, batch.users, batch.pos_items, batch.neg_items)
        feats = valuator_features(pair_feats, losses)

        def value(vparams):
            out = valuator.forward(vparams, feats)
            return (out.prediction, valuator.probabilities(vparams, out.shapley)), out

        (prediction, probs), valuator_vjp, out = jax.vjp(value, valuator_state.params, has_aux=True)
        fixed_probs = jax.lax.stop_gradient(probs)
        if sampled:
            masks = jax.vmap(adapter.select, in_axes=(0, None))(jax.random.split(k_select, n_masks), fixed_probs)
        else:
            masks = fixed_probs[None]
        # Coalition outputs v(s_k) of the drawn masks, kept as a second VJP.
        coalition_preds, coalition_vjp = jax.vjp(
            lambda vp: jax.vmap(lambda m: valuator.output(vp, feats, m))(masks), valuator_state.params
        )
        game_grads = loss_game_grads(valuator, valuator_state.params, feats, losses,
                                     jax.random.fold_in(k_select, 1), weight=cfg.loss_game_weight,
                                     coalitions=cfg.loss_game_coalitions)  # fmt: skip
        # Hypothetical backbone steps: one per mask (+ all selected for the counterfactual).
        rows = jnp.concatenate([masks, jnp.ones((1, masks.shape[1]), masks.dtype)]) if counterfactual else masks
        if cfg.update_batch:
            rows = GainedRows(rows, row_gains(rows, cfg.update_batch))
        valued = _Valued(feats, losses, prediction, probs, fixed_probs, out, valuator_vjp, masks, coalition_preds,
                         coalition_vjp, game_grads)  # fmt: skip
        return rows, valued

    def update(parts, v: _Valued, learners, ctx: Context):
        valuator_state, adapter_state, pair_values, accum = parts
        data, params, per_sample, losses = ctx.data, ctx.learner.params, ctx.forward.per_sample, v.losses
        batch, masks, probs = per_sample.shape[0], v.masks, v.probs
        coalition_sizes = jnp.maximum(jnp.sum(masks, axis=1), 1.0)
        if cfg.influence:
            r = data.aux
            infl = influence.batch_influence(
                lambda p: ctx.forward.losses(p)[0],
                lambda p: influence.validation_loss(backbone, p, data.graph, r.users, r.pos_items, r.neg_items),
                params,
                constrain,
            )
        else:
            infl = jnp.zeros_like(per_sample)

        def coalition_targets(rewards):
            if cfg.reward == "loss":
                return jax.vmap(lambda m: loss_target(losses, m))(masks)
            return metric_target(rewards[:n_masks])

        def head_loss(pred, p, coal, adv, rewards):
            """Valuator loss as a function of its forward outputs (rewards fixed)."""
            total = cfg.lambda_explore * adapter.exploration_penalty(p)
            if coalition:
                preds, targets, sizes = coal, coalition_targets(rewards), coalition_sizes
                if counterfactual:
                    preds = jnp.concatenate([preds, pred[None]])
                    targets = jnp.concatenate([targets, (loss_target(losses) if cfg.reward == "loss"
                                                         else metric_target(rewards[-1]))[None]])  # fmt: skip
                    sizes = jnp.concatenate([sizes, jnp.full((1,), batch, sizes.dtype)])
                residual = (preds - jax.lax.stop_gradient(targets)) / sizes  # per sample of the coalition
                total = total + cfg.alpha_mse * jnp.mean(jnp.square(residual))
            else:
                target = loss_target(losses) if cfg.reward == "loss" else metric_target(rewards[0])
                total = total + cfg.alpha_mse * jnp.square(pred - target)
            if sampled and cfg.pg_mode == "reinforce":
                log_probs = jax.vmap(lambda m, a: adapter.policy_loss(p, m, a))(masks, adv)
                total = total + cfg.alpha_pg * jnp.mean(log_probs)
            elif cfg.pg_mode == "code":
                total = total + cfg.alpha_pg * adapter.code_policy_loss(p, rewards[0])
            return total

        def valuator_grads(cotangents):
            ct_pred, ct_probs, ct_coal = cotangents
            (g_value,) = v.valuator_vjp((ct_pred, ct_probs))
            (g_coal,) = v.coalition_vjp(ct_coal)
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
            return reward_at(params, ctx)

        if interval == 1:
            rewards = rewards_of(learners.params, ctx)
            adv, new_adapter = advantages(rewards, reward_before(), adapter_state)
            cotangents = jax.grad(head_loss, argnums=(0, 1, 2))(v.prediction, probs, v.coalition_preds, adv, rewards)
            new_valuator = valuator_state.apply_gradients(_tree_add(valuator_grads(cotangents), v.game_grads))
            new_accum, due, reward, mean_adv = accum, jnp.asarray(True), rewards[0], jnp.mean(adv)
        else:
            new_valuator, new_adapter, new_accum, due, reward, mean_adv = _accumulate(
                ctx, (valuator_state, adapter_state, accum), v, learners, rewards_of, advantages, valuator_grads,
            )  # fmt: skip

        out = v.out
        pairs = pair_values.add(ctx.pair_index, out.shapley, v.fixed_probs, infl)
        finite = jnp.isfinite(jnp.sum(per_sample)) & jnp.isfinite(reward) & jnp.all(jnp.isfinite(out.shapley))
        metrics = {
            "reward": reward, "advantage": mean_adv, "mean_prob": jnp.mean(probs),
            "selected": jnp.mean(masks[0]), "cosine": shapley_loss_cosine(out.shapley, losses),
            "null_fraction": out.null_fraction, "zero_fraction": out.zero_fraction,
            "tied_fraction": out.tied_fraction, "spearman_influence": influence.spearman(out.shapley, infl),
            "finite": finite, "reward_due": due,
            "users": ctx.batch.users, "pos_items": ctx.batch.pos_items, "neg_items": ctx.batch.neg_items,
            "shapley": out.shapley, "probs": probs, "mask": masks[0], "influence": infl,
        }  # fmt: skip
        return (new_valuator, new_adapter, pairs, new_accum), metrics

    def _accumulate(ctx, parts, v, learners, rewards_of, advantages, valuator_grads):
        """k > 1: add this batch's gradient pieces; update the valuator at the window's end."""
        valuator_state, adapter_state, accum = parts
        params, losses, masks = ctx.learner.params, v.losses, v.masks
        prediction, probs, coalition_preds = v.prediction, v.probs, v.coalition_preds
        step_index = ctx.count
        zeros_coal = jnp.zeros_like(coalition_preds)
        zero_pred, zero_probs = jnp.zeros_like(prediction), jnp.zeros_like(probs)
        known_mse = coalition and cfg.reward == "loss"
        coalition_sizes = jnp.maximum(jnp.sum(masks, axis=1), 1.0)

        def known(pred, p, coal):
            total = cfg.lambda_explore * adapter.exploration_penalty(p)
            if known_mse:
                targets = jax.vmap(lambda m: loss_target(losses, m))(masks)
                total = total + cfg.alpha_mse * jnp.mean(jnp.square((coal - targets) / coalition_sizes))
            elif cfg.reward == "loss":
                total = total + cfg.alpha_mse * jnp.square(pred - loss_target(losses))
            return total

        g_known = valuator_grads(jax.grad(known, argnums=(0, 1, 2))(prediction, probs, coalition_preds))
        g_known = _tree_add(g_known, v.game_grads)
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
        accum = Accumulator(
            _tree_add(accum.known, g_known), _tree_add(accum.log_prob, g_log_prob), _tree_add(accum.pred, g_pred),
            _tree_add(accum.pred_times_value, _tree_scale(g_pred, pred_value)), accum.count + 1.0,
        )  # fmt: skip
        if cfg.estimator == "delta":
            start = jax.lax.cond(step_index % interval == 0, lambda: reward_at(params, ctx),
                                 lambda: adapter_state.start_reward)  # fmt: skip
            adapter_state = adapter_state._replace(start_reward=start)
        due = step_index % interval == interval - 1

        def apply(_):
            rewards = rewards_of(learners.params, ctx)
            adv, new_adapter = advantages(rewards, adapter_state.start_reward, adapter_state)
            grads = accum.known
            if cfg.reward != "loss":  # metric MSE: sum_b (y_b - y*)^2, y* known only now
                target = metric_target(rewards[0])
                mse = _tree_add(accum.pred_times_value, _tree_scale(accum.pred, -target))
                grads = _tree_add(grads, _tree_scale(mse, 2.0 * cfg.alpha_mse))
            grads = _tree_add(grads, _tree_scale(accum.log_prob, -cfg.alpha_pg * adv[0]))
            grads = _tree_scale(grads, 1.0 / accum.count)
            fresh = Accumulator.zeros_like(accum.known)
            return valuator_state.apply_gradients(grads), new_adapter, fresh, rewards[0], adv[0]

        def wait(_):
            zero = jnp.zeros((), jnp.float32)
            return valuator_state, adapter_state, accum, zero, zero

        new_valuator, new_adapter, new_accum, reward, adv = jax.lax.cond(due, apply, wait, None)
        return new_valuator, new_adapter, new_accum, due, reward, adv

    return Weighter(weights, update, init)


def make_dvr_step(backbone: Backbone, valuator: Valuator, reward_fn: Callable, cfg: DVRConfig | None = None):
    """Builds the DVR step `step(state, key, pair_index, data) -> (state, metrics)`.

    The shared weighted-BPR step (`dvr_jax.step.make_step`) with uniform negatives and the DVR
    weighter (`make_dvr_weighter`), on a `DVRState`.

    Args:
      backbone: any backbone.
      valuator: from `dvr_jax.valuator.make_valuator`.
      reward_fn: `reward_fn(params, graph, reward_data) -> f32[]` from `dvr_jax.rewards`.
      cfg: static hyper-parameters (default `DVRConfig()`).

    Returns:
      The pure step; `key` is the run key (the step folds in the backbone step count); `data`
      is a `StepData` whose `aux` is the `RewardData`.
      metrics: scalars (loss, reward, advantage, mean_prob, selected, cosine, null_fraction,
      zero_fraction, tied_fraction, spearman_influence, finite, reward_due) and per-sample
      arrays (users, pos_items, neg_items, shapley, probs, mask, influence).
    """
    cfg = DVRConfig() if cfg is None else cfg
    weighter = make_dvr_weighter(backbone, valuator, reward_fn, cfg)
    return make_step(backbone, uniform_sampler(), weighter, reduction=cfg.reduction, streams=DVR_STREAMS,
                     layout=DVR_LAYOUT)  # fmt: skip
