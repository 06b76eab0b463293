"""The valuator's Linen module: encoder, constant column, presence mask, Harsanyi net.

Reference: DVR paper, Sec. 5.1; docs/harsanyi.md §6 (encoder), §3 E1 (a player is masked
by zeroing its slot *after* the row-wise encoder) and §5 (constant-1 column, Variant G).
The learnable probability-map offset c (docs/algorithm.md §4.2) is created here so
that all of Lambda lives in one parameter pytree.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from dvr_jax.typing import Array
from dvr_jax.valuator.encoder import CodeEncoder, PaperEncoder
from dvr_jax.valuator.harsanyi import HarsanyiNet, HarsanyiTrace


class DataValuator(nn.Module):
    """Linen module: features -> encoder -> const column -> mask -> Harsanyi trace.

    Attributes:
      encoder: "code" or "paper".
      h_dim: H, encoder output width.
      encoder_hidden: hidden widths of the code encoder.
      use_loss_feature: code encoder reads the loss column.
      variant: "G", "F", "P" or "C_compat" (only G is grouped).
      widths: Harsanyi units per layer.
      const_column: append a constant-1 column to every slot (H' = H + 1).
      harsanyi: remaining `HarsanyiNet` keyword arguments.
      param_dtype: parameter dtype.
    """

    encoder: str = "code"
    h_dim: int = 10
    encoder_hidden: Sequence[int] = (256, 128)
    use_loss_feature: bool = True
    variant: str = "G"
    widths: Sequence[int] = (100, 100)
    const_column: bool = True
    harsanyi: dict | None = None
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, feats: Array, present: Array) -> HarsanyiTrace:
        """Runs the valuator on one batch.

        Args:
          feats: f[B, F] per-sample features (loss last).
          present: f[B] or bool[B] presence mask mu; absent slots are zeroed *after* the
            encoder.

        Returns:
          The Harsanyi `HarsanyiTrace` of the masked batch.
        """
        self.param("offset", nn.initializers.zeros, (), self.param_dtype)
        if self.encoder == "code":
            enc = CodeEncoder(
                self.h_dim,
                self.encoder_hidden,
                self.use_loss_feature,
                self.param_dtype,
                name="encoder",
            )
        else:
            enc = PaperEncoder(param_dtype=self.param_dtype, name="encoder")
        slots = enc(feats)
        if self.const_column:
            slots = jnp.concatenate([slots, jnp.ones((slots.shape[0], 1), slots.dtype)], axis=1)
        slots = slots * present.astype(slots.dtype)[:, None]
        net = HarsanyiNet(
            self.widths,
            grouped=self.variant == "G",
            param_dtype=self.param_dtype,
            name="harsanyi",
            **(self.harsanyi or {}),
        )
        return net(slots)
