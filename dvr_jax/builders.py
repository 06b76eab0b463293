"""The built-in registry entries: from a `RunConfig` to each method's typed factory.

One small builder per method (docs/engineering.md §12): it reads the run's fields, builds the
step data's `aux` the method reads on device, and calls the method's factory. BPR and DVR are
described in docs/algorithm.md, the baselines in docs/baselines.md, the popularity floor in
docs/baselines.md §2. Only this module and `dvr_jax.loop` read a `RunConfig`; the factories
take plain typed arguments.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from dvr_jax import baselines, rewards
from dvr_jax.backbones import propagation
from dvr_jax.config import ConfigError, RunConfig
from dvr_jax.dvr import DVRConfig, check_config
from dvr_jax.methods import make_bpr_method, make_dvr_method, make_pop_method
from dvr_jax.registry import BuildContext, Built, MethodEntry, register_method
from dvr_jax.valuator import Valuator, make_valuator


def _common(ctx: BuildContext) -> dict:
    """The factory arguments every trained method takes."""
    return dict(learning_rate=ctx.cfg.learning_rate, reduction=ctx.cfg.reduction, init_params=ctx.init_params)


def _bpr(ctx: BuildContext) -> Built:
    return Built(make_bpr_method(ctx.backbone, **_common(ctx)), ctx.backbone)


def _pop(ctx: BuildContext) -> Built:
    return Built(make_pop_method(), ctx.backbone)


# --- DVR (docs/algorithm.md) ---------------------------------------------------------------------


def _dvr_defaults(cfg: RunConfig) -> dict:
    return {"batch_size": 1000 if cfg.reward == "loss" else 5000, "warm_start": "auto"}


def _dvr_config(cfg: RunConfig) -> DVRConfig:
    return DVRConfig(
        reward=cfg.reward, weight_mode=cfg.weight_mode, pg_mode=cfg.pg_mode, reduction=cfg.reduction,
        alpha_mse=cfg.alpha_mse, alpha_pg=cfg.alpha_pg, lambda_explore=cfg.lambda_explore,
        baseline_window=cfg.baseline_window, reward_interval=cfg.reward_interval, estimator=cfg.estimator,
        num_masks=cfg.num_masks, mse_target=cfg.mse_target, influence=cfg.influence,
        loss_game_weight=cfg.loss_game_weight, loss_game_coalitions=cfg.loss_game_coalitions,
    )  # fmt: skip


def _dvr_check(cfg: RunConfig) -> None:
    check_config(_dvr_config(cfg))


def _dvr_reward_data(ctx: BuildContext) -> rewards.RewardData:
    """The reward's validation arrays; raises ConfigError when the data cannot serve the reward."""
    cfg = ctx.cfg
    try:
        return rewards.make_reward_data(ctx.dataset, cfg.reward, ctx.train, fraction=cfg.reward_fraction,
                                        seed=cfg.split_seed, chunk_size=cfg.eval_chunk)  # fmt: skip
    except ValueError as err:
        raise ConfigError(str(err)) from err


def run_valuator(cfg: RunConfig) -> Valuator:
    """The data valuator a DVR run trains, built from the config's valuator fields."""
    selection = dict(value_map=cfg.value_map, kappa=cfg.selection_slope, eps=cfg.selection_floor)
    if cfg.valuator == "sample":
        return make_valuator("sample", h_dim=cfg.h_dim, interaction_rank=cfg.interaction_rank,
                             max_order=cfg.max_order, **selection)  # fmt: skip
    return make_valuator("slot", h_dim=cfg.h_dim, num_layers=cfg.harsanyi_layers, width=cfg.harsanyi_width,
                         children_init=cfg.children_init, **selection)  # fmt: skip


def _dvr(ctx: BuildContext) -> Built:
    cfg = ctx.cfg
    method = make_dvr_method(
        ctx.backbone, run_valuator(cfg), rewards.make_reward_fn(ctx.backbone, cfg.reward, k=cfg.reward_k),
        _dvr_config(cfg), batch_size=cfg.batch_size, n_pairs=ctx.train.n_pairs, learning_rate=cfg.learning_rate,
        init_params=ctx.init_params, valuator_learning_rate=cfg.valuator_learning_rate,
        valuator_weight_decay=cfg.valuator_weight_decay,
    )  # fmt: skip
    return Built(method, ctx.backbone, ctx.prepared)


# --- baselines (docs/baselines.md) -------------------------------------------------------------


def _tce(ctx: BuildContext) -> Built:
    cfg = ctx.cfg
    method = baselines.make_tce_method(ctx.backbone, drop_rate=cfg.tce_drop_rate, num_gradual=cfg.tce_num_gradual,
                                       exponent=cfg.tce_exponent, **_common(ctx))  # fmt: skip
    return Built(method, ctx.backbone, {})


