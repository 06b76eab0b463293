"""Receptive fields and the exact sample-level Shapley read-out of a Harsanyi network.

Reference: Chen et al., "HarsanyiNet", ICML 2023 (single-pass Shapley values); DVR
paper eq. 5.8; docs/harsanyi.md §3 (exactness), §4 (sample vs feature players), §5
(Variant G). Each unit u is one Harsanyi dividend of the masked-input game, carried by
the set P(R_u) of players (samples) in its receptive field, so

  phi_b = sum_l sum_m [b in R^(l)_m] v^(l)_m z^(l)_m / max(1, |R^(l)_m|),

with receptive fields built by *union* over children, `R^(l) = [tau^(l) R^(l-1) > 0]`.
All vectorised: O(sum_l M_l D_{l-1}) plus one (M_l x M_{l-1}) @ (M_{l-1} x B) product
per layer. The compat routines (`intersection`, `reshape(H, B)` grouping) reproduce
the authors' code for ablations and regression tests only (docs/harsanyi.md §4).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from dvr_jax.typing import Array
from dvr_jax.valuator.harsanyi import HarsanyiTrace


def _hard(mask: Array) -> Array:
    """Structural 0/1 copy of a children mask (no STE gradient)."""
    return jax.lax.stop_gradient((mask > 0).astype(mask.dtype))


def pool_to_samples(field: Array, n_samples: int) -> Array:
    """Pools a feature-level receptive field to samples (feature b * H' + k -> b).

    Args:
      field: f[M, B * H'] 0/1 receptive field over features.
      n_samples: B.

    Returns:
      f[M, B] with entry 1 iff the unit reads at least one feature of sample b.
    """
    n_units = field.shape[0]
    # (M, B, H'): row-major order is exactly the sample-major flattening.
    grouped = field.reshape(n_units, n_samples, -1)
    return (jnp.max(grouped, axis=2) > 0).astype(field.dtype)


def receptive_fields(masks: Sequence[Array], n_samples: int | None = None, *, rule: str = "union") -> tuple[Array, ...]:
    """Receptive fields of every unit, recursively from the children masks.

    Args:
      masks: per layer l, f[M_l, D_{l-1}] children masks (values in {0, 1}).
      n_samples: if given, pool layer-1 features to B samples first (flat variants F/P);
        None keeps layer-1 inputs as the players (Variant G, or feature-level
        attribution).
      rule: "union" (correct, E6) or "intersection" (the authors'
        `compute_shapley_tensor`, docs/harsanyi.md §4; a childless unit gets every
        player, as there).

    Returns:
      per layer l, f[M_l, P] 0/1 receptive fields over the P players.
    """
    if rule not in ("union", "intersection"):
        raise ValueError(f"rule must be 'union' or 'intersection', got {rule!r}")
    field = _hard(masks[0])
    if n_samples is not None:
        field = pool_to_samples(field, n_samples)
    fields = [field]
    for mask in masks[1:]:
        tau = _hard(mask)
        if rule == "union":
            field = (tau @ field > 0).astype(field.dtype)
        else:
            field = (tau @ (1.0 - field) == 0).astype(field.dtype)
        fields.append(field)
    return tuple(fields)


def attribute(trace: HarsanyiTrace, fields: Sequence[Array]) -> Array:
    """Shares each unit's term `v z` equally among the players of its receptive field.

    Args:
      trace: forward trace of the Harsanyi network.
      fields: per layer, f[M_l, P] 0/1 receptive fields.

    Returns:
      f[P] attributions (a unit with an empty field gives nothing).
    """
    total = jnp.zeros(fields[0].shape[1], trace.output.dtype)
    for field, z, v in zip(fields, trace.activations, trace.readouts, strict=True):
        size = jnp.maximum(jnp.sum(field, axis=1), 1.0)
        total = total + ((v * z) / size) @ field
    return total


def sample_shapley(trace: HarsanyiTrace, n_samples: int, *, grouped: bool = True) -> Array:
    """Exact Shapley values of the B slots in the masked-input game (Variants G, F, P).

    Args:
      trace: forward trace at the presence mask of interest (usually all present).
      n_samples: B.
      grouped: True for Variant G (layer-1 inputs are slots), False for flat variants
        whose layer-1 inputs are the B * H' sample-major features.

    Returns:
      f[B] Shapley values; sum(phi) = output - bias (efficiency).
    """
    fields = receptive_fields(trace.masks, None if grouped else n_samples)
    return attribute(trace, fields)


def feature_shapley(trace: HarsanyiTrace) -> Array:
    """Official HarsanyiNet attribution with *features* as players (flat variants).

    Exact for the feature-level game; summing it per sample is NOT the sample Shapley
    value (docs/harsanyi.md §4). Kept for explanation and for the counter-example tests.

    Args:
      trace: forward trace of a flat (non-grouped) network.

    Returns:
      f[B * H'] per-feature Shapley values (sample-major).
    """
    return attribute(trace, receptive_fields(trace.masks))


def group_features(values: Array, n_samples: int) -> Array:
    """Sums sample-major per-feature values per sample: `reshape(B, H').sum(1)`.

    Args:
      values: f[B * H'] per-feature values, index b * H' + k.
      n_samples: B.

    Returns:
      f[B].
    """
    return jnp.sum(values.reshape(n_samples, -1), axis=1)


def compat_shapley(trace: HarsanyiTrace, n_samples: int) -> Array:
    """The authors' sample "values" (`variant = C_compat`, ablation only).

    Feature-level players, intersection receptive fields, then `reshape(H', B).sum(0)`,
    which attaches values to the wrong samples (docs/harsanyi.md §4).

    Args:
      trace: forward trace of a flat network.
      n_samples: B.

    Returns:
      f[B] the released code's per-slot values.
    """
    per_feature = attribute(trace, receptive_fields(trace.masks, rule="intersection"))
    return jnp.sum(per_feature.reshape(-1, n_samples), axis=0)


def null_player_fraction(trace: HarsanyiTrace, n_samples: int, *, grouped: bool = True) -> Array:
    """Fraction of slots in no receptive field (structural null players, phi = 0).

    Deeper fields are unions of layer-1 fields, so the layer-1 field decides.

    Args:
      trace: forward trace.
      n_samples: B.
      grouped: Variant G (True) or a flat variant (False).

    Returns:
      f[] in [0, 1].
    """
    field = _hard(trace.masks[0])
    if not grouped:
        field = pool_to_samples(field, n_samples)
    return jnp.mean((jnp.sum(field, axis=0) == 0).astype(field.dtype))


def active_unit_fraction(trace: HarsanyiTrace) -> Array:
    """Fraction of all Harsanyi units with a non-zero activation (dead-network
    diagnostic)."""
    active = jnp.concatenate([(z > 0).astype(z.dtype) for z in trace.activations])
    return jnp.mean(active)


def value_statistics(shapley: Array, present: Array | None = None) -> tuple[Array, Array]:
    """Shares of exactly-zero and of tied values among the present samples.

    A sample is tied when its value equals (``==``) the value of at least one *other*
    present sample. One sort of the B values with absent samples moved to the end, then
    a comparison of neighbours: O(B log B), jit-able, B static. Absent samples count
    in neither numerator nor denominator; with no present sample both shares are 0.

    Args:
      shapley: f[B] per-sample values.
      present: f[B] or bool[B] presence mask (non-zero = present); None = all present.

    Returns:
      (zero_fraction f[], tied_fraction f[]), each in [0, 1], dtype of `shapley`.
    """
    shapley = jnp.asarray(shapley)
    mask = jnp.ones(shapley.shape, bool) if present is None else jnp.asarray(present).astype(bool)
    n_present = jnp.maximum(jnp.sum(mask), 1).astype(shapley.dtype)
    zero = jnp.sum(mask & (shapley == 0)).astype(shapley.dtype) / n_present
    # Primary key: absent (True sorts last); secondary key: the value.
    order = jnp.lexsort((shapley, ~mask))
    values, kept = shapley[order], mask[order]
    equal_next = (values[1:] == values[:-1]) & kept[1:] & kept[:-1]
    no_pair = jnp.zeros((1,), bool)
    tied = jnp.concatenate([equal_next, no_pair]) | jnp.concatenate([no_pair, equal_next])
    return zero, jnp.sum(tied).astype(shapley.dtype) / n_present
