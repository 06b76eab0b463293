"""Maps within-batch Shapley values to Bernoulli selection probabilities.

Reference: DVR paper, Sec. 5.2.1 ("we normalize the Shapley value"; no formula) and the
authors' `gamma * (phi - min phi)`. docs/algorithm.md §4.2 and docs/departures.md §5:
default `sigmoid`, a
standardised sigmoid with a learnable offset c,
`p = eps + (1 - 2 eps) sigmoid(kappa (phi - mean) / (std + 1e-8) + c)`; `code` =
`clip(gamma_dv (phi - min phi), 0, 1)` for compatibility only.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from dvr_jax.typing import Array

VALUE_MAPS = ("sigmoid", "code")


def sigmoid_probabilities(shapley: Array, offset: Array, *, kappa: float = 1.0, eps: float = 1e-3) -> Array:
    """Standardised-sigmoid map (scale-free in phi).

    Args:
      shapley: f[B] Shapley values of the batch.
      offset: f[] learnable offset c.
      kappa: fixed slope on the standardised value.
      eps: probabilities are kept in [eps, 1 - eps].

    Returns:
      f[B] selection probabilities.
    """
    mean = jnp.mean(shapley)
    std = jnp.sqrt(jnp.mean(jnp.square(shapley - mean)))
    standardised = (shapley - mean) / (std + 1e-8)
    return eps + (1.0 - 2.0 * eps) * jax.nn.sigmoid(kappa * standardised + offset)


def code_probabilities(shapley: Array, *, gamma_dv: float = 100.0) -> Array:
    """The authors' data value `gamma_dv * (phi - min phi)`, clipped to [0, 1] (compat).

    Args:
      shapley: f[B] Shapley values of the batch.
      gamma_dv: data-value scale (100 in the released configs).

    Returns:
      f[B] probabilities; the arg-min sample always gets 0.
    """
    return jnp.clip(gamma_dv * (shapley - jnp.min(shapley)), 0.0, 1.0)


def shapley_to_probabilities(
    shapley: Array,
    offset: Array,
    *,
    value_map: str = "sigmoid",
    kappa: float = 1.0,
    eps: float = 1e-3,
    gamma_dv: float = 100.0,
) -> Array:
    """Dispatches to the configured map (`value_map` is static).

    Args:
      shapley: f[B] Shapley values.
      offset: f[] learnable offset c (unused by `code`).
      value_map: "sigmoid" (default) or "code".
      kappa: sigmoid slope.
      eps: sigmoid probability floor.
      gamma_dv: `code` scale.

    Returns:
      f[B] selection probabilities.
    """
    if value_map == "sigmoid":
        return sigmoid_probabilities(shapley, offset, kappa=kappa, eps=eps)
    if value_map == "code":
        return code_probabilities(shapley, gamma_dv=gamma_dv)
    raise ValueError(f"value_map must be one of {VALUE_MAPS}, got {value_map!r}")
