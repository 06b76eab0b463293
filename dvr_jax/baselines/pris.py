"""PRIS: personalised ranking with importance sampling of L negatives per positive.

Reference: Lian, Liu, Chen, "Personalized Ranking with Importance Sampling", WWW 2020; the
"PRIS(U)" mode of swt-user/WWW_2023_code `model.py`. docs/baselines.md §6:

.. math::
    j_1 \\dots j_L \\sim q(\\cdot \\mid u) \\text{ on } I \\setminus S_u^+, \\quad
    w_l = \\mathrm{softmax}_l\\big(\\hat y_{u j_l} / \\tau_w - \\log q(j_l)\\big), \\quad
    \\mathcal L_{ui} = \\sum_l \\mathrm{sg}(w_l)\\, \\ell(u, i, j_l)

(self-normalised importance weights of the softmax-over-scores target distribution).
Proposals: "uniform" (PRIS-U, default; −log q is a per-user constant and cancels) and "pop"
(q ∝ pop(j) restricted to I minus S_u+; its per-user normaliser cancels likewise, so only
−log pop(j) enters). The WWW 2020 paper's cluster-based proposals are not implemented.
On the shared step (docs/engineering.md §12) PRIS is a sampler of L negatives, which hands
log q to its weighter through `Batch.info`, and the importance-weight weighter.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from dvr_jax.backbones.base import Backbone
from dvr_jax.baselines.negatives import popularity_cdf, rejection_negatives, sample_from_cdf, uniform_negatives
from dvr_jax.step import Batch, Context, Method, Sampler, make_method, stateless_weighter
from dvr_jax.typing import Array, Params

PROPOSALS = ("uniform", "pop")


def importance_weights(neg_scores: Array, log_proposal: Array, temperature: float = 1.0) -> Array:
    """Self-normalised weights softmax_l(ŷ_{u j_l} / τ − log q(j_l)).

    Args:
      neg_scores: f32[B, L] scores of the sampled negatives.
      log_proposal: f32[B, L] log q(j_l) up to a per-row constant (zeros for uniform).
      temperature: τ_w.

    Returns:
      f32[B, L], rows summing to 1.
    """
    return jax.nn.softmax(neg_scores / temperature - log_proposal, axis=-1)


def make_pris_method(
    backbone: Backbone,
    *,
    num_negatives: int = 5,
    temperature: float = 1.0,
    proposal: str = "uniform",
    learning_rate: float = 1e-3,
    reduction: str = "sum",
    init_params: Params | None = None,
) -> Method:
    """PRIS on any backbone.

    Args:
      backbone: the backbone.
      num_negatives: L.
      temperature: τ_w.
      proposal: "uniform" or "pop" (needs `aux["popularity"]` f32[I] in the step data).
      learning_rate: Adam step size.
      reduction: "sum" or "mean" over the B positives.
      init_params: warm start.

    Returns:
      The method; metrics add "weight_entropy" (mean entropy of the weights, log L when flat).
    """
    if proposal not in PROPOSALS:
        raise ValueError(f"unknown PRIS proposal {proposal!r}; known: {', '.join(PROPOSALS)}")

    def sample(streams, state, count, pair_index, data, reps):
        del count, reps
        users, pos_items = data.train.users[pair_index], data.train.items[pair_index]
        slots = jnp.broadcast_to(users[:, None], (users.shape[0], num_negatives))
        if proposal == "uniform":
            neg_items = uniform_negatives(streams["sample"], data.train, slots)
            log_q = jnp.zeros(slots.shape, jnp.float32)
        else:
            popularity = data.aux["popularity"]
            cdf = popularity_cdf(popularity)
            propose = lambda k: sample_from_cdf(k, cdf, slots.shape)  # noqa: E731
            neg_items, _ = rejection_negatives(streams["sample"], data.train, slots, propose)
            log_q = jnp.log(popularity[neg_items])
        return Batch(users, pos_items, neg_items, {"log_q": log_q}), state

    def weights(ctx: Context) -> Array:
        return importance_weights(ctx.forward.neg, ctx.batch.info["log_q"], temperature)

    def metrics(w: Array, ctx: Context) -> dict[str, Array]:
        return {"weight_entropy": -jnp.mean(jnp.sum(w * jnp.log(w + 1e-12), axis=-1))}

    return make_method("pris", backbone, Sampler(sample), stateless_weighter(weights, metrics),
                       learning_rate=learning_rate, reduction=reduction, init_params=init_params)  # fmt: skip
