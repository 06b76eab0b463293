"""Pure primitives of a Harsanyi unit: STE mask, AND product, slot contributions.

Reference: Chen et al., "HarsanyiNet", ICML 2023; docs/harsanyi.md §2 and §8. The two
custom VJPs exist for speed only (their forward values are the plain formulas, and the
tests compare their gradients with autodiff of those formulas): at B = 5000 the generic
XLA:CPU gradients of the product and of the (M, B, H') contraction dominated the step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from dvr_jax.typing import Array


def ste_mask(logits: Array, beta: float) -> Array:
    """Hard children mask with the straight-through gradient `beta * s(x)(1 - s(x))`.

    .. math:: \\tau = sg([\\tau' > 0]) + \\beta (s(\\tau') - sg(s(\\tau')))

    Args:
      logits: f[M, D] children-selection logits tau'.
      beta: surrogate gradient scale.

    Returns:
      f[M, D] mask whose value is exactly [logits > 0].
    """
    soft = jax.nn.sigmoid(logits)
    hard = (logits > 0).astype(logits.dtype)
    return jax.lax.stop_gradient(hard) + beta * (soft - jax.lax.stop_gradient(soft))


@jax.custom_vjp
def and_product(factors: Array) -> Array:
    """Row products `prod_k factors[m, k]` with an exact, cheap gradient (zeros ok).

    XLA's generic product gradient is a log-depth tree that cost ~3x the rest of the
    step at D = 5000 (and seconds of compile time). The exclusive product
    prod_{j != k} f_j is instead read from the non-zero product P and the zero count
    n0: P / f_k when n0 = 0, P at the single zero when n0 = 1, 0 otherwise. The
    forward value is the plain product.

    Args:
      factors: f[M, D] factors in [0, 1].

    Returns:
      f[M] row products.
    """
    return jnp.prod(factors, axis=1)


def _and_product_fwd(factors: Array) -> tuple[Array, tuple[Array, Array, Array]]:
    is_zero = factors == 0
    nonzero_product = jnp.prod(jnp.where(is_zero, 1.0, factors), axis=1)
    zeros = jnp.sum(is_zero, axis=1, dtype=jnp.int32)
    product = jnp.where(zeros == 0, nonzero_product, 0.0)
    return product, (factors, nonzero_product, zeros)


def _and_product_bwd(residuals: tuple[Array, Array, Array], cotangent: Array) -> tuple[Array]:
    factors, nonzero_product, zeros = residuals
    is_zero = factors == 0
    safe = jnp.where(is_zero, 1.0, factors)
    scale = (cotangent * nonzero_product)[:, None]
    no_zero = (zeros == 0)[:, None]
    one_zero = (zeros == 1)[:, None]
    exclusive = jnp.where(no_zero, 1.0 / safe, jnp.where(one_zero & is_zero, 1.0, 0.0))
    return (scale * exclusive,)


and_product.defvjp(_and_product_fwd, _and_product_bwd)


def and_units(tau: Array, contributions: Array, triggers: Array) -> Array:
    """AND-gated units: `ReLU(sum_k tau c) * prod_k (tau t + 1 - tau)`.

    `ReLU(g) * delta` equals the official `ReLU(g * delta)` in the forward pass (delta
    >= 0), but keeps a gradient towards the children logits of a unit whose trigger
    product is 0, so the STE can learn to drop a dead child.

    Args:
      tau: f[M, D] children mask (0/1 forward).
      contributions: f[M, D] value contribution of input k to unit m (before masking).
      triggers: f[D] AND triggers in [0, 1], exactly 0 for absent inputs.

    Returns:
      f[M] unit activations z >= 0.
    """
    g = jnp.sum(tau * contributions, axis=1)
    factors = tau * triggers[None, :] + (1.0 - tau)
    return jax.nn.relu(g) * and_product(factors)


@jax.custom_vjp
def slot_contributions(weights: Array, inputs: Array) -> Array:
    """Per-unit, per-slot inner products `c[m, b] = <A[:, m, b], X[b, :]>`.

    Args:
      weights: f[H', M, B] layer-1 weights, feature-major.
      inputs: f[B, H'] slot representations.

    Returns:
      f[M, B].
    """
    return _slot_contributions(weights, inputs)


def _slot_contributions(weights: Array, inputs: Array) -> Array:
    """Unrolled over the H' feature planes: each term is one fused (M, B)
    multiply-add."""
    return sum(weights[k] * inputs[:, k][None, :] for k in range(weights.shape[0]))


def _slot_contributions_fwd(weights: Array, inputs: Array) -> tuple[Array, tuple[Array, Array]]:
    return _slot_contributions(weights, inputs), (weights, inputs)


def _slot_contributions_bwd(residuals: tuple[Array, Array], cotangent: Array) -> tuple[Array, Array]:
    weights, inputs = residuals
    d_weights = cotangent[None, :, :] * inputs.T[:, None, :]
    d_inputs = jnp.stack(
        [jnp.sum(weights[k] * cotangent, axis=0) for k in range(weights.shape[0])],
        axis=1,
    )
    return d_weights, d_inputs


slot_contributions.defvjp(_slot_contributions_fwd, _slot_contributions_bwd)
