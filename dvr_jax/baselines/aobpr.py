"""AOBPR: BPR with adaptive, context-dependent oversampling of high-ranked negatives.

Reference: Rendle, Freudenthaler, "Improving Pairwise Learning for Item Recommendation from
Implicit Feedback", WSDM 2014; LibRec `AoBPRRecommender`. docs/baselines.md §4. For a triplet
with user u (factors p_u, item factors q_i, n = I):

  1. rank r ∈ {1..n} with P(r) ∝ exp(−r/λ), λ = λ_rel · n;
  2. factor f with P(f | u) ∝ |p_uf| σ_f (σ_f = std of q_·f over items);
  3. the item at position r of factor f's descending ranking if p_uf > 0, else at n − r + 1;
  4. redraw if it is a training positive of u (exact rejection, `negatives.rejection_negatives`).

The per-factor rankings and σ_f are recomputed on device inside the step (`lax.cond` on the
step count) every ⌈n ln n / B⌉ steps, i.e. every n ln n sampled triplets, from the
representations the step encodes anyway (so the first step ranks the initial model; for MGCF
they carry its training-time neighbour dropout). Unlike LibRec we use σ_f, not the variance,
and a real-valued λ (no integer division). The factor f is drawn by inverse CDF over the B x F
table (20x cheaper than Gumbel-max on CPU); a user whose |p_u| σ is all zero draws f uniformly.

Factors are the final representations: MF's embeddings, LightGCN's propagated ones, MGCF's
r_u / r_i (192-d). NeuMF is not a dot product, so it uses the candidate-pool variant: draw
`pool_size` (100) uniform negatives, rank them by ŷ_uj and take rank r' with
P(r') ∝ exp(−r'/(λ_rel · pool_size)).

On the shared step (docs/engineering.md §12) AOBPR is a sampler that draws between the encoder
and the scoring (`uses_reps`), with the rankings as its state, and unit weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import struct

from dvr_jax import sampler
from dvr_jax.backbones.base import Backbone, Reps
from dvr_jax.baselines.negatives import rejection_negatives, truncated_geometric, uniform_negatives
from dvr_jax.state import LearnerState
from dvr_jax.step import Batch, Method, Sampler, StateLayout, make_method, unit_weighter
from dvr_jax.typing import Array, Params, PRNGKey

DOT_PRODUCT_BACKBONES = ("mf", "lightgcn", "mgcf")


class AOBPRState(struct.PyTreeNode):
    """Backbone learner plus the sampler's item rankings.

    Attributes:
      backbone: the backbone learner.
      ranking: int32[F, I] item ids of each factor sorted by q_·f descending (an unused
        int32[1, 1] for the candidate-pool variant).
      sigma: f32[F] standard deviation of each factor over items.
    """

    backbone: LearnerState
    ranking: Array
    sigma: Array


# On the shared step AOBPR is a stateful sampler (the rankings) with unit weights.
AOBPR_LAYOUT = StateLayout(
    lambda state: (state.backbone, (state.ranking, state.sigma), None),
    lambda learner, rankings, weighter_state: AOBPRState(learner, *rankings),
)


def refresh_interval(n_items: int, batch_size: int) -> int:
    """⌈n ln n / B⌉ steps (at least 1): AOBPR recomputes rankings every n ln n samples."""
    return max(1, math.ceil(n_items * math.log(max(n_items, 2)) / batch_size))


def factor_rankings(item_factors: Array) -> tuple[Array, Array]:
    """Per-factor descending item rankings and factor standard deviations.

    Args:
      item_factors: f32[I, F].

    Returns:
      (ranking int32[F, I], sigma f32[F]).
    """
    ranking = jnp.argsort(-item_factors, axis=0).T.astype(jnp.int32)
    return ranking, jnp.std(item_factors, axis=0)


def adaptive_negatives(
    key: PRNGKey,
    train: sampler.TrainArrays,
    users: Array,
    user_factors: Array,
    ranking: Array,
    sigma: Array,
    scale: float,
) -> Array:
    """AOBPR's context-dependent negatives (steps 1-4 of the module doc).

    Args:
      key: PRNG key.
      train: training positives (for the rejection).
      users: int32[B].
      user_factors: f32[B, F] p_u of each user.
      ranking: int32[F, I].
      sigma: f32[F].
      scale: λ = λ_rel · I.

    Returns:
      int32[B] negatives.
    """
    n_items, n_factors = ranking.shape[1], ranking.shape[0]
    # P(f | u) by inverse CDF (a B x F comparison; 20x cheaper than Gumbel-max on CPU).
    factor_cdf = jnp.cumsum(jnp.abs(user_factors) * sigma[None, :], axis=1)
    uniform_factor = factor_cdf[:, -1] <= 0.0  # all-zero user: any factor

    def propose(k: PRNGKey) -> Array:
        k_rank, k_factor = jax.random.split(k)
        rank = truncated_geometric(k_rank, users.shape, n_items, scale)
        u = jax.random.uniform(k_factor, users.shape, jnp.float32)
        factor = jnp.sum(factor_cdf < (u * factor_cdf[:, -1])[:, None], axis=1)
        factor = jnp.where(uniform_factor, (u * n_factors).astype(jnp.int32), factor)
        factor = jnp.clip(factor, 0, n_factors - 1)
        sign = jnp.take_along_axis(user_factors, factor[:, None], axis=1)[:, 0]
        return ranking[factor, jnp.where(sign > 0, rank, n_items - 1 - rank)]

    items, _ = rejection_negatives(key, train, users, propose)
    return items


def pool_negatives(
    key: PRNGKey,
    train: sampler.TrainArrays,
    users: Array,
    score_fn: Callable[[Array, Array], Array],
    pool_size: int,
    scale: float,
) -> Array:
    """Candidate-pool AOBPR: rank `pool_size` uniform negatives by score, draw a geometric rank.

    Args:
      key: PRNG key.
      train: training positives.
      users: int32[B].
      score_fn: `score_fn(users int32[M], items int32[M]) -> f32[M]` (deterministic).
      pool_size: candidates per user.
      scale: λ_rel · pool_size.

    Returns:
      int32[B] negatives.
    """
    k_pool, k_rank = jax.random.split(key)
    slots = jnp.broadcast_to(users[:, None], (users.shape[0], pool_size))
    candidates = uniform_negatives(k_pool, train, slots)
    scores = score_fn(slots.reshape(-1), candidates.reshape(-1)).reshape(slots.shape)
    order = jnp.argsort(-scores, axis=1)
    rank = truncated_geometric(k_rank, users.shape, pool_size, scale)
    return jnp.take_along_axis(candidates, jnp.take_along_axis(order, rank[:, None], axis=1), axis=1)[:, 0]


def make_aobpr_method(
    backbone: Backbone,
    *,
    n_items: int,
    factor_dim: int | None,
    batch_size: int,
    lambda_rel: float = 0.05,
    refresh_every: int | None = None,
    pool_size: int = 100,
    learning_rate: float = 1e-3,
    reduction: str = "sum",
    init_params: Params | None = None,
) -> Method:
    """AOBPR on any backbone.

    Args:
      backbone: the backbone.
      n_items: I.
      factor_dim: F of the final representations `reps["user"]`, `reps["item"]` for a
        dot-product backbone; None selects the candidate-pool variant (NeuMF).
      batch_size: B (for the default refresh interval).
      lambda_rel: λ_rel.
      refresh_every: steps between ranking refreshes (default ⌈n ln n / B⌉).
      pool_size: candidates of the pool variant.
      learning_rate: Adam step size.
      reduction: "sum" or "mean".
      init_params: warm start.

    Returns:
      The method (state `AOBPRState`).
    """
    interval = refresh_interval(n_items, batch_size) if refresh_every is None else refresh_every
    # The pool variant keeps a 1x1 placeholder: orbax cannot checkpoint zero-size arrays.
    shape = (1, 1) if factor_dim is None else (factor_dim, n_items)

    def init(params: Params) -> tuple[Array, Array]:
        return jnp.zeros(shape, jnp.int32), jnp.zeros(shape[:1], jnp.float32)

    def sample(streams, state, count, pair_index, data, reps: Reps):
        users, pos_items = data.train.users[pair_index], data.train.items[pair_index]
        if factor_dim is None:
            score_fn = lambda u, i: backbone.score_pairs(reps, u, i)  # noqa: E731
            items = pool_negatives(streams["sample"], data.train, users, score_fn, pool_size, lambda_rel * pool_size)
            return Batch(users, pos_items, items), state
        ranking, sigma = jax.lax.cond(  # the I real items' rows: a padded table's pad rows are not items
            count % interval == 0, lambda table: factor_rankings(table), lambda table: state, reps["item"][:n_items]
        )
        items = adaptive_negatives(
            streams["sample"], data.train, users, reps["user"][users], ranking, sigma, lambda_rel * n_items
        )
        return Batch(users, pos_items, items), (ranking, sigma)

    return make_method("aobpr", backbone, Sampler(sample, init, uses_reps=True), unit_weighter(),
                       learning_rate=learning_rate, reduction=reduction, init_params=init_params,
                       layout=AOBPR_LAYOUT)  # fmt: skip
