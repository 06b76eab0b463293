"""Validation rewards for the metric adapter, computed on device inside the train step.

docs/algorithm.md §7: rewards read only the *validation* split. Ranking rewards (recall,
ndcg, cc, ild, gini) rank all items for a fixed, seeded subset of validation users with
their training items masked, through the evaluator's own top-K code. The loss reward is
-mean BPR loss on a fixed set of validation triplets (each validation pair with one
uniform negative, drawn once per run). Every reward is oriented so that larger is better
(gini: 1 - Gini@K). The one exception is the leaky `split="test"` of `make_reward_data`, which
reproduces the authors' released code for measuring it (docs/departures.md §22).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from dvr_jax import losses, sampler
from dvr_jax.backbones.base import Backbone, Graph
from dvr_jax.data.dataset import Dataset
from dvr_jax.evaluation.eval_arrays import EvalArrays, make_eval_arrays
from dvr_jax.evaluation.ranking import evaluate_on_device, evaluate_sharded
from dvr_jax.typing import Array, Params

RANKING_REWARDS = {"recall": "recall", "ndcg": "ndcg", "cc": "cc", "ild": "ild", "gini": "gini"}


class RewardData(NamedTuple):
    """Device arrays a reward reads (validation only).

    Attributes:
      eval_arrays: chunked validation arrays of the reward users (ranking rewards) or None.
      item_categories: f32[I, n_cat] (cc, ild) or None.
      users, pos_items, neg_items: i32[Q] fixed validation triplets: each validation pair
        with one uniform negative, drawn once (the loss reward and the influence ground
        truth read them).
    """

    eval_arrays: EvalArrays | None
    item_categories: Array | None
    users: Array | None
    pos_items: Array | None
    neg_items: Array | None


REWARD_SPLITS = ("valid", "test")


def reward_users(dataset: Dataset, fraction: float, seed: int, split: str = "valid") -> np.ndarray:
    """A fixed, seeded subset (at least one) of the users with an item in `split`; int[n] sorted."""
    candidates = np.unique((dataset.valid if split == "valid" else dataset.test)[:, 0])
    n = max(1, int(np.ceil(fraction * len(candidates))))
    return np.sort(np.random.default_rng(seed).choice(candidates, size=min(n, len(candidates)), replace=False))


def make_reward_data(
    dataset: Dataset,
    reward: str,
    train: sampler.TrainArrays,
    *,
    fraction: float = 0.1,
    seed: int = 0,
    chunk_size: int | None = None,
    split: str = "valid",
) -> RewardData:
    """Builds the reward's device arrays from the training and validation splits only.

    `split="test"` builds them from the *test* split instead, as the authors' released code
    does: test-leaky, for measuring that protocol only (docs/departures.md §22; the run is marked
    leaky everywhere it reports).

    Args:
      dataset: the dataset (its test split is never read here unless `split="test"`).
      reward: "loss", "recall", "ndcg", "cc", "ild" or "gini".
      train: training positives (to draw validation negatives outside them).
      fraction: share of validation users in the reward set (ranking rewards).
      seed: seed of the user subset and of the validation negatives.
      chunk_size: users per chunk (None: the evaluator's cache-sized default).
      split: "valid", or "test" (leaky).

    Returns:
      RewardData.
    """
    if split not in REWARD_SPLITS:
        raise ValueError(f"reward split must be one of {', '.join(REWARD_SPLITS)}, got {split!r}")
    pairs = dataset.valid if split == "valid" else dataset.test
    if len(pairs) == 0:
        raise ValueError(f"the reward needs {split} pairs; dataset {dataset.name!r} has none")
    # The fixed triplets: the loss reward's set and the influence ground truth.
    users = jnp.asarray(pairs[:, 0], jnp.int32)
    negatives = sampler.sample_uniform_negatives(jax.random.key(seed), train, users)
    triplets = (users, jnp.asarray(pairs[:, 1], jnp.int32), negatives)
    if reward == "loss":
        return RewardData(None, None, *triplets)
    if reward not in RANKING_REWARDS:
        raise ValueError(f"unknown reward {reward!r}; known: loss, {', '.join(RANKING_REWARDS)}")
    if reward in ("cc", "ild") and dataset.item_categories is None:
        raise ValueError(f"reward {reward!r} needs item categories; dataset {dataset.name!r} has none")
    users = reward_users(dataset, fraction, seed, split)
    if split == "valid":
        valid_only = dataclasses.replace(dataset, test=np.zeros((0, 2), np.int32))  # test never reaches rewards
        arrays = make_eval_arrays(valid_only, "valid", chunk_size=chunk_size, users=users)
    else:
        arrays = make_eval_arrays(dataset, "test", chunk_size=chunk_size, users=users)
    categories = None if reward not in ("cc", "ild") else jnp.asarray(dataset.item_categories, jnp.float32)
    return RewardData(arrays, categories, *triplets)


def make_reward_fn(
    backbone: Backbone, reward: str, *, k: int = 20, mesh: jax.sharding.Mesh | None = None
) -> Callable[[Params, Graph, RewardData], Array]:
    """`reward_fn(params, graph, reward_data) -> f32[]` (larger is better), pure and traceable.

    With a data `mesh` a ranking reward splits its users' chunks over the mesh's devices
    (`evaluate_sharded`; the reward data's chunks must divide over it: `pad_chunks`).
    """
    if reward == "loss":

        def loss_reward(params: Params, graph: Graph, data: RewardData) -> Array:
            reps = backbone.encode(params, graph)
            pos = backbone.score_pairs(reps, data.users, data.pos_items)
            neg = backbone.score_pairs(reps, data.users, data.neg_items)
            return -jnp.mean(losses.bpr_per_sample(pos, neg))

        return loss_reward
    name = RANKING_REWARDS[reward]

    def ranking_reward(params: Params, graph: Graph, data: RewardData) -> Array:
        reps = backbone.encode(params, graph)
        if mesh is None:
            values = evaluate_on_device(backbone, reps, data.eval_arrays, ks=(k,), item_categories=data.item_categories)
        else:
            values = evaluate_sharded(backbone, reps, data.eval_arrays, mesh, ks=(k,),
                                      item_categories=data.item_categories)  # fmt: skip
        value = values[f"{name}@{k}"]
        return 1.0 - value if reward == "gini" else value

    return ranking_reward
