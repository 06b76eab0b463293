"""The one weighted-BPR train step and its seam: a negative sampler plus a sample weighter.

Every trained method (BPR, the baselines of docs/baselines.md, DVR of docs/algorithm.md) is this
step with two plug-ins, NamedTuples of pure functions in the style of optax's
`GradientTransformation` (docs/engineering.md §2 and §12):

  1. opening: fold the backbone's update count into the run key and split it into the method's
     named streams (docs/engineering.md §4: every draw depends only on (seed, step)); the
     `Sampler` draws the batch's triplets on device (docs/algorithm.md §2);
  2. forward: encode once, score positives and negatives, per-sample BPR losses and the
     backbone regulariser (docs/algorithm.md §3.1), kept as one `jax.vjp`. A sampler whose
     negatives depend on the current representations (AOBPR) draws them between the encoder and
     the scoring; the encoder's own VJP then carries the gradient back (docs/baselines.md §1);
  3. weights: the `Weighter` reads the forward and returns weights w of the losses' shape
     (f32[B], or f32[B, L] for L negatives per positive), or M rows of them (f32[M, B]);
  4. update: the detached weights are pulled back through the one VJP as cotangents, which is
     the gradient of `reduce_b w_b ℓ_b + regulariser` (reduce = sum, or mean over B), and Adam
     steps once per row from the same (Θ_t, Adam state). Training continues from row 0; the
     weighter's `update` receives every row's learner, so DVR rewards its hypothetical models
     (docs/algorithm.md §5) without a second forward.

A method's state is its backbone learner, its sampler state and its weighter state; a
`StateLayout` maps them to and from the pytree the method checkpoints (BPR's is the bare
learner, DVR's `DVRState`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from dvr_jax import losses, sampler
from dvr_jax.backbones.base import Backbone, Graph, Reps
from dvr_jax.state import LearnerState, make_adam
from dvr_jax.typing import Array, Params, PRNGKey

Streams = dict[str, PRNGKey]
DEFAULT_STREAMS = ("sample", "dropout")


class StepData(NamedTuple):
    """Arrays every step reads (arguments of the jitted step, never closure constants).

    Attributes:
      train: training positives.
      graph: the backbone's graph (None for backbones without one).
      aux: the method's own device arrays: a dict for the baselines (item popularity,
        validation pairs), DVR's `RewardData`, or None.
    """

    train: sampler.TrainArrays
    graph: Graph
    aux: Any = None


class Batch(NamedTuple):
    """The triplets a sampler drew: users and positives i32[B], negatives i32[B] or i32[B, L];
    `info` holds per-sample extras for the method's weighter (PRIS: log q of the negatives)."""

    users: Array
    pos_items: Array
    neg_items: Array
    info: Any = None


class Forward(NamedTuple):
    """The step's one backbone forward.

    Attributes:
      per_sample: f32[B] (or f32[B, L]) BPR losses ℓ at Θ_t.
      pos, neg: pre-sigmoid scores, f32[B] and f32[B] / f32[B, L].
      regularizer: f32[] the backbone's batch regulariser.
      vjp: `vjp((ct_losses, ct_regularizer)) -> (grads,)`, the pullback of Θ -> (ℓ, reg).
      losses: `losses(params) -> (ℓ, reg)` on the same batch and dropout draws (None when the
        negatives were drawn from the representations).
    """

    per_sample: Array
    pos: Array
    neg: Array
    regularizer: Array
    vjp: Callable
    losses: Callable | None


class Context(NamedTuple):
    """What a weighter sees: the update count t, the streams, the batch's pair indices i32[B],
    the learner at Θ_t, the batch, the forward, the step data, and the reduction's scale (1, or
    1/B for a mean)."""

    count: Array
    streams: Streams
    pair_index: Array
    learner: LearnerState
    batch: Batch
    forward: Forward
    data: StepData
    scale: float