def _rce(ctx: BuildContext) -> Built:
    return Built(baselines.make_rce_method(ctx.backbone, beta=ctx.cfg.rce_beta, **_common(ctx)), ctx.backbone, {})


def _popularity(ctx: BuildContext) -> dict:
    return {"popularity": baselines.item_popularity(ctx.dataset.train, ctx.dataset.n_items)}


def _pris(ctx: BuildContext) -> Built:
    cfg = ctx.cfg
    method = baselines.make_pris_method(ctx.backbone, num_negatives=cfg.pris_negatives, proposal=cfg.pris_proposal,
                                        temperature=cfg.pris_temperature, **_common(ctx))  # fmt: skip
    return Built(method, ctx.backbone, _popularity(ctx))


def _wbpr(ctx: BuildContext) -> Built:
    cfg, backbone, common, n_items = ctx.cfg, ctx.backbone, _common(ctx), ctx.dataset.n_items
    if cfg.wbpr_item_bias:
        backbone = baselines.with_item_bias(backbone, n_items)
        if ctx.init_params is not None:
            common["init_params"] = {"backbone": ctx.init_params, "item_bias": jnp.zeros((n_items,), jnp.float32)}
    method = baselines.make_wbpr_method(backbone, exponent=cfg.wbpr_exponent, user_uniform=cfg.wbpr_user_uniform,
                                        **common)  # fmt: skip
    return Built(method, backbone, _popularity(ctx))


def _aobpr(ctx: BuildContext) -> Built:
    cfg, backbone = ctx.cfg, ctx.backbone
    factor_dim = None
    if backbone.name in baselines.DOT_PRODUCT_BACKBONES:
        reps = jax.eval_shape(lambda key: backbone.encode(backbone.init(key), ctx.graph), jax.random.key(0))
        factor_dim = reps["item"].shape[1]
    method = baselines.make_aobpr_method(
        backbone, n_items=ctx.dataset.n_items, factor_dim=factor_dim, batch_size=cfg.batch_size,
        lambda_rel=cfg.aobpr_lambda, refresh_every=cfg.aobpr_refresh, pool_size=cfg.aobpr_pool, **_common(ctx),
    )  # fmt: skip
    return Built(method, backbone, {})


def _til_prepare(ctx: BuildContext) -> None:
    if ctx.cfg.til_outer == "valid" and len(ctx.dataset.valid) == 0:
        raise ConfigError("TIL's outer loss needs validation pairs; the dataset has none")


def _til(variant: str):
    def build(ctx: BuildContext) -> Built:
        cfg, backbone, dataset = ctx.cfg, ctx.backbone, ctx.dataset
        ids = jnp.zeros((1,), jnp.int32)
        feats = jax.eval_shape(lambda key: backbone.pair_features(backbone.init(key), ids, ids, ids),
                               jax.random.key(0))  # fmt: skip
        users, items = dataset.train[:, 0], dataset.train[:, 1]
        aux = {
            "mean_op": propagation.row_normalized(users, items, (dataset.n_users, dataset.n_items)),
            "valid_users": jnp.asarray(dataset.valid[:, 0], jnp.int32),
            "valid_items": jnp.asarray(dataset.valid[:, 1], jnp.int32),
        }
        method = baselines.make_til_method(
            backbone, n_items=dataset.n_items, state_dim=2 * (feats.shape[-1] // 3), variant=variant,
            hidden=cfg.til_hidden or cfg.embedding_dim, output=cfg.til_output, outer=cfg.til_outer,
            mi_state=cfg.til_mi_state, n_clusters=cfg.til_clusters,
            cluster_every=cfg.til_cluster_every * (ctx.train.n_pairs // cfg.batch_size),
            valid_batch=cfg.til_valid_batch or cfg.batch_size, meta_learning_rate=cfg.til_meta_learning_rate,
            meta_weight_decay=cfg.til_meta_weight_decay, **_common(ctx),
        )  # fmt: skip
        return Built(method, backbone, aux)

    return build


BUILTIN_METHODS = (
    MethodEntry("dvr", _dvr, prepare=_dvr_reward_data, defaults=_dvr_defaults, check=_dvr_check, uses_reward=True),
    MethodEntry("bpr", _bpr),
    MethodEntry(
        "pop",
        _pop,
        make_backbone=lambda cfg, dataset: baselines.make_popularity(dataset.n_users, dataset.n_items),
        trains=False,
    ),  # fmt: skip
    MethodEntry("aobpr", _aobpr),
    MethodEntry("wbpr", _wbpr),
    MethodEntry("pris", _pris),
    MethodEntry("tce", _tce),
    MethodEntry("rce", _rce),
    MethodEntry("til-ui", _til("ui"), prepare=_til_prepare),
    MethodEntry("til-mi", _til("mi"), prepare=_til_prepare),
)
for _entry in BUILTIN_METHODS:
    register_method(_entry)
