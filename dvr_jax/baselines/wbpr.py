"""WBPR: BPR with popularity-weighted negatives and an item bias.

Reference: Gantner, Drumond, Freudenthaler, Schmidt-Thieme, "Bayesian Personalized Ranking
for Non-Uniformly Sampled Items", KDD Cup 2011 (JMLR W&CP 18); LibRec `WBPRRecommender`.
docs/baselines.md §5: the negative is drawn with P(j | u) ∝ pop(j)^e over I minus S_u+ (pop = number
of training interactions, e = 1), and the score gains an item bias b_j.

Decisions:
  * Iteration over pairs is BPR's epoch permutation (comparable with the other methods);
    `user_uniform=True` gives LibRec's order instead: user uniform among users with a training
    positive, then a positive uniform from S_u+ (`pair_index` is then ignored).
  * The bias is added by wrapping the backbone (`with_item_bias`), so no backbone changes:
    params become `{"backbone": ..., "item_bias": f32[I]}` (init 0), scored as ŷ + b_j in
    training *and* evaluation, and decayed by the backbone's coupled L2 like every other
    parameter (LibRec regularises b_j too). The wrapper keeps the inner regulariser.
  * On the shared step (docs/engineering.md §12) WBPR is a sampler with unit weights.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from dvr_jax import sampler
from dvr_jax.backbones.base import Backbone
from dvr_jax.baselines.negatives import popularity_cdf, rejection_negatives, sample_from_cdf
from dvr_jax.step import Batch, Method, Sampler, make_method, unit_weighter
from dvr_jax.typing import Array, Params, PRNGKey

WBPR_STREAMS = ("pairs", "sample", "dropout")  # the step's random streams, in split order


def item_popularity(train_pairs: np.ndarray, n_items: int) -> Array:
    """Training interaction counts per item, f32[I] (host-side, once)."""
    return jnp.asarray(np.bincount(np.asarray(train_pairs)[:, 1], minlength=n_items), jnp.float32)


def with_item_bias(inner: Backbone, n_items: int) -> Backbone:
    """The backbone with a learned additive item bias: ŷ'_ui = ŷ_ui + b_i.

    Args:
      inner: any backbone.
      n_items: I.

    Returns:
      A `Backbone` named `<inner>+bias` with params `{"backbone": inner params, "item_bias":
      f32[I]}`; `pair_features` and the regulariser are the inner backbone's.
    """

    def init(key: PRNGKey) -> Params:
        return {"backbone": inner.init(key), "item_bias": jnp.zeros((n_items,), jnp.float32)}

    def encode(params: Params, graph, key: PRNGKey | None = None):
        return {"inner": inner.encode(params["backbone"], graph, key), "item_bias": params["item_bias"]}

    def score_pairs(reps, users: Array, items: Array, key: PRNGKey | None = None) -> Array:
        return inner.score_pairs(reps["inner"], users, items, key) + reps["item_bias"][items]

    def score_all(reps, users: Array) -> Array:
        return inner.score_all(reps["inner"], users) + reps["item_bias"][None, :]

    def pair_features(params: Params, users: Array, pos: Array, neg: Array) -> Array:
        return inner.pair_features(params["backbone"], users, pos, neg)

    def regularizer(params: Params, reps, users: Array, pos: Array, neg: Array) -> Array:
        return inner.regularizer(params["backbone"], reps["inner"], users, pos, neg)

    return Backbone(
        name=f"{inner.name}+bias", init=init, build_graph=inner.build_graph, encode=encode,
        score_pairs=score_pairs, score_all=score_all, pair_features=pair_features,
        regularizer=regularizer, weight_decay=inner.weight_decay,
    )  # fmt: skip


def popularity_negatives(key: PRNGKey, train: sampler.TrainArrays, users: Array, cdf: Array) -> Array:
    """Negatives with P(j | u) ∝ the increments of `cdf` over I minus S_u+, int32[users.shape]."""
    items, _ = rejection_negatives(key, train, users, lambda k: sample_from_cdf(k, cdf, users.shape))
    return items


def user_uniform_pairs(key: PRNGKey, train: sampler.TrainArrays, batch_size: int) -> tuple[Array, Array]:
    """LibRec order: users uniform among those with a training positive, then a uniform positive.

    Returns:
      (users int32[B], pos_items int32[B]).
    """
    k_user, k_pos = jax.random.split(key)
    n_users = train.indptr.shape[0] - 1
    degree = train.indptr[1:] - train.indptr[:-1]
    active = jnp.cumsum((degree > 0).astype(jnp.float32))
    users = sample_from_cdf(k_user, active, (batch_size,))  # uniform over users with degree > 0
    users = jnp.clip(users, 0, n_users - 1)
    offset = jax.random.randint(k_pos, (batch_size,), 0, jnp.maximum(degree[users], 1), dtype=jnp.int32)
    return users, train.items[train.indptr[users] + offset]


def make_wbpr_method(
    backbone: Backbone,
    *,
    exponent: float = 1.0,
    user_uniform: bool = False,
    learning_rate: float = 1e-3,
    reduction: str = "sum",
    init_params: Params | None = None,
) -> Method:
    """WBPR on `backbone` (pass `with_item_bias(backbone, I)` for the paper's item bias).

    Args:
      backbone: the (possibly bias-wrapped) backbone.
      exponent: popularity exponent e.
      user_uniform: LibRec's user-then-positive order instead of the epoch over pairs.
      learning_rate: Adam step size.
      reduction: "sum" or "mean".
      init_params: warm start (params of `backbone`).

    Returns:
      The method; its data is a `StepData` with `aux["popularity"]` f32[I].
    """

    def sample(streams, state, count, pair_index, data, reps):
        del count, reps
        if user_uniform:
            users, pos_items = user_uniform_pairs(streams["pairs"], data.train, pair_index.shape[0])
        else:
            users, pos_items = data.train.users[pair_index], data.train.items[pair_index]
        cdf = popularity_cdf(data.aux["popularity"], exponent)
        return Batch(users, pos_items, popularity_negatives(streams["sample"], data.train, users, cdf)), state

    return make_method("wbpr", backbone, Sampler(sample), unit_weighter(), learning_rate=learning_rate,
                       reduction=reduction, init_params=init_params, streams=WBPR_STREAMS)  # fmt: skip