class Sampler(NamedTuple):
    """Draws a batch of triplets on device.

    Attributes:
      sample: `sample(streams, state, count, pair_index i32[B], data, reps) -> (Batch, state)`;
        `reps` are the detached representations at Θ_t when `uses_reps`, else None.
      init: `init(params) -> state`, or None for a stateless sampler.
      uses_reps: draw between the encoder and the scoring (one encode, pulled back by VJP).
    """

    sample: Callable[..., tuple[Batch, Any]]
    init: Callable[[Params], Any] | None = None
    uses_reps: bool = False


class Weighter(NamedTuple):
    """Weights the batch's BPR terms and learns from the update.

    Attributes:
      weights: `weights(state, ctx) -> (w, carry)`: w of the losses' shape, or f32[M, B] rows
        (row 0 trains the backbone), bare or as `GainedRows`; the step detaches it.
      update: `update(state, carry, rows, ctx) -> (state, metrics)`, where `rows` stacks the M
        learners after each row's Adam step (None for single-row weights); None: the carry is
        the metrics dict and the state is kept.
      init: `init(key, backbone_params) -> state`, or None for a stateless weighter.
    """

    weights: Callable[[Any, Context], tuple[Array, Any]]
    update: Callable[..., tuple[Any, dict]] | None = None
    init: Callable[[PRNGKey, Params], Any] | None = None


class StateLayout(NamedTuple):
    """How a method's state pytree holds (backbone learner, sampler state, weighter state)."""

    split: Callable[[Any], tuple[LearnerState, Any, Any]]
    join: Callable[[LearnerState, Any, Any], Any]


class MethodState(struct.PyTreeNode):
    """The generic method state: backbone learner, sampler state, weighter state."""

    backbone: LearnerState
    sampler: Any = None
    weighter: Any = None


LEARNER_ONLY = StateLayout(lambda state: (state, None, None), lambda learner, s, w: learner)
METHOD_STATE = StateLayout(lambda state: (state.backbone, state.sampler, state.weighter), MethodState)


class Method(NamedTuple):
    """A training method.

    Attributes:
      name: registry name.
      init: `init(key) -> state` (a pytree).
      step: `step(state, run_key, pair_index i32[B], data) -> (state, metrics)`, or None
        for methods without training (popularity).
      backbone_params: `backbone_params(state) -> params` used for evaluation.
    """

    name: str
    init: Callable[[PRNGKey], Any]
    step: Callable | None
    backbone_params: Callable[[Any], Params]


# --- learners ---------------------------------------------------------------------------------


def create_backbone_state(
    key: PRNGKey, backbone: Backbone, *, learning_rate: float = 1e-3, decoupled_weight_decay: bool = False
) -> LearnerState:
    """Initial backbone learner with Adam and the backbone's coupled weight decay."""
    tx = make_adam(learning_rate, backbone.weight_decay, decoupled=decoupled_weight_decay)
    return LearnerState.create(backbone.init(key), tx)


def make_learner_init(
    backbone: Backbone, *, learning_rate: float = 1e-3, init_params: Params | None = None
) -> Callable[[PRNGKey], LearnerState]:
    """`init(key) -> LearnerState`: Adam with the backbone's coupled weight decay; `init_params`
    warm-starts the parameters (with fresh Adam moments)."""

    def init(key: PRNGKey) -> LearnerState:
        if init_params is None:
            return create_backbone_state(key, backbone, learning_rate=learning_rate)
        return LearnerState.create(init_params, make_adam(learning_rate, backbone.weight_decay))

    return init


# --- the forward and the weighted update (written once) --------------------------------------


def score_batch(
    backbone: Backbone, reps: Reps, users: Array, pos_items: Array, neg_items: Array, k_pos, k_neg
) -> tuple[Array, Array]:
    """Scores of the positives f32[B] and of one (f32[B]) or L (f32[B, L]) negatives per triplet."""
    pos = backbone.score_pairs(reps, users, pos_items, k_pos)
    if neg_items.ndim == 1:
        return pos, backbone.score_pairs(reps, users, neg_items, k_neg)
    flat_users = jnp.broadcast_to(users[:, None], neg_items.shape).reshape(-1)
    neg = backbone.score_pairs(reps, flat_users, neg_items.reshape(-1), k_neg)
    return pos, neg.reshape(neg_items.shape)


