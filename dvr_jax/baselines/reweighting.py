"""Loss-based denoising of BPR triplets: truncated (T-CE) and reweighted (R-CE) losses.

Reference: Wang, Feng, He, Nie, Chua, "Denoising Implicit Feedback for Recommendation",
WSDM 2021; official code WenjieWWJ/DenoisingRec (`T_CE/loss.py`, `R_CE/loss.py`).
docs/baselines.md §7-8, adapted from pointwise CE to BPR triplets (every triplet holds a positive);
each is a weighter on the shared step (docs/engineering.md §12):

* TCE-BPR: drop rate ε(t) = (t / N_r) ε_max^e for t < N_r, then ε_max (e = 1: a linear ramp);
  each batch keeps its ⌊(1 − ε(t)) B⌋ smallest-loss triplets and the loss is their mean.
* RCE-BPR: w_b = sg(σ(ŷ_ui − ŷ_uj))^β, loss = mean_b w_b ℓ_b (the pair probability plays the
  positive's confidence σ(ŷ)^β of R-CE).

"Mean" is per the run's reduction: with `reduction="sum"` (the default of every method here,
docs/departures.md §17) both losses are B times their mean, so the data term keeps BPR's scale against
the coupled L2 and the methods differ from BPR only in which triplets count and how much.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from dvr_jax.backbones.base import Backbone
from dvr_jax.step import Context, Method, make_method, stateless_weighter, uniform_sampler
from dvr_jax.typing import Array, Params

# Relative slack when flooring (1 - ε) B in float32, so e.g. ε = 0.2, B = 10 keeps 8, not 7.
_FLOOR_SLACK = 1e-6


def tce_drop_rate(step: Array, drop_rate: float, num_gradual: int, exponent: float = 1.0) -> Array:
    """ε(t): linear ramp from 0 to ε_max^exponent over `num_gradual` steps, then ε_max.

    Args:
      step: int32[] update count t.
      drop_rate: ε_max in [0, 1).
      num_gradual: N_r >= 1.
      exponent: ramp exponent (1 in the paper's setting).

    Returns:
      f32[] drop rate.
    """
    ramp = (drop_rate**exponent) * step.astype(jnp.float32) / num_gradual
    return jnp.where(step < num_gradual, ramp, jnp.float32(drop_rate))


def kept_count(batch_size: int, rate: Array) -> Array:
    """⌊(1 − ε) B⌋ as int32[], at least 1."""
    keep = jnp.floor((1.0 - rate) * batch_size * (1.0 + _FLOOR_SLACK))
    return jnp.clip(keep, 1, batch_size).astype(jnp.int32)


def truncation_weights(per_sample: Array, rate: Array) -> Array:
    """Weights that keep the ⌊(1 − ε) B⌋ smallest losses and average them.

    Args:
      per_sample: f32[B] losses.
      rate: f32[] drop rate ε.

    Returns:
      f32[B]: B / n_keep on the kept triplets and 0 on the dropped ones, so a mean reduction
      gives the mean of the kept losses (ties broken by position).
    """
    batch_size = per_sample.shape[0]
    n_keep = kept_count(batch_size, rate)
    rank = jnp.zeros((batch_size,), jnp.int32).at[jnp.argsort(per_sample)].set(jnp.arange(batch_size, dtype=jnp.int32))
    keep = rank < n_keep
    return jnp.where(keep, batch_size / n_keep.astype(jnp.float32), 0.0)


def rce_weights(pos_scores: Array, neg_scores: Array, beta: float) -> Array:
    """R-CE weights for BPR pairs: σ(ŷ_ui − ŷ_uj)^β, f32[B] (the caller detaches them)."""
    return jnp.power(jax.nn.sigmoid(pos_scores - neg_scores), beta)


def make_tce_method(
    backbone: Backbone,
    *,
    drop_rate: float = 0.2,
    num_gradual: int = 30000,
    exponent: float = 1.0,
    learning_rate: float = 1e-3,
    reduction: str = "sum",
    init_params: Params | None = None,
) -> Method:
    """TCE-BPR: truncated BPR loss with a linearly growing drop rate.

    Args:
      backbone: any backbone.
      drop_rate: ε_max.
      num_gradual: N_r, steps of the ramp.
      exponent: ramp exponent.
      learning_rate: Adam step size.
      reduction: "sum" (B × mean of the kept) or "mean".
      init_params: warm start.

    Returns:
      The method; metrics add "drop_rate".
    """

    def weights(ctx: Context) -> Array:
        return truncation_weights(ctx.forward.per_sample, tce_drop_rate(ctx.count, drop_rate, num_gradual, exponent))

    def metrics(w: Array, ctx: Context) -> dict[str, Array]:
        return {"drop_rate": tce_drop_rate(ctx.count, drop_rate, num_gradual, exponent)}

    return make_method("tce", backbone, uniform_sampler(), stateless_weighter(weights, metrics),
                       learning_rate=learning_rate, reduction=reduction, init_params=init_params)  # fmt: skip


def make_rce_method(
    backbone: Backbone,
    *,
    beta: float = 0.2,
    learning_rate: float = 1e-3,
    reduction: str = "sum",
    init_params: Params | None = None,
) -> Method:
    """RCE-BPR: BPR terms reweighted by the detached pair confidence σ(ŷ_ui − ŷ_uj)^β.

    Args:
      backbone: any backbone.
      beta: β.
      learning_rate: Adam step size.
      reduction: "sum" or "mean".
      init_params: warm start.

    Returns:
      The method; metrics add "mean_weight".
    """

    def weights(ctx: Context) -> Array:
        return rce_weights(ctx.forward.pos, ctx.forward.neg, beta)

    def metrics(w: Array, ctx: Context) -> dict[str, Array]:
        return {"mean_weight": jnp.mean(w)}

    return make_method("rce", backbone, uniform_sampler(), stateless_weighter(weights, metrics),
                       learning_rate=learning_rate, reduction=reduction, init_params=init_params)  # fmt: skip
