"""Every backbone on the shared jitted BPR step and the shared full-ranking evaluation."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from dvr_jax import sampler, train
from dvr_jax.backbones import make_backbone
from dvr_jax.evaluation import evaluate, make_eval_arrays
from tests.helpers import count_compilations, tiny_dataset

SMALL = {"mf": {"dim": 8}, "neumf": {}, "mgcf": {"dim": 8, "n_similar": 3}, "lightgcn": {"dim": 8}}


@pytest.mark.parametrize("name", ["mf", "neumf", "mgcf", "lightgcn"])
def test_step_compiles_once_trains_and_evaluates(name, rng):
    dataset = tiny_dataset(rng)
    backbone = make_backbone(name, dataset.n_users, dataset.n_items, **SMALL[name])
    arrays = sampler.make_train_arrays(dataset.train, dataset.n_users, dataset.n_items)
    data = train.StepData(arrays, backbone.build_graph(dataset.train))
    state = train.create_backbone_state(jax.random.key(0), backbone, learning_rate=1e-2)
    step = jax.jit(train.make_bpr_step(backbone), donate_argnums=(0,))
    run_key = jax.random.key(1)
    batches = [
        pair_index
        for epoch in range(6)
        for pair_index in sampler.epoch_batches(jax.random.fold_in(run_key, epoch), arrays.n_pairs, 32)
    ]
    losses = []
    with count_compilations() as compiles:
        for pair_index in batches:
            state, metrics = step(state, run_key, pair_index, data)
            assert bool(metrics["finite"])
            losses.append(float(metrics["loss"]))
    assert compiles[0] == 1
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    result = evaluate(backbone, state.params, data.graph, make_eval_arrays(dataset, "valid"), ks=(5,))
    assert 0.0 <= result["recall@5"] <= 1.0 and 0.0 <= result["ndcg@5"] <= 1.0