def bpr_losses(pos: Array, neg: Array) -> Array:
    """BPR losses f32[B] (or f32[B, L] against L negatives per positive)."""
    return losses.bpr_per_sample(pos[:, None] if neg.ndim == 2 else pos, neg)


def dropout_keys(key: PRNGKey | None) -> tuple[PRNGKey | None, PRNGKey | None, PRNGKey | None]:
    """(encode, positive-score, negative-score) dropout keys; all None without a key."""
    return (None, None, None) if key is None else tuple(jax.random.split(key, 3))


def per_sample_bpr(
    params, backbone: Backbone, graph: Graph, users: Array, pos_items: Array, neg_items: Array, key: PRNGKey | None
) -> tuple[Array, Array]:
    """Encodes once and returns (per-sample BPR losses f32[B], backbone regulariser f32[]).

    Args:
      params: backbone params.
      backbone: the backbone.
      graph: its graph.
      users, pos_items: int32[B]; neg_items: int32[B] or int32[B, L].
      key: dropout key (None: deterministic).
    """
    k_encode, k_pos, k_neg = dropout_keys(key)
    reps = backbone.encode(params, graph, k_encode)
    pos, neg = score_batch(backbone, reps, users, pos_items, neg_items, k_pos, k_neg)
    return bpr_losses(pos, neg), backbone.regularizer(params, reps, users, pos_items, neg_items)


def forward(
    backbone: Backbone, params: Params, graph: Graph, key: PRNGKey | None, draw: Callable, *, uses_reps: bool = False
) -> tuple[Batch, Any, Forward]:
    """The step's one forward, kept as a VJP, around the sampler's draw.

    Args:
      backbone, params, graph: the model at Θ_t.
      key: dropout key (None: deterministic).
      draw: `draw(reps or None) -> (Batch, sampler state)`.
      uses_reps: draw from the detached representations (then the encoder runs once under its
        own VJP, which carries the scores' gradient back to the parameters).

    Returns:
      (batch, sampler state, forward).
    """
    k_encode, k_pos, k_neg = dropout_keys(key)

    def losses_at(p, reps, batch):
        pos, neg = score_batch(backbone, reps, batch.users, batch.pos_items, batch.neg_items, k_pos, k_neg)
        regularizer = backbone.regularizer(p, reps, batch.users, batch.pos_items, batch.neg_items)
        return (bpr_losses(pos, neg), regularizer), (pos, neg)

    if not uses_reps:
        batch, sampler_state = draw(None)

        def from_params(p):
            return losses_at(p, backbone.encode(p, graph, k_encode), batch)

        (per_sample, regularizer), vjp, (pos, neg) = jax.vjp(from_params, params, has_aux=True)
        return batch, sampler_state, Forward(per_sample, pos, neg, regularizer, vjp, lambda p: from_params(p)[0])

    reps, encode_vjp = jax.vjp(lambda p: backbone.encode(p, graph, k_encode), params)
    batch, sampler_state = draw(jax.lax.stop_gradient(reps))
    (per_sample, regularizer), score_vjp, (pos, neg) = jax.vjp(
        lambda p, r: losses_at(p, r, batch), params, reps, has_aux=True
    )

    def vjp(cotangents):
        g_params, g_reps = score_vjp(cotangents)
        return (jax.tree.map(jnp.add, g_params, encode_vjp(g_reps)[0]),)

    return batch, sampler_state, Forward(per_sample, pos, neg, regularizer, vjp, None)


class GainedRows(NamedTuple):
    """Weight rows with a gain each: row m steps along gain_m · ∇(scale · Σ_b w_mb ℓ_b) + ∇ regulariser.

    A weighter returns it instead of bare f32[M, B] rows to scale a row's loss by a traced
    factor (DVR's update scale). The gain multiplies the pulled-back gradient rather than the
    cotangents: the cotangents stay the weights themselves, so the gradient is bitwise the same
    however the batch is split over devices (scaled cotangents were not: the partitioned
    program rounds them differently).
    """

    rows: Array  # f32[M, B]
    gains: Array  # f32[M], > 0


