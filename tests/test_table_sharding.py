"""Tables split over a "model" axis, on one device: padding, the spec tree, the ranking, the config checks.

The 8-device checks (steps and evaluation equal to 1 device on LastFM, a whole CLI run) are in
`tests/test_multidevice.py`, which runs `tests/multidevice/check_tables.py`.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from dvr_jax import loop, sampler, sharding, train, warm_start
from dvr_jax.backbones import make_mf
from dvr_jax.config import ConfigError, make_config
from dvr_jax.evaluation import evaluate, make_eval_arrays, topk_lists
from dvr_jax.evaluation.table_sharded import evaluate_table_sharded, topk_table_sharded
from tests.helpers import tiny_dataset


def test_pad_rows_rounds_up():
    assert [sharding.pad_rows(n, 8) for n in (1, 8, 1507, 1512)] == [8, 8, 1512, 1512]


def test_table_specs_shard_the_tables_and_their_adam_moments_only():
    backbone = make_mf(10, 7, dim=4, row_multiple=4)
    state = jax.eval_shape(lambda k: train.create_backbone_state(k, backbone), jax.random.key(0))
    assert state.params["user"].shape == (12, 4) and state.params["item"].shape == (8, 4)
    specs = sharding.table_specs(state, 4)
    adam = specs.opt_state[1][0]
    assert specs.params == {"user": P("model", None), "item": P("model", None)}
    assert adam.mu == adam.nu == specs.params and adam.count == P() and specs.step == P()
    small = sharding.table_specs(state, 4, min_rows=10)  # by size: the 8-row item table stays replicated
    assert small.params == {"user": P("model", None), "item": P()}
    with pytest.raises(ValueError, match="table 'user' has 12 rows, not a multiple of 8 model shards"):
        sharding.table_specs(state, 8)


def test_padded_mf_trains_its_real_rows_like_the_unpadded_one_and_keeps_its_pad_rows_zero(rng):
    dataset = tiny_dataset(rng, n_users=30, n_items=37)
    arrays = sampler.make_train_arrays(dataset.train, 30, 37)
    plain, padded = make_mf(30, 37, dim=8), make_mf(30, 37, dim=8, row_multiple=8)
    key = jax.random.key(0)
    states = [train.create_backbone_state(key, b) for b in (plain, padded)]
    assert states[1].params["item"].shape == (40, 8) and states[1].params["user"].shape == (32, 8)
    batches = sampler.epoch_batches(key, arrays.n_pairs, 32)
    for i in range(3):
        for j, backbone in enumerate((plain, padded)):
            step = jax.jit(train.make_bpr_step(backbone))
            states[j], _ = step(states[j], key, batches[i], train.StepData(arrays, None))
    for name, n_rows in (("user", 30), ("item", 37)):
        np.testing.assert_allclose(states[1].params[name][:n_rows], states[0].params[name], rtol=1e-6, atol=1e-7)
        assert not np.any(np.asarray(states[1].params[name][n_rows:]))  # pad rows: never looked up, still zero
    users = jnp.arange(5, dtype=jnp.int32)
    scores = padded.score_all(states[1].params, users)
    assert scores.shape == (5, 37)  # only the real items are ranked
    np.testing.assert_allclose(scores, plain.score_all(states[0].params, users), rtol=1e-5, atol=1e-7)


def test_table_sharded_ranking_on_a_one_device_mesh_equals_the_plain_evaluation(rng):
    dataset = tiny_dataset(rng, n_users=30, n_items=37)
    arrays = make_eval_arrays(dataset, "test", chunk_size=8)
    plain, padded = make_mf(30, 37, dim=8), make_mf(30, 37, dim=8, row_multiple=8)
    params = plain.init(jax.random.key(0))
    padded_params = padded.init(jax.random.key(0))
    mesh = sharding.make_mesh(1, 1)
    want = evaluate(plain, params, None, arrays, ks=(5, 10))
    got = jax.jit(lambda p, a: evaluate_table_sharded(p, a, mesh, ks=(5, 10)))(padded_params, arrays)
    assert sorted(got) == sorted(want)
    np.testing.assert_allclose([float(got[k]) for k in sorted(want)], [want[k] for k in sorted(want)], atol=1e-6)
    _, items, _ = topk_lists(plain, params, None, arrays, 10)
    sharded_items, _ = topk_table_sharded(padded_params, arrays, k=10, mesh=mesh)
    mask = np.asarray(arrays.user_mask).reshape(-1)
    order = np.argsort(np.asarray(arrays.users).reshape(-1)[mask], kind="stable")
    np.testing.assert_array_equal(np.asarray(sharded_items).reshape(-1, 10)[mask][order], items)


@pytest.mark.parametrize(
    "fields, message",
    [
        (
            dict(method="wbpr"),
            "method wbpr does not support embedding tables split over devices (supported: dvr, bpr, pris, tce, rce)",
        ),
        (dict(method="dvr", backbone="neumf", warm_start="none"), "backbone neumf does not support embedding tables"),
        (dict(method="bpr", backbone="lightgcn"), "backbone lightgcn does not support embedding tables split"),
        (dict(method="aobpr"), "method aobpr does not support embedding tables split over devices"),
    ],
)
def test_unsupported_combinations_are_config_errors(fields, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        make_config(model_shards=2, **fields)


def test_more_model_shards_than_devices_is_a_config_error():
    cfg = make_config(method="bpr", model_shards=2, batch_size=64)
    with pytest.raises(ConfigError, match="--model-shards 2 does not divide the 1 device"):
        loop.data_mesh(cfg)
    assert loop.data_mesh(make_config(method="bpr", model_shards=1)) is None


def test_dvr_state_splits_the_backbone_tables_and_their_adam_moments_only(rng):
    from dvr_jax import dvr, rewards
    from dvr_jax.methods import make_dvr_method
    from dvr_jax.valuator import make_valuator

    dataset = tiny_dataset(rng, n_users=30, n_items=37)
    arrays = sampler.make_train_arrays(dataset.train, 30, 37)
    backbone = make_mf(30, 37, dim=8, row_multiple=4)
    method = make_dvr_method(backbone, make_valuator("sample", h_dim=4, encoder_hidden=(8,)),
                             rewards.make_reward_fn(backbone, "recall"), dvr.DVRConfig(), batch_size=16,
                             n_pairs=arrays.n_pairs)  # fmt: skip
    specs = sharding.table_specs(jax.eval_shape(method.init, jax.random.key(0)), 4)
    adam = specs.backbone.opt_state[1][0]
    assert specs.backbone.params == adam.mu == adam.nu == {"user": P("model", None), "item": P("model", None)}
    rest = (specs.valuator, specs.adapter, specs.pairs, specs.backbone.step, adam.count)
    assert all(spec == P() for spec in jax.tree.leaves(rest, is_leaf=lambda x: isinstance(x, P)))


def test_table_constraint_is_the_identity_without_a_model_axis():
    tree = {"user": jnp.ones((4, 2)), "item": jnp.ones((6, 2))}
    for mesh in (None, sharding.make_mesh(1, 1)):
        assert jax.jit(sharding.table_constraint(mesh))(tree)["item"].shape == (6, 2)
    assert sharding.table_constraint(None)(tree) is tree


def test_a_warm_start_reads_bpr_tables_padded_for_any_model_shards_into_this_runs_rows(rng, tmp_path):
    import json

    from dvr_jax import checkpoint

    dataset = tiny_dataset(rng, n_users=30, n_items=37)
    real = make_mf(30, 37, dim=8).init(jax.random.key(1))
    for saved_shards in (1, 4):  # a BPR run without and with --model-shards 4 (tables of 32 and 40 rows)
        source = tmp_path / f"bpr-{saved_shards}"
        padded = {name: jnp.pad(table, ((0, -len(table) % saved_shards), (0, 0))) for name, table in real.items()}
        checkpoint.save_backbone(checkpoint.open_manager(source / "checkpoints" / "best"), 1, padded, {"epoch": 1})
        mesh = {"devices": 1, "processes": 1} | ({"model_shards": saved_shards} if saved_shards > 1 else {})
        (source / "config.json").write_text(json.dumps({"mesh": mesh}))
        for multiple in (1, 3, 8):  # this run's padding: none, 33 x 39 rows, 32 x 40 rows
            params = warm_start.pretrained_params(source, make_mf(30, 37, dim=8, row_multiple=multiple), dataset)
            for name, n_rows in (("user", 30), ("item", 37)):
                assert params[name].shape == (sharding.pad_rows(n_rows, multiple), 8)
                np.testing.assert_array_equal(params[name][:n_rows], real[name])
                assert not np.any(np.asarray(params[name][n_rows:]))
    with pytest.raises(checkpoint.CheckpointError, match="the user table in .* is 32 x 8, not this dataset's 35 x 8"):
        warm_start.pretrained_params(source, make_mf(35, 37, dim=8), tiny_dataset(rng, n_users=35, n_items=37))


def test_aobpr_on_a_padded_mf_ranks_the_real_items_and_trains_like_the_unpadded_one(rng):
    from dvr_jax.baselines import make_aobpr_method

    dataset = tiny_dataset(rng, n_users=30, n_items=37)
    arrays = sampler.make_train_arrays(dataset.train, 30, 37)
    key = jax.random.key(0)
    batches = sampler.epoch_batches(key, arrays.n_pairs, 32)
    states = []
    for backbone in (make_mf(30, 37, dim=8), make_mf(30, 37, dim=8, row_multiple=8)):
        method = make_aobpr_method(backbone, n_items=37, factor_dim=8, batch_size=32, refresh_every=2)
        state, step = method.init(key), jax.jit(method.step)
        for i in range(4):  # refreshes at steps 0 and 2
            state, _ = step(state, key, batches[i], train.StepData(arrays, None))
        states.append(state)
    assert states[1].ranking.shape == (8, 37)  # the pad rows are not ranked (they are not items)
    np.testing.assert_array_equal(states[1].ranking, states[0].ranking)
    for name, n_rows in (("user", 30), ("item", 37)):
        real = states[1].backbone.params[name]
        np.testing.assert_allclose(real[:n_rows], states[0].backbone.params[name], rtol=1e-6, atol=1e-7)
        assert not np.any(np.asarray(real[n_rows:]))
