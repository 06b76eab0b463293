"""The sample game: the default data valuator, a cooperative game over the samples.

Why. The slot valuator (`make_slot_valuator`) indexes its layer-1 parameters by batch
*position*; batches are random permutations of the training pairs, so its values say
which slot a sample landed in, not what the sample is. The sample game instead builds
every term from one shared row-wise encoder, so a sample's value depends on its own
features and on those of the samples it is batched with, never on its position, and
one parameter set serves every batch size.

The game. Each present sample b is encoded row-wise (no operation across samples) by
the `CodeEncoder`, a tanh MLP over its features [sg(p_u); sg(q_i); sg(q_j); sg(loss)]
(the caller's `valuator_features` applies the stop-gradients), into h_b in (-1, 1)^H.
From h_b:

* a first-order term f_b = <w, h_b> + c (w, c learned);
* for every interaction order k = 2..K (K = `max_order`, at most 4), a vector
  u^(k)_b = U_k h_b in R^r (r = `interaction_rank`; no bias).

Let n be the number of slots B of the batch (static; absent slots still count) and
s_k = 1 / (n - 1)^(k - 1) (1 when n = 1), a fixed scale that keeps each order's share
of v(N) at O(n) whatever the batch size, so the same parameters work for any B. The
game on the set N of present samples is defined by its Harsanyi dividends:

  I({b}) = f_b,   I(T) = s_k sum_r prod_{b in T} u^(k)_{b,r}  for |T| = k in 2..K,
  I(T) = 0 for |T| > K, v(empty) = 0,

so that, with e_k the elementary symmetric polynomial of degree k,

  v(S) = sum_{b in S} f_b + sum_{k=2}^K s_k sum_r e_k({u^(k)_{b,r}}_{b in S}).

`output(params, feats, present)` evaluates v(S) for S = {b: present_b = 1} by
multiplying the rows f_b and u^(k)_b of absent samples by 0 (they then contribute
nothing to any sum), which is how the brute-force tests enumerate the game.

Exact Shapley values. v is a sum of dividends over subsets of S by construction
(e_k over S sums the products over all k-subsets of S). The Shapley value of any game
is its Harsanyi dividends shared equally among their members,
phi_b = sum_{T containing b} I(T) / |T|, so here

  phi_b = f_b + sum_{k=2}^K (s_k / k) sum_r u^(k)_{b,r} e_{k-1}(N \\ b; r, k),
  e_{k-1}(N \\ b; r, k) = e_{k-1}({u^(k)_{c,r}}_{c in N \\ b}),

for a present b, and phi_b = 0 for an absent one (it belongs to no coalition with a
non-zero dividend). For K = 2 this is f_b + <u_b, sum_{c != b} u_c> / (2 (n - 1)).
The degree-j polynomials of all present samples come from the power sums by Newton's
identities, e_j = (1/j) sum_{i=1}^{j} (-1)^(i-1) e_{j-i} p_i, and the leave-one-out
ones from e_j(-b) = e_j - u_b e_{j-1}(-b), e_0(-b) = 1; both vectorised over samples
and rank. Efficiency sum_b phi_b = v(N) - v(empty) = v(N) holds exactly in exact
arithmetic and to rounding in floating point.

Properties. Permutation-equivariant (every term is a symmetric function of the other
samples); batch-size free (no parameter has a B axis); no structural null players
(every sample has its own first-order dividend); the pairwise (and higher) dividends
make the game non-additive, so a sample's value moves with its batch-mates.

Cost. One encoder pass per sample, then O(B r K) for the dividends, the power sums and
the leave-one-out polynomials: O(B (encoder + r K)) time and memory per forward pass,
with no 2^B or B^2 term.

Parameter pytree: {"encoder": CodeEncoder params, "game": {"first_order": {"kernel":
f[H, 1], "bias": f[1]}, "order_k": {"kernel": f[H, r]} for k = 2..K}, "offset": f[]}
(`offset` is the learnable offset of the probability map).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import flax.linen as nn
import jax.numpy as jnp

from dvr_jax.typing import Array
from dvr_jax.valuator.encoder import CodeEncoder
from dvr_jax.valuator.shapley import value_statistics
from dvr_jax.valuator.valuator import Valuator, ValuatorOutput, assemble_valuator
from dvr_jax.valuator.value_map import VALUE_MAPS

MAX_ORDER = 4
DEFAULT_H_DIM = 32


class SampleGameTrace(NamedTuple):
    """The per-sample terms of one batch (rows of absent samples are 0).

    Attributes:
      first_order: f[B] first-order dividends f_b = <w, h_b> + c, times present_b.
      interactions: per order k = 2..K, f[B, r] interaction vectors u^(k)_b, times
        present_b (an empty tuple when K = 1).
      present: f[B] the presence mask as a float.
    """

    first_order: Array
    interactions: tuple[Array, ...]
    present: Array


def interaction_scale(n_slots: int, order: int) -> float:
    """s_k = 1 / (n - 1)^(k - 1) (1 when n = 1), a static Python float.

    Args:
      n_slots: n, the static number of batch slots (absent slots included).
      order: k >= 1.

    Returns:
      The scale of every order-k dividend.
    """
    return 1.0 / float(max(n_slots - 1, 1)) ** (order - 1)


def elementary_symmetric(values: Array, degree: int) -> tuple[Array, ...]:
    """Elementary symmetric polynomials of the rows of `values`, by Newton's identities.

    Args:
      values: f[B, r]; polynomial j of column r is e_j(values[:, r]).
      degree: highest degree d (small: at most `MAX_ORDER`).

    Returns:
      (e_0, ..., e_d), each f[r] (e_0 = 1).
    """
    powers, power = [], jnp.ones_like(values)
    for _ in range(degree):
        power = power * values
        powers.append(jnp.sum(power, axis=0))
    polys = [jnp.ones_like(values[0])]
    for j in range(1, degree + 1):
        total = jnp.zeros_like(polys[0])
        for i in range(1, j + 1):
            term = polys[j - i] * powers[i - 1]
            total = total + term if i % 2 == 1 else total - term
        polys.append(total / j)
    return tuple(polys)


def leave_one_out(polys: Sequence[Array], values: Array) -> tuple[Array, ...]:
    """Elementary symmetric polynomials of all rows but one, for every row.

    Uses e_j(-b) = e_j - x_b e_{j-1}(-b), e_0(-b) = 1.

    Args:
      polys: (e_0, ..., e_d) of all rows, each f[r] (`elementary_symmetric`).
      values: f[B, r] the rows x_b.

    Returns:
      (e_0(-b), ..., e_d(-b)), each f[B, r].
    """
    out = [jnp.ones_like(values)]
    for poly in polys[1:]:
        out.append(poly[None, :] - values * out[-1])
    return tuple(out)


def game_value(trace: SampleGameTrace) -> Array:
    """v(S) of the present samples S: first-order terms plus scaled e_k per order.

    Args:
      trace: the masked per-sample terms.

    Returns:
      f[] the game value (0 on the empty coalition).
    """
    n_slots = trace.first_order.shape[0]
    total = jnp.sum(trace.first_order)
    for order, vectors in enumerate(trace.interactions, start=2):
        e_k = elementary_symmetric(vectors, order)[order]
        total = total + interaction_scale(n_slots, order) * jnp.sum(e_k)
    return total


def game_shapley(trace: SampleGameTrace) -> Array:
    """Exact Shapley values of the present samples (Harsanyi dividends shared equally).

    Args:
      trace: the masked per-sample terms.

    Returns:
      f[B]; 0 for absent samples, and sum(phi) = `game_value(trace)`.
    """
    n_slots = trace.first_order.shape[0]
    phi = trace.first_order
    for order, vectors in enumerate(trace.interactions, start=2):
        polys = elementary_symmetric(vectors, order - 1)
        others = leave_one_out(polys, vectors)[order - 1]
        share = interaction_scale(n_slots, order) / order
        phi = phi + share * jnp.sum(vectors * others, axis=1)
    return phi * trace.present


class GameTerms(nn.Module):
    """Per-sample dividend terms from encodings: f_b and u^(k)_b, masked by presence.

    Attributes:
      interaction_rank: r.
      max_order: K (1 = additive game).
      param_dtype: parameter and compute dtype.
    """

    interaction_rank: int = 8
    max_order: int = 2
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, codes: Array, present: Array) -> SampleGameTrace:
        """Computes the terms of every sample.

        Args:
          codes: f[B, H] row-wise encodings h_b.
          present: f[B] or bool[B] presence mask.

        Returns:
          The `SampleGameTrace` (absent rows zeroed).
        """
        mask = present.astype(codes.dtype)
        first = nn.Dense(
            1,
            kernel_init=nn.initializers.lecun_normal(),
            bias_init=nn.initializers.zeros,
            dtype=self.param_dtype,
            param_dtype=self.param_dtype,
            name="first_order",
        )(codes)[:, 0]
        interactions = tuple(
            nn.Dense(
                self.interaction_rank,
                use_bias=False,
                kernel_init=nn.initializers.lecun_normal(),
                dtype=self.param_dtype,
                param_dtype=self.param_dtype,
                name=f"order_{order}",
            )(codes)
            * mask[:, None]
            for order in range(2, self.max_order + 1)
        )
        return SampleGameTrace(first * mask, interactions, mask)


class SampleGame(nn.Module):
    """Linen module of the sample game: row-wise encoder -> per-sample dividend terms.

    Also creates the probability-map offset, so all parameters live in one pytree
    {"encoder", "game", "offset"}. No parameter depends on the batch size.

    Attributes:
      h_dim: H, encoder output width.
      encoder_hidden: hidden widths of the code encoder.
      use_loss_feature: the encoder reads the loss column.
      interaction_rank: r.
      max_order: K.
      param_dtype: parameter and compute dtype.
    """

    h_dim: int = DEFAULT_H_DIM
    encoder_hidden: Sequence[int] = (256, 128)
    use_loss_feature: bool = True
    interaction_rank: int = 8
    max_order: int = 2
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, feats: Array, present: Array) -> SampleGameTrace:
        """Runs the encoder and the dividend terms on one batch.

        Args:
          feats: f[B, F] per-sample features (loss last).
          present: f[B] or bool[B] presence mask.

        Returns:
          The `SampleGameTrace` of the masked batch.
        """
        self.param("offset", nn.initializers.zeros, (), self.param_dtype)
        codes = CodeEncoder(
            self.h_dim,
            tuple(self.encoder_hidden),
            self.use_loss_feature,
            self.param_dtype,
            name="encoder",
        )(feats)
        return GameTerms(self.interaction_rank, self.max_order, self.param_dtype, name="game")(codes, present)


def make_sample_valuator(
    *,
    h_dim: int | None = None,
    encoder_hidden: Sequence[int] = (256, 128),
    use_loss_feature: bool = True,
    interaction_rank: int = 8,
    max_order: int = 2,
    value_map: str = "sigmoid",
    kappa: float = 1.0,
    eps: float = 1e-3,
    gamma_dv: float = 100.0,
    param_dtype: jnp.dtype = jnp.float32,
) -> Valuator:
    """Builds the sample-game valuator (the default kind; see the module docstring).

    Args:
      h_dim: H, encoder output width; None means 32.
      encoder_hidden: code-encoder hidden widths.
      use_loss_feature: the encoder reads the loss column.
      interaction_rank: r, width of every interaction vector u^(k)_b.
      max_order: K, highest interaction order, 1..4 (1 = additive game).
      value_map: "sigmoid" (default) or "code" (as for the slot valuator).
      kappa: sigmoid slope.
      eps: sigmoid probability floor.
      gamma_dv: `code` map scale.
      param_dtype: float32 for training, float64 for exactness tests.

    Returns:
      A `Valuator` NamedTuple of pure, jit-able functions; `init` does not fix B.
    """
    h_dim = DEFAULT_H_DIM if h_dim is None else int(h_dim)
    if h_dim < 1:
        raise ValueError(f"h_dim must be >= 1, got {h_dim}")
    if interaction_rank < 1:
        raise ValueError(f"interaction_rank must be >= 1, got {interaction_rank}")
    if not 1 <= max_order <= MAX_ORDER:
        raise ValueError(f"max_order must be in 1..{MAX_ORDER}, got {max_order}")
    if value_map not in VALUE_MAPS:
        raise ValueError(f"value_map must be one of {VALUE_MAPS}, got {value_map!r}")
    module = SampleGame(
        h_dim=h_dim,
        encoder_hidden=tuple(encoder_hidden),
        use_loss_feature=use_loss_feature,
        interaction_rank=int(interaction_rank),
        max_order=int(max_order),
        param_dtype=param_dtype,
    )

    def read_out(tr: SampleGameTrace, present: Array) -> ValuatorOutput:
        """v(N), exact Shapley values f[B] and diagnostics of one trace."""
        values = game_shapley(tr)
        mask = tr.present > 0
        n_present = jnp.maximum(jnp.sum(mask), 1).astype(values.dtype)
        active = jnp.sum(mask & (tr.first_order != 0)).astype(values.dtype) / n_present
        zero_fraction, tied_fraction = value_statistics(values, mask)
        zero = jnp.zeros((), values.dtype)  # no structural null players
        return ValuatorOutput(game_value(tr), values, zero, active, zero_fraction, tied_fraction)

    map_options = dict(value_map=value_map, kappa=kappa, eps=eps, gamma_dv=gamma_dv)
    # v({b}) = f_b: a one-sample coalition carries no interaction.
    return assemble_valuator(module, read_out, game_value, map_options=map_options,
                             singletons=lambda tr: tr.first_order)  # fmt: skip