def pull_back(fwd: Forward, weights: Array, scale: float, gain: Array | None = None) -> Params:
    """∇_Θ [gain · scale · Σ_b w_b ℓ_b + regulariser]: the weights pulled back as cotangents."""
    if gain is None:
        (grads,) = fwd.vjp((weights * scale, jnp.ones((), fwd.per_sample.dtype)))
        return grads
    (grads,) = fwd.vjp((weights * scale, (1.0 / gain).astype(fwd.per_sample.dtype)))
    return jax.tree.map(lambda g: g * gain.astype(g.dtype), grads)


def weighted_update(learner: LearnerState, fwd: Forward, weights: Array | GainedRows, scale: float):
    """One Adam step per row of weights, all from the same (Θ_t, Adam state).

    Returns:
      (the learner after row 0's step, the stacked learners of every row or None when
      `weights` has the losses' shape).
    """
    weights, gains = (weights.rows, weights.gains) if isinstance(weights, GainedRows) else (weights, None)
    if weights.ndim == fwd.per_sample.ndim:
        return learner.apply_gradients(pull_back(fwd, weights, scale)), None

    def step_row(w, gain):
        return learner.apply_gradients(pull_back(fwd, w, scale, gain))

    if weights.shape[0] == 1:
        rows = jax.tree.map(lambda x: x[None], step_row(weights[0], None if gains is None else gains[0]))
    elif gains is None:
        rows = jax.vmap(lambda w: step_row(w, None))(weights)
    else:
        rows = jax.vmap(step_row)(weights, gains)
    return jax.tree.map(lambda x: x[0], rows), rows


def open_streams(key: PRNGKey, count: Array, names: tuple[str, ...]) -> Streams:
    """The step's named random streams: `split(fold_in(run_key, t), len(names))`.

    The order of `names` is part of a method's identity: it fixes which draw each stream gets.
    """
    return dict(zip(names, jax.random.split(jax.random.fold_in(key, count), len(names))))


def reduction_scale(reduction: str, batch_size: int) -> float:
    """1 for a summed batch loss, 1/B for a mean (docs/algorithm.md §3.1)."""
    if reduction not in ("sum", "mean"):
        raise ValueError(f"unknown reduction {reduction!r}; expected 'sum' or 'mean'")
    return 1.0 if reduction == "sum" else 1.0 / batch_size


# --- the step and the method --------------------------------------------------------------------


def make_step(
    backbone: Backbone,
    draw: Sampler,
    weighter: Weighter,
    *,
    reduction: str = "sum",
    streams: tuple[str, ...] = DEFAULT_STREAMS,
    dropout: bool = True,
    layout: StateLayout | None = None,
):
    """The weighted-BPR step `step(state, key, pair_index, data) -> (state, metrics)`.

    Args:
      backbone: any backbone.
      draw: the negative sampler.
      weighter: the sample weighter.
      reduction: "sum" (the authors' choice, default) or "mean" over the B rows.
      streams: names of the step's random streams, in split order; must hold "dropout".
      dropout: pass the "dropout" stream to the backbone (False: deterministic scoring).
      layout: the method state's layout (default: `default_layout(draw, weighter)`).

    Returns:
      The pure step; `key` is the run key. metrics: "loss" (mean unweighted BPR loss f32[]),
      "finite" (bool[]) and the weighter's metrics.
    """
    layout = default_layout(draw, weighter) if layout is None else layout
    reduction_scale(reduction, 1)  # fail at build time on a bad reduction

    def step(state, key: PRNGKey, pair_index: Array, data: StepData):
        learner, sampler_state, weighter_state = layout.split(state)
        count = learner.step
        keys = open_streams(key, count, streams)

        def sample(reps):
            return draw.sample(keys, sampler_state, count, pair_index, data, reps)

        k_dropout = keys["dropout"] if dropout else None
        batch, sampler_state, fwd = forward(backbone, learner.params, data.graph, k_dropout, sample,
                                            uses_reps=draw.uses_reps)  # fmt: skip
        scale = reduction_scale(reduction, batch.users.shape[0])
        ctx = Context(count, keys, pair_index, learner, batch, fwd, data, scale)
        weights, carry = weighter.weights(weighter_state, ctx)
        new_learner, rows = weighted_update(learner, fwd, jax.lax.stop_gradient(weights), scale)
        if weighter.update is None:
            metrics = dict(carry or {})
        else:
            weighter_state, metrics = weighter.update(weighter_state, carry, rows, ctx)
            metrics = dict(metrics)
        finite = jnp.all(jnp.isfinite(fwd.per_sample)) & jnp.isfinite(fwd.regularizer) & metrics.pop("finite", True)
        metrics = {"loss": jnp.mean(fwd.per_sample), "finite": finite, **metrics}
        return layout.join(new_learner, sampler_state, weighter_state), metrics

    return step


