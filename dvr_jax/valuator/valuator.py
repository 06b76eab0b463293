"""The DVR data valuator G(batch; Lambda): encoder + Harsanyi network + map offset.

Reference: DVR paper, Sec. 5.1 (data valuator) and Sec. 5.2.1; docs/harsanyi.md (Variant G
default, union receptive fields, exact sample-level Shapley values, defaults in §5).
`make_slot_valuator` returns a NamedTuple of pure, jit-able functions over one
parameter pytree `{"encoder": ..., "harsanyi": ..., "offset": f[]}`, so one optax
optimizer trains all of Lambda. The batch size B is static: it fixes the layer-1
parameter shapes at `init`.

This module also defines the types shared by every valuator kind (`ValuatorOutput`,
`Valuator`) and `parameter_labels`; the default valuator is the sample game
(`dvr_jax.valuator.sample_game`), and `dvr_jax.valuator.make_valuator` dispatches
between the kinds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from dvr_jax.typing import Array, Params, PRNGKey
from dvr_jax.valuator import shapley as shapley_lib
from dvr_jax.valuator.encoder import ENCODERS
from dvr_jax.valuator.harsanyi import HarsanyiTrace
from dvr_jax.valuator.module import DataValuator
from dvr_jax.valuator.targets import prediction_mse
from dvr_jax.valuator.value_map import VALUE_MAPS, shapley_to_probabilities

VARIANTS = ("G", "F", "P", "C_compat")


class ValuatorOutput(NamedTuple):
    """One valuator forward pass.

    Attributes:
      prediction: f[] y_G, the predicted batch performance.
      shapley: f[B] Shapley value of every slot (0 for absent slots).
      null_fraction: f[] slot valuator: share of slots in no receptive field
        (structural null players); sample game: 0 (it has none).
      active_fraction: f[] slot valuator: share of Harsanyi units with a non-zero
        activation; sample game: share of present samples with a non-zero first-order
        term.
      zero_fraction: f[] share of present samples whose value is exactly 0.
      tied_fraction: f[] share of present samples whose value equals that of at least
        one other present sample (`shapley.value_statistics`).
    """

    prediction: Array
    shapley: Array
    null_fraction: Array
    active_fraction: Array
    zero_fraction: Array
    tied_fraction: Array


class Valuator(NamedTuple):
    """Pure functions of a data valuator (all jit-able; B is static per call).

    Attributes:
      init: `init(key, feats f[B, F]) -> params`; slot valuator {"encoder",
        "harsanyi", "offset"} (B fixed from here on), sample game {"encoder", "game",
        "offset"} (any B).
      forward: `forward(params, feats f[B, F], present f[B] | None) -> ValuatorOutput`.
      output: `output(params, feats f[B, F], present f[B]) -> f[]` y_G under a presence
        mask.
      shapley: `shapley(params, feats f[B, F]) -> f[B]` Shapley values of the full
        batch.
      probabilities: `probabilities(params, shapley f[B]) -> f[B]` selection
        probabilities.
      mse_loss: `mse_loss(params, feats f[B, F], target f[], present=None) -> (f[],
        ValuatorOutput)`.
      trace: `trace(params, feats, present=None)` -> `HarsanyiTrace` (slot) or
        `SampleGameTrace` (sample game); diagnostics and explanation.
      module: the underlying Linen module (`DataValuator` or `SampleGame`).
      singletons: `singletons(params, feats f[B, F]) -> f[B]`, the value v({b}) of every
        one-sample coalition in one pass, where that is cheap (the sample game: its
        first-order dividends); None otherwise (the slot valuator).
    """

    init: Callable[[PRNGKey, Array], Params]
    forward: Callable[..., ValuatorOutput]
    output: Callable[[Params, Array, Array], Array]
    shapley: Callable[[Params, Array], Array]
    probabilities: Callable[[Params, Array], Array]
    mse_loss: Callable[..., tuple[Array, ValuatorOutput]]
    trace: Callable[..., Any]
    module: nn.Module
    singletons: Callable[[Params, Array], Array] | None = None


def assemble_valuator(
    module: nn.Module,
    read_out: Callable[[Any, Array], ValuatorOutput],
    game_value: Callable[[Any], Array],
    *,
    map_options: dict[str, Any],
    singletons: Callable[[Any], Array] | None = None,
) -> Valuator:
    """The `Valuator` functions shared by every kind, around a Linen module.

    Args:
      module: `module.apply({"params": p}, feats, present) -> trace` of one batch.
      read_out: `read_out(trace, present f[B]) -> ValuatorOutput` (Shapley values and
        diagnostics of the kind).
      game_value: `game_value(trace) -> f[]`, v(S) of the present samples.
      map_options: `shapley_to_probabilities` keywords (value_map, kappa, eps, gamma_dv).
      singletons: `singletons(trace of the full batch) -> f[B]`, v({b}) for every b, or
        None where one pass cannot give them.
    """

    def _present(feats: Array, present: Array | None) -> Array:
        """All-present mask f[B] when `present` is None."""
        return jnp.ones(feats.shape[0], feats.dtype) if present is None else present

    def init(key: PRNGKey, feats: Array) -> Params:
        return module.init({"params": key}, feats, _present(feats, None))["params"]

    def trace(params: Params, feats: Array, present: Array | None = None):
        return module.apply({"params": params}, feats, _present(feats, present))

    def forward(params: Params, feats: Array, present: Array | None = None) -> ValuatorOutput:
        return read_out(trace(params, feats, present), _present(feats, present))

    def output(params: Params, feats: Array, present: Array) -> Array:
        return game_value(trace(params, feats, present))

    def shapley(params: Params, feats: Array) -> Array:
        return forward(params, feats).shapley

    def probabilities(params: Params, values: Array) -> Array:
        return shapley_to_probabilities(values, params["offset"], **map_options)

    def mse_loss(
        params: Params, feats: Array, target: Array, present: Array | None = None
    ) -> tuple[Array, ValuatorOutput]:
        out = forward(params, feats, present)
        return prediction_mse(out.prediction, target), out

    single = None if singletons is None else (lambda params, feats: singletons(trace(params, feats)))
    return Valuator(init, forward, output, shapley, probabilities, mse_loss, trace, module, single)


def parameter_labels(params: Params, *, freeze_encoder: bool = False) -> Params:
    """Labels for `optax.multi_transform`: "train", or "freeze" on the encoder.

    `freeze_encoder=True` reproduces the released code, which never trains the encoder
    (docs/harsanyi.md §6).

    Args:
      params: valuator parameter pytree.
      freeze_encoder: label the encoder "freeze".

    Returns:
      A pytree of strings with the structure of `params`.
    """
    return {
        part: jax.tree.map(
            lambda _, p=part: "freeze" if freeze_encoder and p == "encoder" else "train",
            subtree,
        )
        for part, subtree in params.items()
    }


def _check_options(encoder: str, variant: str, h_dim: int, const_column: bool, value_map: str) -> None:
    """Raises ValueError on unknown or inconsistent options."""
    if encoder not in ENCODERS:
        raise ValueError(f"encoder must be one of {ENCODERS}, got {encoder!r}")
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if value_map not in VALUE_MAPS:
        raise ValueError(f"value_map must be one of {VALUE_MAPS}, got {value_map!r}")
    if encoder == "paper" and h_dim != 1:
        raise ValueError("encoder='paper' has a scalar output: h_dim must be 1")
    if variant == "P" and (h_dim != 1 or const_column):
        raise ValueError("variant 'P' needs h_dim=1 and const_column=False (features = samples)")


def make_slot_valuator(
    *,
    encoder: str = "code",
    h_dim: int | None = None,
    encoder_hidden: Sequence[int] = (256, 128),
    use_loss_feature: bool = True,
    variant: str = "G",
    num_layers: int = 2,
    width: int | Sequence[int] = 100,
    act_ratio: float = 0.01,
    beta: float = 10.0,
    gamma_trig: float = 1000.0,
    v0: float = 1.0,
    children_init: str = "random",
    const_column: bool | None = None,
    shared_slot_weights: bool = False,
    output_bias: bool = False,
    value_map: str = "sigmoid",
    kappa: float = 1.0,
    eps: float = 1e-3,
    gamma_dv: float = 100.0,
    param_dtype: jnp.dtype = jnp.float32,
) -> Valuator:
    """Builds the slot-indexed Harsanyi valuator (defaults: docs/harsanyi.md §5).

    The paper's reading (Variant G and its F/P/C_compat siblings); slot-indexed, kept
    for reproduction. Its layer-1 parameters are indexed by batch position, so under
    randomly permuted batches its values carry no information about the data; the
    default valuator is `make_sample_valuator`.

    Args:
      encoder: "code" (3-layer tanh, default) or "paper" (ReLU -> tanh scalar).
      h_dim: H; default 10 for "code", 1 for "paper" (use 50 for the cc/ild configs).
      encoder_hidden: code-encoder hidden widths.
      use_loss_feature: code encoder reads the loss column (False: the ablation of
        docs/harsanyi.md §6).
      variant: "G" (sample-grouped, default), "F" (feature children pooled to samples),
        "P" (h_dim = 1, plain HarsanyiNet-MLP) or "C_compat" (the released code's
        values; ablation).
      num_layers: L Harsanyi blocks.
      width: M units per block (int) or one width per block.
      act_ratio: initial children fraction (at sample granularity for Variant G).
      beta: STE surrogate scale.
      gamma_trig: AND trigger sharpness.
      v0: initial children-logit magnitude.
      children_init: "random" (HarsanyiNet, default) or "cover" (no null slots at init).
      const_column: append a constant 1 to every slot; default True for G/F, False for
        P/C_compat.
      shared_slot_weights: Variant G layer-1 weights shared across slots.
      output_bias: learnable c0 (off, as in paper and code); excluded from Shapley
        values.
      value_map: "sigmoid" (default) or "code".
      kappa: sigmoid slope.
      eps: sigmoid probability floor.
      gamma_dv: `code` map scale.
      param_dtype: float32 for training, float64 for exactness tests.

    Returns:
      A `Valuator` NamedTuple of pure functions.
    """
    if h_dim is None:
        h_dim = 1 if encoder == "paper" or variant == "P" else 10
    if const_column is None:
        const_column = variant in ("G", "F")
    _check_options(encoder, variant, h_dim, const_column, value_map)
    widths = (width,) * num_layers if isinstance(width, int) else tuple(width)
    if len(widths) != num_layers:
        raise ValueError(f"got {len(widths)} widths for {num_layers} layers")
    module = DataValuator(
        encoder=encoder,
        h_dim=h_dim,
        encoder_hidden=tuple(encoder_hidden),
        use_loss_feature=use_loss_feature,
        variant=variant,
        widths=widths,
        const_column=const_column,
        param_dtype=param_dtype,
        harsanyi=dict(
            beta=beta,
            gamma_trig=gamma_trig,
            act_ratio=act_ratio,
            v0=v0,
            children_init=children_init,
            shared_slot_weights=shared_slot_weights,
            output_bias=output_bias,
        ),
    )
    grouped = variant == "G"

    def read_out(tr: HarsanyiTrace, present: Array) -> ValuatorOutput:
        """Shapley values f[B] and diagnostics of one Harsanyi trace."""
        n_slots = present.shape[0]
        if variant == "C_compat":
            values = shapley_lib.compat_shapley(tr, n_slots)
        else:
            values = shapley_lib.sample_shapley(tr, n_slots, grouped=grouped)
        zero_fraction, tied_fraction = shapley_lib.value_statistics(values, present)
        return ValuatorOutput(
            tr.output,
            values,
            shapley_lib.null_player_fraction(tr, n_slots, grouped=grouped),
            shapley_lib.active_unit_fraction(tr),
            zero_fraction,
            tied_fraction,
        )

    map_options = dict(value_map=value_map, kappa=kappa, eps=eps, gamma_dv=gamma_dv)
    return assemble_valuator(module, read_out, lambda tr: tr.output, map_options=map_options)
