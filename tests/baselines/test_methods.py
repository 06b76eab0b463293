"""Every baseline through its registry entry (`loop`'s wiring): one finite step, compiled once, on MF and
other backbones."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dvr_jax import registry, sampler
from dvr_jax.backbones import make_backbone
from dvr_jax.builders import AOBPROptions, PRISOptions, RCEOptions, TCEOptions, TILOptions, WBPROptions
from dvr_jax.config import ConfigError, make_config
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
    small_til = {"til_clusters": 4, "til_valid_batch": 8} if method.startswith("til") else {}
    cfg = make_config(method=method, backbone=backbone_name, batch_size=BATCH, embedding_dim=8, **small_til,
                      **options)  # fmt: skip
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
        ({"method": "pris", "pris_proposal": "cluster"}, "pris_proposal must be one of"),
        ({"method": "tce", "tce_drop_rate": 1.0}, "tce_drop_rate must be >= 0 and < 1"),
        ({"method": "aobpr", "aobpr_lambda_rel": 0.0}, "aobpr_lambda_rel must be > 0"),
        ({"method": "til-ui", "til_outer": "test"}, "til_outer must be one of"),
        ({"method": "pris", "pris_negatives": 0}, "pris_negatives must be >= 1"),
        ({"method": "til"}, "method must be one of"),
        ({"method": "pris", "tce_drop_rate": 0.1}, "tce_drop_rate is an option of method tce, not of pris"),
    ],  # fmt: skip
)
def test_bad_baseline_options_are_config_errors(changes, message):
    with pytest.raises(ConfigError, match=message):
        make_config(**changes)


@pytest.mark.parametrize(
    "argv, expected",
    [
        (
            ["--method", "aobpr", "--aobpr-lambda-rel", "0.1", "--aobpr-refresh", "7", "--aobpr-pool", "9"],
            AOBPROptions(lambda_rel=0.1, refresh=7, pool=9),
        ),
        (
            ["--method", "wbpr", "--wbpr-exponent", "0.5", "--no-wbpr-item-bias", "--wbpr-user-uniform"],
            WBPROptions(exponent=0.5, item_bias=False, user_uniform=True),
        ),
        (
            ["--method", "pris", "--pris-negatives", "3", "--pris-temperature", "0.5", "--pris-proposal", "pop"],
            PRISOptions(negatives=3, temperature=0.5, proposal="pop"),
        ),
        (
            ["--method", "tce", "--tce-drop-rate", "0.1", "--tce-num-gradual", "1000"],
            TCEOptions(drop_rate=0.1, num_gradual=1000),
        ),
        (["--method", "rce", "--rce-beta", "0.25"], RCEOptions(beta=0.25)),
        (
            [
                "--method",
                "til-mi",
                "--til-meta-learning-rate",
                "0.01",
                "--til-outer",
                "train",
                "--til-output",
                "sigmoid",
                "--til-mi-state",
                "user",
                "--til-clusters",
                "8",
                "--til-cluster-every",
                "2",
            ],
            TILOptions(
                meta_learning_rate=0.01, outer="train", output="sigmoid", mi_state="user", clusters=8, cluster_every=2
            ),
        ),
        (["--method", "wbpr"], WBPROptions()),
        (["--method", "bpr"], None),
    ],  # fmt: skip
    ids=lambda value: value[1] if isinstance(value, list) else None,
)
def test_cli_flags_reach_the_method_options(argv, expected):
    from experiments import run

    cfg = run.config_from_args(argv)
    assert cfg.options == expected