def default_layout(draw: Sampler, weighter: Weighter) -> StateLayout:
    """The bare learner for a stateless sampler and weighter, else `MethodState`."""
    return LEARNER_ONLY if draw.init is None and weighter.init is None else METHOD_STATE


def make_method_init(
    backbone: Backbone,
    draw: Sampler,
    weighter: Weighter,
    layout: StateLayout,
    *,
    learning_rate: float = 1e-3,
    init_params: Params | None = None,
) -> Callable[[PRNGKey], Any]:
    """`init(key) -> state`: the backbone learner (warm-started by `init_params`), then the
    sampler's and the weighter's states; a stateful weighter splits the key (backbone, weighter)."""
    learner_init = make_learner_init(backbone, learning_rate=learning_rate, init_params=init_params)

    def init(key: PRNGKey):
        if weighter.init is None:
            learner, weighter_state = learner_init(key), None
        else:
            k_backbone, k_weighter = jax.random.split(key)
            learner = learner_init(k_backbone)
            weighter_state = weighter.init(k_weighter, learner.params)
        sampler_state = None if draw.init is None else draw.init(learner.params)
        return layout.join(learner, sampler_state, weighter_state)

    return init


def make_method(
    name: str,
    backbone: Backbone,
    draw: Sampler,
    weighter: Weighter,
    *,
    learning_rate: float = 1e-3,
    reduction: str = "sum",
    init_params: Params | None = None,
    streams: tuple[str, ...] = DEFAULT_STREAMS,
    dropout: bool = True,
    layout: StateLayout | None = None,
) -> Method:
    """A `Method` from a sampler and a weighter: the shared init and step (see `make_step`)."""
    layout = default_layout(draw, weighter) if layout is None else layout
    init = make_method_init(backbone, draw, weighter, layout, learning_rate=learning_rate, init_params=init_params)
    step = make_step(backbone, draw, weighter, reduction=reduction, streams=streams, dropout=dropout, layout=layout)
    return Method(name, init, step, lambda state: layout.split(state)[0].params)


# --- the plain plug-ins ----------------------------------------------------------------------------


def uniform_sampler() -> Sampler:
    """BPR's draw: the batch's pairs with one exact-uniform negative each (docs/algorithm.md §2),
    from the "sample" stream."""

    def sample(streams, state, count, pair_index, data, reps):
        del count, reps
        users, pos_items, neg_items = sampler.sample_triplets(streams["sample"], data.train, pair_index)
        return Batch(users, pos_items, neg_items), state

    return Sampler(sample)


def unit_weighter() -> Weighter:
    """BPR's weights: all ones (every sampled term counts once)."""
    return Weighter(lambda state, ctx: (jnp.ones_like(ctx.forward.per_sample), {}))


def stateless_weighter(weights_fn: Callable[[Context], Array], metrics_fn: Callable | None = None) -> Weighter:
    """A weighter without state: `weights_fn(ctx) -> w`, `metrics_fn(w, ctx) -> dict` (default none)."""

    def weights(state, ctx):
        w = weights_fn(ctx)
        return w, ({} if metrics_fn is None else metrics_fn(w, ctx))

    return Weighter(weights)
