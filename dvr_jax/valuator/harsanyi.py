"""Harsanyi blocks (masked AND units) as Flax Linen modules, with the STE.

Reference: Chen et al., "HarsanyiNet", ICML 2023; DVR paper eqs. 5.5-5.6. docs/harsanyi.md
§2 (block), §5 (Variant G: layer-1 children are whole sample slots), §8 (STE
without custom_vjp). A unit m with children mask tau (hard 0/1 forward, sigmoid
surrogate backward) computes

  g_m = sum_k tau_mk c_mk,  delta_m = prod_k (tau_mk t_k + 1 - tau_mk),
  z_m = ReLU(g_m) * delta_m,

where c_mk is the contribution of input k (A_mk z_k, or <A_mb, X_b> for a grouped slot
b) and t_k in [0, 1] its trigger (tanh(gamma |z_k|), exactly 0 iff the input is 0). No
biases anywhere, so a unit is exactly 0 whenever any child is exactly 0 (condition E4).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from dvr_jax.typing import Array
from dvr_jax.valuator.children import children_logits_init
from dvr_jax.valuator.gates import and_units, slot_contributions, ste_mask


class HarsanyiTrace(NamedTuple):
    """Everything the Shapley read-out needs from one forward pass (L layers).

    Attributes:
      output: f[] network output y_G = sum_l <readouts[l], activations[l]> (+ bias).
      activations: per layer l, f[M_l] unit outputs z^(l).
      masks: per layer l, f[M_l, D_{l-1}] children masks tau^(l) (values in {0, 1}; they
        carry the STE gradient, so take `stop_gradient` before structural use). D_0 = B
        for Variant G and B * H' (sample-major features) for the flat variants.
      readouts: per layer l, f[M_l] read-out weights v^(l).
      bias: f[] output bias c0 (0 when disabled); it is the dividend of the empty set.
    """

    output: Array
    activations: tuple[Array, ...]
    masks: tuple[Array, ...]
    readouts: tuple[Array, ...]
    bias: Array


def _xavier_readout(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> Array:
    """Xavier-uniform init of a bias-free Linear(M, 1), stored as a vector f[M]."""
    bound = (6.0 / (shape[0] + 1)) ** 0.5
    return jax.random.uniform(key, shape, dtype, -bound, bound)


class HarsanyiBlock(nn.Module):
    """HarsanyiNet-MLP block over a flat input vector (feature-level children).

    Attributes:
      features: M, number of units.
      beta: STE surrogate scale.
      gamma_trig: trigger sharpness in tanh(gamma |z|).
      act_ratio: initial fraction of children per unit.
      v0: initial logit magnitude.
      children_init: "random" or "cover".
      param_dtype: parameter dtype.
    """

    features: int
    beta: float = 10.0
    gamma_trig: float = 1000.0
    act_ratio: float = 0.01
    v0: float = 1.0
    children_init: str = "random"
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, inputs: Array) -> tuple[Array, Array]:
        """Applies the block.

        Args:
          inputs: f[D] previous-layer activations (or flattened features).

        Returns:
          (z f[M], tau f[M, D]).
        """
        shape = (self.features, inputs.shape[0])
        logits = self.param(
            "children_logits",
            children_logits_init(self.children_init, self.act_ratio, self.v0),
            shape,
            self.param_dtype,
        )
        weights = self.param("weights", nn.initializers.xavier_uniform(), shape, self.param_dtype)
        tau = ste_mask(logits, self.beta)
        triggers = jnp.tanh(self.gamma_trig * jnp.abs(inputs))
        return and_units(tau, weights * inputs[None, :], triggers), tau


class GroupedHarsanyiBlock(nn.Module):
    """Variant G layer 1: each child is a whole sample slot (all of its H' features).

    Attributes:
      features: M_1, number of units.
      beta: STE surrogate scale.
      gamma_trig: trigger sharpness; slot trigger is tanh(gamma * ||X_b||_1).
      act_ratio: initial fraction of slots per unit.
      v0: initial logit magnitude.
      children_init: "random" or "cover".
      shared_slot_weights: if True, A[m, b, :] = a_m for all slots b (weights
        f[M, H']); otherwise the weights are f[H', M, B], the feature-major storage
        of A^(1)[m, b, k].
      param_dtype: parameter dtype.
    """

    features: int
    beta: float = 10.0
    gamma_trig: float = 1000.0
    act_ratio: float = 0.01
    v0: float = 1.0
    children_init: str = "random"
    shared_slot_weights: bool = False
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, inputs: Array) -> tuple[Array, Array]:
        """Applies the block.

        Args:
          inputs: f[B, H'] masked slot representations X (absent slots are all-zero
            rows).

        Returns:
          (z f[M], tau f[M, B]).
        """
        n_slots, width = inputs.shape
        logits = self.param(
            "children_logits",
            children_logits_init(self.children_init, self.act_ratio, self.v0),
            (self.features, n_slots),
            self.param_dtype,
        )
        if self.shared_slot_weights:
            init = nn.initializers.xavier_uniform()
            weights = self.param("weights", init, (self.features, width), self.param_dtype)
            contributions = weights @ inputs.T
        else:
            # Stored feature-major, A[k, m, b] = A^(1)_{m, b, k}: every slice is a
            # contiguous (M, B) plane, which XLA:CPU vectorises far better than a
            # trailing axis of size H'.
            init = nn.initializers.variance_scaling(1.0, "fan_avg", "uniform", in_axis=(0, 2), out_axis=1)
            shape = (width, self.features, n_slots)
            weights = self.param("weights", init, shape, self.param_dtype)
            contributions = slot_contributions(weights, inputs)
        tau = ste_mask(logits, self.beta)
        triggers = jnp.tanh(self.gamma_trig * jnp.sum(jnp.abs(inputs), axis=1))
        return and_units(tau, contributions, triggers), tau


class HarsanyiNet(nn.Module):
    """Stack of L Harsanyi blocks with a bias-free linear read-out per layer.

    Attributes:
      widths: (M_1, ..., M_L) units per block.
      grouped: True for Variant G (slot-level layer-1 children); False for the flat
        variants (F, P, C_compat) whose layer 1 reads the sample-major flattened
        features.
      beta, gamma_trig, act_ratio, v0: HarsanyiNet hyperparameters (docs/harsanyi.md §2, §5).
      children_init: "random" or "cover" (applies to layer 1; deeper layers are
        "random").
      shared_slot_weights: Variant G option, see `GroupedHarsanyiBlock`.
      output_bias: add a learnable c0 (the empty-set dividend; excluded from Shapley
        values).
      param_dtype: parameter dtype.
    """

    widths: Sequence[int] = (100, 100)
    grouped: bool = True
    beta: float = 10.0
    gamma_trig: float = 1000.0
    act_ratio: float = 0.01
    v0: float = 1.0
    children_init: str = "random"
    shared_slot_weights: bool = False
    output_bias: bool = False
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, inputs: Array) -> HarsanyiTrace:
        """Runs the network on masked slot representations.

        Args:
          inputs: f[B, H'] slot representations with absent slots zeroed.

        Returns:
          A `HarsanyiTrace` (output f[], per-layer activations, masks and read-outs).
        """
        common = dict(
            beta=self.beta,
            gamma_trig=self.gamma_trig,
            act_ratio=self.act_ratio,
            v0=self.v0,
            param_dtype=self.param_dtype,
        )
        if self.grouped:
            first = GroupedHarsanyiBlock(
                self.widths[0],
                children_init=self.children_init,
                shared_slot_weights=self.shared_slot_weights,
                name="block_0",
                **common,
            )
            z, tau = first(inputs)
        else:
            first = HarsanyiBlock(
                self.widths[0],
                children_init=self.children_init,
                name="block_0",
                **common,
            )
            z, tau = first(inputs.reshape(-1))
        activations, masks = [z], [tau]
        for layer, width in enumerate(self.widths[1:], start=1):
            z, tau = HarsanyiBlock(width, name=f"block_{layer}", **common)(z)
            activations.append(z)
            masks.append(tau)
        readouts = tuple(
            self.param(f"readout_{layer}", _xavier_readout, (width,), self.param_dtype)
            for layer, width in enumerate(self.widths)
        )
        bias = (
            self.param("bias", nn.initializers.zeros, (), self.param_dtype)
            if self.output_bias
            else jnp.zeros((), inputs.dtype)
        )
        output = bias + sum(jnp.dot(v, a) for v, a in zip(readouts, activations, strict=True))
        return HarsanyiTrace(output, tuple(activations), tuple(masks), readouts, bias)
