"""The DVR train step: data valuation, Bernoulli selection, masked BPR update, REINFORCE update.

Reference: DVR paper §5 and ALGORITHMS.md §2.7. One jitted step does, with static shapes:

  sample triplets -> per-sample BPR loss l(Theta_t) (one forward, kept as a VJP)
  -> features [sg(ego u, i, j); sg(l)] -> encoder -> Harsanyi read-out -> Shapley phi
  -> probabilities p -> mask s ~ Bernoulli(p) ("sample") or weights sg(p) ("dot")
  -> backbone gradient of sum_b s_b l_b + regulariser (the VJP with cotangent s) -> Adam
  -> every `reward_interval` steps: validation reward R(Theta_{t+1}) on device,
     advantage against the EMA baseline, and the valuator update on
     alpha_mse (y_G - y*)^2 + alpha_pg L_pg(p, s, A) + lambda_e L_explore(p)
     (the valuator forward is also kept as a VJP, so it runs once per step).

The backbone regulariser (LightGCN / MGCF batch L2) is applied to the whole batch, as in
plain BPR: selection reweights the data term sum_b s_b l_b of ALGORITHMS §2.7 only.
The valuator is updated from the current batch only; ALGORITHMS §2.5's accumulation over k
batches for `reward_interval > 1` is not implemented (k = 1 is the default and the
behaviour of the released code).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from dvr_jax import adapter, sampler, train
from dvr_jax.backbones.base import Backbone, Graph
from dvr_jax.rewards import RewardData
from dvr_jax.state import LearnerState, make_adam
from dvr_jax.typing import Array, Params, PRNGKey
from dvr_jax.valuator import Valuator, loss_target, metric_target, shapley_loss_cosine, valuator_features


class DVRState(struct.PyTreeNode):
    """Backbone and valuator learners plus the reward baseline."""

    backbone: LearnerState
    valuator: LearnerState
    adapter: adapter.AdapterState


class DVRData(NamedTuple):
    """Arrays the DVR step reads: training positives, graph, validation reward data."""

    train: sampler.TrainArrays
    graph: Graph
    reward: RewardData


class DVRConfig(NamedTuple):
    """Static hyper-parameters of the DVR step (ALGORITHMS Appendix A defaults)."""

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


def create_dvr_state(
    key: PRNGKey,
    backbone: Backbone,
    valuator: Valuator,
    batch_size: int,
    *,
    backbone_params: Params | None = None,
    learning_rate: float = 1e-3,
    valuator_learning_rate: float = 1e-3,
    valuator_weight_decay: float = 1e-3,
) -> DVRState:
    """Initial DVR state; `backbone_params` warm-starts the backbone (fresh Adam moments)."""
    k_backbone, k_valuator = jax.random.split(key)
    params = backbone.init(k_backbone) if backbone_params is None else backbone_params
    ids = jnp.zeros((batch_size,), jnp.int32)
    feats = valuator_features(backbone.pair_features(params, ids, ids, ids), jnp.zeros((batch_size,), jnp.float32))
    return DVRState(
        backbone=LearnerState.create(params, make_adam(learning_rate, backbone.weight_decay)),
        valuator=LearnerState.create(
            valuator.init(k_valuator, feats), make_adam(valuator_learning_rate, valuator_weight_decay)
        ),
        adapter=adapter.init_adapter(),
    )


def make_dvr_step(backbone: Backbone, valuator: Valuator, reward_fn: Callable, cfg: DVRConfig | None = None):
    """Builds the DVR step `step(state, key, pair_index, data) -> (state, metrics)`.

    Args:
      backbone: any backbone.
      valuator: from `dvr_jax.valuator.make_valuator` (its B must equal the batch size).
      reward_fn: `reward_fn(params, graph, reward_data) -> f32[]` from `dvr_jax.rewards`.
      cfg: static hyper-parameters (default `DVRConfig()`).

    Returns:
      The pure step; `key` is the run key (the step folds in the backbone step count).
      metrics: scalars (loss, reward, advantage, mean_prob, selected, cosine, null_fraction,
      finite) and per-sample arrays (users, pos_items, neg_items, shapley, probs, mask).
    """

    cfg = DVRConfig() if cfg is None else cfg

    def step(state: DVRState, key: PRNGKey, pair_index: Array, data: DVRData):
        k_negative, k_select, k_dropout = jax.random.split(jax.random.fold_in(key, state.backbone.step), 3)
        users, pos_items, neg_items = sampler.sample_triplets(k_negative, data.train, pair_index)
        params = state.backbone.params

        def backbone_losses(p):
            return train.per_sample_bpr(p, backbone, data.graph, users, pos_items, neg_items, k_dropout)

        (per_sample, _), backbone_vjp = jax.vjp(backbone_losses, params)
        feats = valuator_features(backbone.pair_features(params, users, pos_items, neg_items), per_sample)

        def value(vparams):
            out = valuator.forward(vparams, feats)
            return (out.prediction, valuator.probabilities(vparams, out.shapley)), out

        (prediction, probs), valuator_vjp, out = jax.vjp(value, state.valuator.params, has_aux=True)
        if cfg.weight_mode == "sample":
            weights = adapter.select(k_select, jax.lax.stop_gradient(probs))
        else:
            weights = jax.lax.stop_gradient(probs)
        scale = 1.0 if cfg.reduction == "sum" else 1.0 / per_sample.shape[0]
        (grads,) = backbone_vjp((weights * scale, jnp.ones((), per_sample.dtype)))
        new_backbone = state.backbone.apply_gradients(grads)

        def update_valuator(_):
            reward = reward_fn(new_backbone.params, data.graph, data.reward)
            adv, new_adapter = adapter.advantage(
                state.adapter, reward, window=cfg.baseline_window, normalize=cfg.normalize_advantage
            )
            target = loss_target(per_sample) if cfg.reward == "loss" else metric_target(reward)

            def head_loss(pred, p):
                total = cfg.alpha_mse * jnp.square(pred - target)
                total = total + cfg.lambda_explore * adapter.exploration_penalty(p)
                if cfg.weight_mode == "sample" and cfg.pg_mode == "reinforce":
                    total = total + cfg.alpha_pg * adapter.policy_loss(p, weights, adv)
                elif cfg.pg_mode == "code":
                    total = total + cfg.alpha_pg * adapter.code_policy_loss(p, reward)
                return total

            cotangents = jax.grad(head_loss, argnums=(0, 1))(prediction, probs)
            (vgrads,) = valuator_vjp(cotangents)
            return state.valuator.apply_gradients(vgrads), new_adapter, reward, adv

        def skip(_):
            zero = jnp.zeros((), jnp.float32)
            return state.valuator, state.adapter, zero, zero

        due = state.backbone.step % cfg.reward_interval == 0  # the "reward_due" metric
        new_valuator, new_adapter, reward, adv = jax.lax.cond(due, update_valuator, skip, None)
        finite = jnp.isfinite(jnp.sum(per_sample)) & jnp.isfinite(reward) & jnp.all(jnp.isfinite(out.shapley))
        metrics = {
            "loss": jnp.mean(per_sample), "reward": reward, "advantage": adv, "mean_prob": jnp.mean(probs),
            "selected": jnp.mean(weights), "cosine": shapley_loss_cosine(out.shapley, per_sample),
            "null_fraction": out.null_fraction, "finite": finite, "reward_due": due,
            "users": users, "pos_items": pos_items, "neg_items": neg_items,
            "shapley": out.shapley, "probs": probs, "mask": weights,
        }  # fmt: skip
        return DVRState(new_backbone, new_valuator, new_adapter), metrics

    return step
