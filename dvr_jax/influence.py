"""A ground truth for data values: the one-step influence of each triplet on validation loss.

For a batch of triplets with per-sample BPR losses l_b(Theta) and the validation loss
L_val(Theta) (mean BPR loss over a fixed set of validation triplets, the `loss` reward's
set), the first-order influence of triplet b is

  infl_b = <grad l_b(Theta), grad L_val(Theta)>,

the rate at which a plain gradient step on sample b alone lowers the validation loss:
L_val(Theta - h grad l_b) = L_val(Theta) - h infl_b + O(h^2). Positive means helpful.
Adam's preconditioner is *not* included (the plain gradient geometry), so the quantity
does not depend on the optimizer's moments.

All B influences come at once: they are the directional derivative J g of the per-sample
loss vector in the direction g = grad L_val. Graph propagation has a custom VJP (no
forward mode), so J g is taken as the VJP of the linear map v -> J^T v: about one
forward, two backward passes and one validation backward per step, for any backbone.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from dvr_jax import losses
from dvr_jax.backbones.base import Backbone, Graph
from dvr_jax.typing import Array, Params


def validation_loss(
    backbone: Backbone, params: Params, graph: Graph, users: Array, pos_items: Array, neg_items: Array
) -> Array:
    """Mean BPR loss of fixed validation triplets (deterministic scoring, no dropout); f[]."""
    reps = backbone.encode(params, graph)
    pos = backbone.score_pairs(reps, users, pos_items)
    neg = backbone.score_pairs(reps, users, neg_items)
    return jnp.mean(losses.bpr_per_sample(pos, neg))


def batch_influence(
    per_sample_losses: Callable[[Params], Array],
    val_loss: Callable[[Params], Array],
    params: Params,
    constrain: Callable[[Params], Params] | None = None,
) -> Array:
    """infl_b = <grad l_b, grad L_val> for every sample of the batch, by one JVP; f[B].

    Args:
      per_sample_losses: `params -> f[B]` per-sample losses of the batch.
      val_loss: `params -> f[]` validation loss.
      params: backbone parameters Theta_t.
      constrain: applied to the direction grad L_val (params-shaped) inside a jitted step:
        with tables split over devices, `dvr_jax.sharding.table_constraint` keeps it split
        like the tables (else the partitioner may replicate this dense gradient). None: as is.

    Returns:
      f[B] influences (positive: a step on the sample lowers the validation loss).
    """
    direction = jax.grad(val_loss)(params)
    if constrain is not None:
        direction = constrain(direction)
    losses_b, pullback = jax.vjp(per_sample_losses, params)
    # J g by reverse mode only: v -> J^T v is linear, and its own VJP applied to g is J g
    # (forward mode is not available through the custom-VJP graph propagation).
    _, pullback_transpose = jax.vjp(lambda v: pullback(v)[0], jnp.zeros_like(losses_b))
    (infl,) = pullback_transpose(direction)
    return infl


def spearman(a: Array, b: Array) -> Array:
    """Spearman rank correlation of two f[B] vectors (ties broken by position); f[]."""

    def ranks(x):
        return jnp.argsort(jnp.argsort(x)).astype(jnp.float32)

    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - jnp.mean(ra), rb - jnp.mean(rb)
    denom = jnp.sqrt(jnp.sum(ra * ra) * jnp.sum(rb * rb))
    return jnp.sum(ra * rb) / jnp.maximum(denom, 1e-12)
