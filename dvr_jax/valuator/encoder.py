"""Row-wise sample encoders: per-sample features -> Harsanyi slot inputs.

Reference: DVR paper eq. 5.4 (2-layer ReLU -> tanh, scalar output) and the authors'
`value.py` (3 tanh layers over [user; pos; neg; loss]). docs/harsanyi.md §6 and
docs/departures.md §4: `encoder="code"` is the default, `encoder="paper"` the option;
both are trained. Encoders act on each row independently (no normalisation across
samples), which the exactness argument of docs/harsanyi.md §3 (E7) requires.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from dvr_jax.typing import Array

ENCODERS = ("code", "paper")


def torch_bias_init(fan_in: int):
    """PyTorch's default Linear bias init, U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / max(fan_in, 1) ** 0.5

    def init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def _dense(features: int, fan_in: int, use_bias: bool, dtype: jnp.dtype, name: str) -> nn.Dense:
    """Xavier-uniform Dense with a torch-style bias (the authors' initialisation)."""
    return nn.Dense(
        features,
        use_bias=use_bias,
        kernel_init=nn.initializers.xavier_uniform(),
        bias_init=torch_bias_init(fan_in),
        dtype=dtype,
        param_dtype=dtype,
        name=name,
    )


class CodeEncoder(nn.Module):
    """The authors' encoder: tanh(W3 tanh(W2 tanh(W1 x + b1) + b2)), W3 without bias.

    Attributes:
      out_dim: H (h_dim; 10, or 50 for the cc/ild configs).
      hidden: hidden widths (256, 128).
      use_loss_feature: read the last input column (the per-sample BPR loss); False is
        the ablation of docs/harsanyi.md §6.
      param_dtype: parameter and compute dtype.
    """

    out_dim: int = 10
    hidden: Sequence[int] = (256, 128)
    use_loss_feature: bool = True
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, feats: Array) -> Array:
        """Encodes every row.

        Args:
          feats: f[B, F] per-sample features, the BPR loss in the last column.

        Returns:
          f[B, H] slot representations in (-1, 1).
        """
        x = feats if self.use_loss_feature else feats[:, :-1]
        for index, width in enumerate(self.hidden):
            x = jnp.tanh(_dense(width, x.shape[1], True, self.param_dtype, f"dense_{index}")(x))
        last = _dense(self.out_dim, x.shape[1], False, self.param_dtype, "dense_out")
        return jnp.tanh(last(x))


class PaperEncoder(nn.Module):
    """The paper's encoder (eq. 5.4): scalar h_b = tanh(W2 ReLU(W1 e_b + b1) + b2).

    Attributes:
      hidden: width of the ReLU layer; None means d = (F - 1) / 3 (W1 in R^{d x 3d}).
      param_dtype: parameter and compute dtype.
    """

    hidden: int | None = None
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, feats: Array) -> Array:
        """Encodes every row, ignoring the loss column (the paper has no loss feature).

        Args:
          feats: f[B, F] per-sample features, the BPR loss in the last column.

        Returns:
          f[B, 1] slot representations in (-1, 1).
        """
        x = feats[:, :-1]
        width = self.hidden if self.hidden is not None else max(1, x.shape[1] // 3)
        x = jax.nn.relu(_dense(width, x.shape[1], True, self.param_dtype, "dense_0")(x))
        return jnp.tanh(_dense(1, width, True, self.param_dtype, "dense_out")(x))
