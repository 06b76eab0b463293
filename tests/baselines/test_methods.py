"""Every baseline through its registry entry (`loop`'s wiring): one finite step, compiled once, on MF and
other backbones."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dvr_jax import registry, sampler
from dvr_jax.backbones import make_backbone
from dvr_jax.config import ConfigError, RunConfig
from dvr_jax.state import tree_all_finite
from dvr_jax.step import StepData
from tests.helpers import count_compilations, tiny_dataset

BATCH = 16
CASES = [
    ("tce", "mf", {"tce_num_gradual": 2}),
    ("rce", "mf", {}),
    ("wbpr", "mf", {"wbpr_user_uniform": True, "wbpr_item_bias": False}),
    ("pris", "mf", {}),
    ("pris", "mf", {"pris_proposal": "pop", "pris_temperature": 0.5}),
    ("aobpr", "mf", {}),
    ("til-mi", "mf", {"til_mi_state": "user", "til_output": "sigmoid", "til_outer": "train"}),
    # Other backbones, where a method has a backbone-specific path: the item-bias wrapper and
    # second-order autodiff through the custom-VJP propagation (LightGCN), 192-d factors
    # (MGCF), the candidate pool and the [GMF; MLP] ego features (NeuMF).
    ("til-ui", "lightgcn", {}),
    ("wbpr", "lightgcn", {}),
    ("aobpr", "mgcf", {}),
    ("aobpr", "neumf", {"aobpr_pool": 10}),
    ("til-mi", "neumf", {}),
]


def _build(rng, method, backbone_name, **options):
    dataset = tiny_dataset(rng)
    arrays = sampler.make_train_arrays(dataset.train, dataset.n_users, dataset.n_items)
    size = {} if backbone_name == "neumf" else {"dim": 8}
    backbone = make_backbone(backbone_name, dataset.n_users, dataset.n_items, **size)
    cfg = RunConfig(method=method, backbone=backbone_name, batch_size=BATCH, embedding_dim=8, til_clusters=4,
                    til_valid_batch=8, **options)  # fmt: skip
    graph = backbone.build_graph(dataset.train)
    built = registry.get_method(method).build(registry.BuildContext(cfg, dataset, arrays, backbone, graph))
    data = StepData(arrays, graph, built.aux)
    return built.method, built.backbone, data, sampler.epoch_batches(jax.random.key(1), arrays.n_pairs, BATCH)


IDS = [f"{method}-{backbone}-{index}" for index, (method, backbone, _) in enumerate(CASES)]


@pytest.mark.parametrize("method, backbone_name, options", CASES, ids=IDS)
def test_one_step_is_finite_and_the_step_compiles_once(rng, key, method, backbone_name, options):
    built, backbone, data, batches = _build(rng, method, backbone_name, **options)
    state = built.init(key)
    initial = jax.tree.map(jnp.copy, built.backbone_params(state))
    step = jax.jit(built.step, donate_argnums=(0,))
    with count_compilations() as first:
        state, metrics = step(state, key, batches[0], data)
    with count_compilations() as later:
        for index in range(1, 4):
            state, metrics = step(state, key, batches[index], data)
    assert first[0] >= 1 and later[0] == 0
    assert {"loss", "finite"} <= set(metrics) and all(np.ndim(v) == 0 for v in metrics.values())
    assert bool(metrics["finite"]) and np.isfinite(float(metrics["loss"]))
    params = built.backbone_params(state)
    assert bool(tree_all_finite(params))
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), initial, params)
    assert any(jax.tree.leaves(changed))


def test_wbpr_evaluates_with_the_item_bias(rng):
    _, backbone, _, _ = _build(rng, "wbpr", "mf")
    assert backbone.name == "mf+bias"
    _, plain, _, _ = _build(rng, "wbpr", "mf", wbpr_item_bias=False)
    assert plain.name == "mf"


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"pris_proposal": "cluster"}, "pris_proposal"),
        ({"tce_drop_rate": 1.0}, "tce_drop_rate"),
        ({"aobpr_lambda": 0.0}, "aobpr_lambda"),
        ({"til_outer": "test"}, "til_outer"),
        ({"pris_negatives": 0}, "pris_negatives"),
        ({"method": "til"}, "method must be one of"),
    ],  # fmt: skip
)
def test_bad_baseline_options_are_config_errors(changes, message):
    with pytest.raises(ConfigError, match=message):
        RunConfig(**{"method": "pris", **changes})


def test_cli_flags_reach_the_config():
    from experiments import run

    cfg = run.config_from_args([
        "--method", "til-mi", "--aobpr-lambda", "0.1", "--aobpr-refresh", "7", "--wbpr-exponent", "0.5",
        "--no-wbpr-item-bias", "--wbpr-user-uniform", "--pris-negatives", "3", "--pris-temperature", "0.5",
        "--pris-proposal", "pop", "--tce-drop-rate", "0.1", "--tce-num-gradual", "1000", "--rce-beta", "0.25",
        "--til-meta-learning-rate", "0.01", "--til-outer", "train", "--til-output", "sigmoid",
        "--til-mi-state", "user", "--til-clusters", "8", "--til-cluster-every", "2",
    ])  # fmt: skip
    assert (cfg.method, cfg.aobpr_lambda, cfg.aobpr_refresh, cfg.wbpr_exponent) == ("til-mi", 0.1, 7, 0.5)
    assert (cfg.wbpr_item_bias, cfg.wbpr_user_uniform, cfg.pris_negatives, cfg.pris_temperature) == (
        False,
        True,
        3,
        0.5,
    )
    assert (cfg.pris_proposal, cfg.tce_drop_rate, cfg.tce_num_gradual, cfg.rce_beta) == ("pop", 0.1, 1000, 0.25)
    assert (cfg.til_meta_learning_rate, cfg.til_outer, cfg.til_output) == (0.01, "train", "sigmoid")
    assert (cfg.til_mi_state, cfg.til_clusters, cfg.til_cluster_every) == ("user", 8, 2)
    defaults = run.config_from_args(["--method", "wbpr"])
    assert defaults.wbpr_item_bias and not defaults.wbpr_user_uniform and defaults.tce_drop_rate == 0.2
