"""TIL-UI / TIL-MI: triplet weights from a generator MLP learned by one-step look-ahead.

Reference: Wu, Ma, Zhang, Liu, Tang, Coates, "Adapting Triplet Importance of Implicit Feedback
for Personalized Recommendation", CIKM 2022 (arXiv:2208.01709). docs/baselines.md §9.

Sources and what was settled. The paper's method section was not readable with our
tools (only its abstract and introduction). We read the authors' released code,
github.com/haolun-wu/TIL @ b789fff (`main_MF.py`, `main_MF_cluster.py`, `model/MF.py`,
`model/MF_cluster.py`, `model/Graph.py`), and the third-party port
PeppeJerry/Cross-Attention-Review-to-User-CARU- @ c597a7e (`models/TIL.py`, `main_NEI.py`).
  * UI state: the released code's default (`--state 12`) is
    `[u⊙i + ν_u⊙i ; u⊙j + ν_u⊙j]`, ν_u = mean embedding of u's training positives — exactly
    our first design (and the port). Settled: verified.
  * MI state: the released code's default (`--state 19`) is
    `[u⊙i + u⊙c_i + c_i⊙i ; u⊙j + u⊙c_j + c_j⊙j]` with c_i the *centroid* of i's k-means
    community (recomputed from the current embeddings every step; the labels are refreshed
    every 10 epochs by k-means with n_c = 20). Our first design's per-user community interest
    ν_u^{(c(i))} (from memory, unverified) is not in that code. Settled: `mi_state="centroid"`
    (released code) by default, `"user"` keeps that variant.
  * Generator: released code `Linear(S, 64) → ReLU → Linear(64, 1, no bias) → softplus` (the
    sigmoid is commented out); the port and our first design add a layer norm on the state and use a
    sigmoid. Settled: hidden H = 64 (= d), output `softplus` by default (`output="sigmoid"`
    for the port's), and the layer norm kept — our ego embeddings have std ~1/d, so without it
    every state is ~1e-4 and the generator could hardly tell triplets apart.
  * Bilevel update: the released code takes an SGD look-ahead step (α = 1e-3, on the rows in
    the batch) on the weighted summed loss, and its outer loss is the *same training batch's*
    unweighted BPR at Θ'; the generator is trained by Adam (lr 1e-3, coupled wd 0.1) and the
    model by Adam on the weighted loss. Settled: our first design's meta-reweighting form with a
    validation mini-batch (`outer="valid"`, default; every validation pair with a fresh
    uniform negative, B_val = B pairs drawn per step); `outer="train"` reproduces the released
    code's outer objective. Order as in that design: generator first, then the backbone with the
    new, detached weights. Generator weight decay 0 by default: the meta-gradients are ~1e-8,
    so a coupled wd of 0.1 would only shrink the generator to a constant weight.
  * Not reproduced from the released code: its 100 plain-BPR warm-up epochs before MI's
    bilevel phase (use `--warm-start auto` for a BPR start), the model gradient that leaks from
    the outer loss and through the (non-detached) weights, and `trick=norm/clip`.
Per step, with ℓ_b(Θ) the BPR losses, w(Φ) the generator output on sg(states):
  1. Θ' = Θ − α ∇_Θ [reduce_b w_b ℓ_b + reg] (α = the backbone learning rate);
  2. Φ ← Adam(∇_Φ L_out(Θ'(Φ))), with ∂L_out/∂w_b = −α ⟨∇_Θ ℓ_b, ∇L_out(Θ')⟩ (exact: Θ' is
     linear in w; computed by differentiating the VJP of the per-sample losses);
  3. Θ ← Adam(∇_Θ [reduce_b sg(w_b(Φ_new)) ℓ_b + reg]).
States use the backbone's ego embeddings (`pair_features`, as the DVR valuator does), so they
are defined for every backbone (NeuMF: [GMF; MLP] tables).

On the shared step (docs/engineering.md §12) TIL is a weighter with the generator and the
communities as its state. Its `weights` has the step's forward: steps 1-2 pull the generator's
weights back through the forward's VJP (the virtual step) and differentiate that pullback (the
meta-gradient), and it returns the *new* generator's detached weights, which the shared step
pulls back once more for step 3. Opening, forward, gradient and Adam update are the shared ones.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from dvr_jax import losses, sampler
from dvr_jax.backbones.base import Backbone
from dvr_jax.baselines import til_parts
from dvr_jax.state import LearnerState, make_adam
from dvr_jax.step import (
    Context,
    Method,
    StateLayout,
    Weighter,
    make_method,
    pull_back,
    score_batch,
    uniform_sampler,
)
from dvr_jax.typing import Array, Params, PRNGKey

OUTER = ("valid", "train")
TIL_STREAMS = ("sample", "dropout", "outer", "cluster")  # the step's random streams, in split order


class TILState(struct.PyTreeNode):
    """Backbone and generator learners, plus the item communities (int32[I]; unused [1] for UI)."""

    backbone: LearnerState
    generator: LearnerState
    clusters: Array


TIL_LAYOUT = StateLayout(
    lambda state: (state.backbone, None, (state.generator, state.clusters)),
    lambda learner, sampler_state, weighter_state: TILState(learner, *weighter_state),
)


def tree_vdot(a: Params, b: Params) -> Array:
    """Σ over leaves of <a, b>, f32[]."""
    return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def meta_weight_gradient(vjp_fn, weights: Array, outer_grads: Params, lookahead_lr: float, scale: float) -> Array:
    """∂L_out(Θ'(w))/∂w_b = −α · scale · <∇_Θ ℓ_b, ∇L_out(Θ')>, f32[B].

    Args:
      vjp_fn: the VJP of `Θ -> (per-sample losses f32[B], regulariser f32[])` at Θ.
      weights: f32[B] the current weights (the map is linear, so only their shape matters).
      outer_grads: ∇_Θ L_out at the look-ahead parameters.
      lookahead_lr: α.
      scale: 1 for a summed inner loss, 1/B for a mean.

    Returns:
      f32[B].
    """

    def inner_dot(w):
        (grads,) = vjp_fn((w * scale, jnp.zeros((), w.dtype)))
        return tree_vdot(grads, outer_grads)

    return -lookahead_lr * jax.grad(inner_dot)(weights)


def make_til_method(
    backbone: Backbone,
    *,
    n_items: int,
    state_dim: int,
    variant: str = "ui",
    hidden: int = 64,
    output: str = "softplus",
    outer: str = "valid",
    mi_state: str = "centroid",
    n_clusters: int = 20,
    cluster_every: int = 1,
    valid_batch: int = 1024,
    meta_learning_rate: float = 1e-3,
    meta_weight_decay: float = 0.0,
    learning_rate: float = 1e-3,
    reduction: str = "sum",
    init_params: Params | None = None,
) -> Method:
    """TIL-UI ("ui") or TIL-MI ("mi") on any backbone.

    Args:
      backbone: the backbone.
      n_items: I.
      state_dim: S = 2E (2/3 of `pair_features`' width).
      variant: "ui" or "mi".
      hidden: generator width H.
      output: "softplus" or "sigmoid".
      outer: "valid" (validation mini-batch) or "train" (the same training batch).
      mi_state: "centroid" or "user" (MI only).
      n_clusters: n_c (MI only).
      cluster_every: steps between k-means refreshes (MI only; the first step clusters).
      valid_batch: validation pairs per outer loss.
      meta_learning_rate: generator Adam step size.
      meta_weight_decay: generator coupled L2.
      learning_rate: backbone Adam step size and look-ahead α.
      reduction: "sum" or "mean".
      init_params: warm start.

    Returns:
      The method. Step data: `StepData` with aux "mean_op" (U×I row-normalised training
      matrix) and, for `outer="valid"`, "valid_users" / "valid_items" int32[Q].
    """

    def init(key: PRNGKey, params: Params) -> tuple[LearnerState, Array]:
        tx = make_adam(meta_learning_rate, meta_weight_decay)
        generator = LearnerState.create(til_parts.init_generator(key, state_dim, hidden), tx)
        clusters = jnp.zeros((n_items if variant == "mi" else 1,), jnp.int32)  # orbax: no zero-size arrays
        return generator, clusters

    def triplet_states(params, clusters, key, count, batch, data):
        users, pos_items, neg_items = batch.users, batch.pos_items, batch.neg_items
        params = jax.lax.stop_gradient(params)
        user, pos, neg, table = til_parts.entity_embeddings(backbone, params, users, pos_items, neg_items, n_items)
        if variant == "mi":
            refresh = lambda t: til_parts.kmeans(key, t, n_clusters)  # noqa: E731
            clusters = jax.lax.cond(count % cluster_every == 0, refresh, lambda t: clusters, table)
        if variant == "ui" or mi_state == "user":
            interest = til_parts.user_interest(data.aux["mean_op"], table)[users]
        if variant == "ui":
            return til_parts.ui_state(user, pos, neg, interest), clusters
        if mi_state == "centroid":
            centroids = til_parts.community_centroids(table, clusters, n_clusters)
            pos_center, neg_center = centroids[clusters[pos_items]], centroids[clusters[neg_items]]
            return til_parts.centroid_state(user, pos, neg, pos_center, neg_center), clusters
        community = lambda items: til_parts.user_community_interest(  # noqa: E731
            data.train, table, clusters, n_clusters, users, items, interest
        )
        states = jnp.concatenate([pos * user + pos * community(pos_items), neg * user + neg * community(neg_items)], -1)
        return states, clusters

    def outer_loss(params, key, data, batch):
        if outer == "train":
            users, pos_items, neg_items = batch.users, batch.pos_items, batch.neg_items
        else:
            k_pick, k_negative = jax.random.split(key)
            pick = jax.random.randint(k_pick, (valid_batch,), 0, data.aux["valid_users"].shape[0])
            users, pos_items = data.aux["valid_users"][pick], data.aux["valid_items"][pick]
            neg_items = sampler.sample_uniform_negatives(k_negative, data.train, users)
        reps = backbone.encode(params, data.graph)
        pos, neg = score_batch(backbone, reps, users, pos_items, neg_items, None, None)
        return jnp.mean(losses.bpr_per_sample(pos, neg))

    def weights(weighter_state, ctx: Context):
        """Steps 1-2 of the module doc (virtual step, generator update); returns the new weights."""
        generator, clusters = weighter_state
        params, fwd, scale = ctx.learner.params, ctx.forward, ctx.scale
        states, clusters = triplet_states(params, clusters, ctx.streams["cluster"], ctx.count, ctx.batch, ctx.data)
        generate = lambda g: til_parts.generator_weights(g, states, output)  # noqa: E731
        weights, generator_vjp = jax.vjp(generate, generator.params)
        inner_grads = pull_back(fwd, weights, scale)
        lookahead = jax.tree.map(lambda t, g: t - learning_rate * g, params, inner_grads)
        out_loss, outer_grads = jax.value_and_grad(outer_loss)(lookahead, ctx.streams["outer"], ctx.data, ctx.batch)
        weight_grads = meta_weight_gradient(fwd.vjp, weights, outer_grads, learning_rate, scale)
        (generator_grads,) = generator_vjp(weight_grads)
        generator = generator.apply_gradients(generator_grads)
        new_weights = jax.lax.stop_gradient(generate(generator.params))
        metrics = {
            "finite": jnp.isfinite(out_loss) & jnp.all(jnp.isfinite(new_weights)), "outer_loss": out_loss,
            "mean_weight": jnp.mean(new_weights), "weight_std": jnp.std(new_weights),
        }  # fmt: skip
        return new_weights, ((generator, clusters), metrics)

    def update(weighter_state, carry, rows, ctx):
        return carry

    return make_method(f"til-{variant}", backbone, uniform_sampler(), Weighter(weights, update, init),
                       learning_rate=learning_rate, reduction=reduction, init_params=init_params,
                       streams=TIL_STREAMS, layout=TIL_LAYOUT)  # fmt: skip
