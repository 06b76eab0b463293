"""The built-in registry entries: from a `RunConfig` to each method's typed factory.

One small builder per method (docs/engineering.md §12), and the frozen dataclass of the
method's own options that its entry owns (`DVROptions`, `TCEOptions`, ...; a run holds one in
`RunConfig.options`): the builder reads the run's fields and options, builds the step data's
`aux` the method reads on device, and calls the method's factory. BPR and DVR are
described in docs/algorithm.md, the baselines in docs/baselines.md, the popularity floor in
docs/baselines.md §2. Only this module and `dvr_jax.loop` read a `RunConfig`; the factories
take plain typed arguments.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jnp

from dvr_jax import baselines, rewards, sharding
from dvr_jax.backbones import propagation
from dvr_jax.config import ConfigError, RunConfig, option
from dvr_jax.dvr import DVRConfig, check_config
from dvr_jax.evaluation.ranking import pad_chunks
from dvr_jax.methods import make_bpr_method, make_dvr_method, make_pop_method
from dvr_jax.registry import BuildContext, Built, MethodEntry, register_method
from dvr_jax.valuator import Valuator, make_valuator
from dvr_jax.warm_start import pretrain_config

# --- each method's options (flat names: the entry's prefix + the field name) ---------------------


@dataclasses.dataclass(frozen=True)
class DVROptions:
    """DVR: the data valuator and the metric adapter (--method dvr; docs/algorithm.md)."""

    reward_fraction: float = option(0.1, "share of validation users in the reward", gt=0, max=1)
    reward_k: int = option(20, "cut-off K of ranking rewards", min=1)
    reward_interval: int = option(1, "valuator update every N steps", min=1)
    weight_mode: Literal["sample", "dot"] = option("sample", "sample: Bernoulli masks from the selection "
                                                   "probabilities; dot: the probabilities as loss weights")  # fmt: skip
    pg_mode: Literal["reinforce", "code"] = option("reinforce", "reinforce: log-likelihood of the sampled "
                                                   "mask; code: the reference code's surrogate")  # fmt: skip
    valuator: Literal["sample", "slot"] = option("sample", "sample: the sample game; slot: the paper's "
                                                 "slot-indexed Harsanyi net")  # fmt: skip
    estimator: Literal["ema", "counterfactual", "loo", "delta", "none"] = option("loo", "REINFORCE advantage estimator")
    num_masks: int = option(4, "masks K of the loo estimator", min=1)
    mse_target: Literal["coalition", "batch"] = option("coalition", "valuator MSE on the trained coalitions, "
                                                       "or only on the full batch (the paper's)")  # fmt: skip
    influence: bool = option(True, "compute every triplet's first-order influence on the validation loss")
    loss_game_weight: float = option(10.0, "weight of the loss game fitted on random coalitions; "
                                     "0: the reward alone trains the valuator", min=0)  # fmt: skip
    loss_game_coalitions: int = option(16, "random coalitions per step for the loss game", min=1)
    loss_negatives: int = option(16, "negatives per pair in the loss the valuator reads and fits: the triplet's "
                                 "own and n - 1 fresh uniform ones (1: the triplet's loss)", min=1)  # fmt: skip
    update_scale: Literal["bpr", "sum"] = option(
        "bpr",
        "bpr: the selected pairs' summed loss scaled to count as the warm start's BPR batch, so the "
        "backbone's weight decay weighs against it as in BPR; sum: the plain sum (the released code's)",
    )
    interaction_rank: int = option(8, "sample game: rank of the interaction dividends", min=1)
    max_order: int = option(2, "sample game: highest interaction order", min=1, max=4)
    h_dim: int | None = option(
        None,
        "valuator encoder output width",
        min=1,
        default_text="32; slot valuator 10, 50 for cc/ild, 1 for its paper encoder or P",
    )
    encoder_hidden: tuple[int, ...] = option((256, 128), "valuator encoder hidden widths", min=1)
    use_loss_feature: bool = option(True, "the valuator encoder reads each sample's BPR loss")
    slot_variant: Literal["G", "F", "P", "C_compat"] = option(
        "G", "slot valuator: G (sample-grouped, the paper's reading), F, P, or C_compat (the released code's)"
    )
    slot_encoder: Literal["code", "paper"] = option(
        "code", "slot valuator: the code's 3-layer tanh encoder, or the paper's ReLU-tanh scalar"
    )
    harsanyi_width: int = option(100, "slot valuator: units per Harsanyi layer", min=1)
    harsanyi_layers: int = option(2, "slot valuator: Harsanyi layers", min=1)
    children_init: Literal["random", "cover"] = option("random", "slot valuator: initial children masks")
    harsanyi_act_ratio: float = option(0.01, "slot valuator: initial share of children", gt=0, max=1)
    harsanyi_beta: float = option(10.0, "slot valuator: straight-through surrogate scale", gt=0)
    harsanyi_trigger: float = option(1000.0, "slot valuator: AND trigger sharpness", gt=0)
    harsanyi_v0: float = option(1.0, "slot valuator: initial children-logit magnitude", gt=0)
    const_column: Literal["auto", "yes", "no"] = option(
        "auto", "slot valuator: a constant 1 in every slot; auto: yes for G and F, no for P and C_compat"
    )
    shared_slot_weights: bool = option(False, "slot valuator: variant G's layer-1 weights shared across slots")
    output_bias: bool = option(False, "slot valuator: a learnable output bias (not part of any value)")
    freeze_encoder: bool = option(False, "the valuator's sample encoder stays at its initialisation (the "
                                  "released code's)")  # fmt: skip
    reward_split: Literal["valid", "test"] = option("valid", "the split the reward reads; test is the released "
                                                    "code's and makes the run test-leaky")  # fmt: skip
    loss_reward: Literal["valid", "batch"] = option("valid", "with --reward loss: -BPR loss on the reward's "
                                                    "triplets, or -sum of the pre-update batch's")  # fmt: skip
    value_map: Literal["sigmoid", "code"] = option("sigmoid", "map from data value to selection probability")
    code_map_scale: float = option(100.0, "scale gamma of the code value map", gt=0)
    selection_slope: float = option(1.0, "slope kappa of the sigmoid map on the batch-standardised value", gt=0)
    selection_floor: float = option(1e-3, "probabilities of the sigmoid map stay in [floor, 1 - floor]", min=0, lt=0.5)
    valuator_learning_rate: float = option(1e-3, "Adam step size of the valuator", gt=0)
    valuator_weight_decay: float = option(1e-3, "coupled L2 weight decay of the valuator's Adam", min=0)
    alpha_mse: float = option(1.0, "weight of the valuator's MSE term", min=0)
    alpha_pg: float = option(1.0, "weight of the policy-gradient term", min=0)
    lambda_explore: float = option(1000.0, "weight of the exploration penalty", min=0)
    baseline_window: float = option(20.0, "EMA window of the reward baseline, in reward steps", min=1)


@dataclasses.dataclass(frozen=True)
class AOBPROptions:
    """AOBPR: adaptive oversampling of negatives by rank (--method aobpr; docs/baselines.md)."""

    lambda_rel: float = option(0.05, "AOBPR λ_rel; the rank scale is λ = λ_rel · I", gt=0)
    refresh: int | None = option(None, "AOBPR steps between ranking refreshes", min=1, default_text="ceil(I ln I / B)")
    pool: int = option(100, "AOBPR candidate pool for NeuMF (no dot product)", min=1)


@dataclasses.dataclass(frozen=True)
class WBPROptions:
    """WBPR: popularity-weighted negatives (--method wbpr; docs/baselines.md)."""

    exponent: float = option(1.0, "WBPR popularity exponent: P(j) ∝ pop(j)^exponent", min=0)
    item_bias: bool = option(True, "WBPR: add a learned item bias to the scores")
    user_uniform: bool = option(False, "WBPR: LibRec order, a uniform user then a positive")


@dataclasses.dataclass(frozen=True)
class PRISOptions:
    """PRIS: importance-sampled negatives (--method pris; docs/baselines.md)."""

    negatives: int = option(5, "PRIS negatives per positive L", min=1)
    temperature: float = option(1.0, "PRIS temperature τ_w", gt=0)
    proposal: Literal["uniform", "pop"] = option("uniform", "PRIS proposal of negatives")


@dataclasses.dataclass(frozen=True)
class TCEOptions:
    """TCE: truncated loss, drops the largest losses (--method tce; docs/baselines.md)."""

    drop_rate: float = option(0.2, "TCE maximum drop rate ε_max", min=0, lt=1)
    num_gradual: int = option(30000, "TCE ramp length N_r in steps", min=1)
    exponent: float = option(1.0, "TCE ramp exponent", gt=0)


@dataclasses.dataclass(frozen=True)
class RCEOptions:
    """RCE: reweighted loss, down-weights large losses (--method rce; docs/baselines.md)."""

    beta: float = option(0.2, "RCE β", min=0)


@dataclasses.dataclass(frozen=True)
class TILOptions:
    """TIL: a learned weight generator (--method til-ui / til-mi; docs/baselines.md)."""

    hidden: int | None = option(None, "TIL generator width", min=1, default_text="--embedding-dim")
    output: Literal["softplus", "sigmoid"] = option("softplus", "TIL generator output")
    outer: Literal["valid", "train"] = option("valid", "TIL outer loss on validation pairs, or "
                                                  "on training pairs as TIL's released code does")  # fmt: skip
    mi_state: Literal["centroid", "user"] = option("centroid", "TIL-MI state of a triplet")
    clusters: int = option(20, "TIL-MI item communities n_c", min=1)
    cluster_every: int = option(10, "TIL-MI epochs between k-means refreshes", min=1)
    valid_batch: int | None = option(None, "TIL validation pairs per outer loss", min=1, default_text="--batch-size")
    meta_learning_rate: float = option(1e-3, "TIL generator Adam step size", gt=0)
    meta_weight_decay: float = option(0.0, "coupled L2 weight decay of TIL's generator", min=0)


def _common(ctx: BuildContext) -> dict:
    """The factory arguments every trained method takes."""
    return dict(learning_rate=ctx.cfg.learning_rate, reduction=ctx.cfg.reduction, init_params=ctx.init_params)


def _bpr(ctx: BuildContext) -> Built:
    return Built(make_bpr_method(ctx.backbone, **_common(ctx)), ctx.backbone)


def _pop(ctx: BuildContext) -> Built:
    return Built(make_pop_method(), ctx.backbone)


# --- DVR (docs/algorithm.md) ---------------------------------------------------------------------


def _dvr_defaults(cfg: RunConfig) -> dict:
    """DVR-Loss batches of 1000 (the paper's), a BPR warm start, and the valuator width by valuator and reward."""
    o = cfg.options
    scalar = o.slot_encoder == "paper" or o.slot_variant == "P"
    h_dim = 32 if o.valuator == "sample" else 1 if scalar else 50 if cfg.reward in ("cc", "ild") else 10
    return {"batch_size": 1000 if cfg.reward == "loss" else 5000, "warm_start": "auto", "h_dim": h_dim}


def _update_batch(cfg: RunConfig, n_pairs: int | None) -> int:
    """`DVRConfig.update_batch` of a run: 0 for the plain sum; else the pairs a weight row counts as.

    Under the summed loss, the warm start's BPR batch (`pretrain_config`); under the mean, the
    run's own batch (the mean over the selected pairs).
    """
    if cfg.options.update_scale == "sum":
        return 0
    if cfg.reduction == "mean":
        return cfg.batch_size
    return pretrain_config(cfg, n_pairs).batch_size


def _dvr_config(cfg: RunConfig, n_pairs: int | None = None) -> DVRConfig:
    o = cfg.options
    return DVRConfig(
        reward=cfg.reward, weight_mode=o.weight_mode, pg_mode=o.pg_mode, reduction=cfg.reduction,
        alpha_mse=o.alpha_mse, alpha_pg=o.alpha_pg, lambda_explore=o.lambda_explore,
        baseline_window=o.baseline_window, reward_interval=o.reward_interval, estimator=o.estimator,
        num_masks=o.num_masks, mse_target=o.mse_target, influence=o.influence,
        loss_game_weight=o.loss_game_weight, loss_game_coalitions=o.loss_game_coalitions,
        freeze_encoder=o.freeze_encoder, loss_reward=o.loss_reward, loss_negatives=o.loss_negatives,
        update_batch=_update_batch(cfg, n_pairs),
    )  # fmt: skip


def _dvr_check(cfg: RunConfig) -> None:
    check_config(_dvr_config(cfg))
    run_valuator(cfg)  # the valuator's own option rules (e.g. variant P needs h_dim 1); builds no parameters


def _dvr_leaks(cfg: RunConfig) -> tuple[str, ...]:
    return ("reward on test users",) if cfg.options.reward_split == "test" else ()


def _dvr_reward_data(ctx: BuildContext) -> rewards.RewardData:
    """The reward's arrays (validation; test under the leaky `reward_split`); ConfigError when the data cannot serve."""
    cfg, dataset = ctx.cfg, ctx.dataset
    if cfg.options.reward_split == "test":
        dataset = dataclasses.replace(dataset, test=ctx.test)  # the loop hands test over only to a leaky entry
    try:
        data = rewards.make_reward_data(dataset, cfg.reward, ctx.train, fraction=cfg.options.reward_fraction,
                                        seed=cfg.split_seed, chunk_size=cfg.eval_chunk,
                                        split=cfg.options.reward_split)  # fmt: skip
    except ValueError as err:
        raise ConfigError(str(err)) from err
    if ctx.mesh is not None and data.eval_arrays is not None:  # the reward's users split over the devices
        data = data._replace(eval_arrays=pad_chunks(data.eval_arrays, ctx.mesh.shape["data"]))
    return data


def run_valuator(cfg: RunConfig) -> Valuator:
    """The data valuator a DVR run trains, built from the run's DVR options."""
    o = cfg.options
    common = dict(
        h_dim=o.h_dim,
        encoder_hidden=o.encoder_hidden,
        use_loss_feature=o.use_loss_feature,
        value_map=o.value_map,
        kappa=o.selection_slope,
        eps=o.selection_floor,
        gamma_dv=o.code_map_scale,
    )
    if o.valuator == "sample":
        return make_valuator("sample", interaction_rank=o.interaction_rank, max_order=o.max_order, **common)
    const_column = None if o.const_column == "auto" else o.const_column == "yes"
    return make_valuator("slot", encoder=o.slot_encoder, variant=o.slot_variant, num_layers=o.harsanyi_layers,
                         width=o.harsanyi_width, act_ratio=o.harsanyi_act_ratio, beta=o.harsanyi_beta,
                         gamma_trig=o.harsanyi_trigger, v0=o.harsanyi_v0, children_init=o.children_init,
                         const_column=const_column, shared_slot_weights=o.shared_slot_weights,
                         output_bias=o.output_bias, **common)  # fmt: skip


def _dvr(ctx: BuildContext) -> Built:
    cfg = ctx.cfg
    method = make_dvr_method(
        ctx.backbone, run_valuator(cfg),
        rewards.make_reward_fn(ctx.backbone, cfg.reward, k=cfg.options.reward_k, mesh=ctx.mesh),
        _dvr_config(cfg, ctx.train.n_pairs), batch_size=cfg.batch_size, n_pairs=ctx.train.n_pairs,
        learning_rate=cfg.learning_rate, init_params=ctx.init_params,
        valuator_learning_rate=cfg.options.valuator_learning_rate,
        valuator_weight_decay=cfg.options.valuator_weight_decay, constrain=sharding.table_constraint(ctx.mesh),
    )  # fmt: skip
    return Built(method, ctx.backbone, ctx.prepared)


# --- baselines (docs/baselines.md) -------------------------------------------------------------


def _tce(ctx: BuildContext) -> Built:
    o = ctx.cfg.options
    method = baselines.make_tce_method(ctx.backbone, drop_rate=o.drop_rate, num_gradual=o.num_gradual,
                                       exponent=o.exponent, **_common(ctx))  # fmt: skip
    return Built(method, ctx.backbone, {})


def _rce(ctx: BuildContext) -> Built:
    return Built(baselines.make_rce_method(ctx.backbone, beta=ctx.cfg.options.beta, **_common(ctx)), ctx.backbone, {})


def _popularity(ctx: BuildContext) -> dict:
    return {"popularity": baselines.item_popularity(ctx.dataset.train, ctx.dataset.n_items)}


def _pris(ctx: BuildContext) -> Built:
    o = ctx.cfg.options
    method = baselines.make_pris_method(ctx.backbone, num_negatives=o.negatives, proposal=o.proposal,
                                        temperature=o.temperature, **_common(ctx))  # fmt: skip
    return Built(method, ctx.backbone, _popularity(ctx))


def _wbpr(ctx: BuildContext) -> Built:
    o, backbone, common, n_items = ctx.cfg.options, ctx.backbone, _common(ctx), ctx.dataset.n_items
    if o.item_bias:
        backbone = baselines.with_item_bias(backbone, n_items)
        if ctx.init_params is not None:
            common["init_params"] = {"backbone": ctx.init_params, "item_bias": jnp.zeros((n_items,), jnp.float32)}
    method = baselines.make_wbpr_method(backbone, exponent=o.exponent, user_uniform=o.user_uniform, **common)
    return Built(method, backbone, _popularity(ctx))


def _aobpr(ctx: BuildContext) -> Built:
    cfg, o, backbone = ctx.cfg, ctx.cfg.options, ctx.backbone
    factor_dim = None
    if backbone.name in baselines.DOT_PRODUCT_BACKBONES:
        reps = jax.eval_shape(lambda key: backbone.encode(backbone.init(key), ctx.graph), jax.random.key(0))
        factor_dim = reps["item"].shape[1]
    method = baselines.make_aobpr_method(
        backbone, n_items=ctx.dataset.n_items, factor_dim=factor_dim, batch_size=cfg.batch_size,
        lambda_rel=o.lambda_rel, refresh_every=o.refresh, pool_size=o.pool, **_common(ctx),
    )  # fmt: skip
    return Built(method, backbone, {})


def _til_prepare(ctx: BuildContext) -> None:
    if ctx.cfg.options.outer == "valid" and len(ctx.dataset.valid) == 0:
        raise ConfigError("TIL's outer loss needs validation pairs; the dataset has none")


def _til(variant: str):
    def build(ctx: BuildContext) -> Built:
        cfg, o, backbone, dataset = ctx.cfg, ctx.cfg.options, ctx.backbone, ctx.dataset
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
            hidden=o.hidden or cfg.embedding_dim, output=o.output, outer=o.outer, mi_state=o.mi_state,
            n_clusters=o.clusters, cluster_every=o.cluster_every * (ctx.train.n_pairs // cfg.batch_size),
            valid_batch=o.valid_batch or cfg.batch_size, meta_learning_rate=o.meta_learning_rate,
            meta_weight_decay=o.meta_weight_decay, **_common(ctx),
        )  # fmt: skip
        return Built(method, backbone, aux)

    return build


BUILTIN_METHODS = (
    MethodEntry("dvr", _dvr, options=DVROptions, prepare=_dvr_reward_data, defaults=_dvr_defaults, check=_dvr_check,
                uses_reward=True, leaks=_dvr_leaks, table_sharding=True),
    MethodEntry("bpr", _bpr, table_sharding=True),
    MethodEntry("pop", _pop, trains=False,
                make_backbone=lambda cfg, dataset: baselines.make_popularity(dataset.n_users, dataset.n_items)),
    MethodEntry("aobpr", _aobpr, options=AOBPROptions, prefix="aobpr"),
    MethodEntry("wbpr", _wbpr, options=WBPROptions, prefix="wbpr"),
    MethodEntry("pris", _pris, options=PRISOptions, prefix="pris", table_sharding=True),
    MethodEntry("tce", _tce, options=TCEOptions, prefix="tce", table_sharding=True),
    MethodEntry("rce", _rce, options=RCEOptions, prefix="rce", table_sharding=True),
    MethodEntry("til-ui", _til("ui"), options=TILOptions, prefix="til", prepare=_til_prepare),
    MethodEntry("til-mi", _til("mi"), options=TILOptions, prefix="til", prepare=_til_prepare),
)  # fmt: skip
for _entry in BUILTIN_METHODS:
    register_method(_entry)
