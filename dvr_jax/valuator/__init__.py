"""DVR data valuator: sample encoder, masked-AND Harsanyi blocks, exact Shapley values.

Reference: DVR paper, Sec. 5.1-5.2.1, and HarsanyiNet (Chen et al., ICML 2023);
docs/valuation.md and docs/harsanyi.md. Public functional primitives (all pure and
jit-able, B static):

* `make_valuator(kind="sample", **options) -> Valuator` over `VALUATOR_KINDS`:
  "sample" (`make_sample_valuator`, default: the sample game, permutation-equivariant,
  batch-size free, exact Shapley values over the samples) or "slot"
  (`make_slot_valuator`: the paper's slot-indexed Harsanyi network, for
  reproduction). A `Valuator` has `init(key, feats[B, F])`,
  `forward(params, feats, present=None) -> ValuatorOutput(prediction, shapley[B],
  null_fraction, active_fraction, zero_fraction, tied_fraction)`,
  `output(params, feats, present) -> f[]`,
  `shapley(params, feats) -> f[B]`, `probabilities(params, shapley) -> f[B]` and
  `mse_loss(params, feats, target, present=None) -> (f[], ValuatorOutput)`.
* `valuator_features(pair_features[B, 3D], losses[B]) -> f[B, 3D + 1]`.
* `loss_target`, `metric_target`, `prediction_mse`, `sample_coalition` (docs/algorithm.md
  §7.3); `shapley_to_probabilities` (docs/algorithm.md §4.2); `parameter_labels` (optax
  labels, the `freeze_encoder` compat flag).
* `shapley_loss_cosine` (Fig. 2 statistic) and `explanation_rows` (host-side export).
"""

from dvr_jax.valuator.explain import (
    EXPLANATION_DTYPE,
    explanation_rows,
    shapley_loss_cosine,
)
from dvr_jax.valuator.factory import VALUATOR_KINDS, make_valuator
from dvr_jax.valuator.features import valuator_features
from dvr_jax.valuator.harsanyi import HarsanyiTrace
from dvr_jax.valuator.module import DataValuator
from dvr_jax.valuator.sample_game import (
    SampleGame,
    SampleGameTrace,
    make_sample_valuator,
)
from dvr_jax.valuator.shapley import (
    feature_shapley,
    null_player_fraction,
    receptive_fields,
    sample_shapley,
    value_statistics,
)
from dvr_jax.valuator.targets import (
    loss_target,
    metric_target,
    prediction_mse,
    sample_coalition,
)
from dvr_jax.valuator.valuator import (
    VARIANTS,
    Valuator,
    ValuatorOutput,
    make_slot_valuator,
    parameter_labels,
)
from dvr_jax.valuator.value_map import shapley_to_probabilities

__all__ = [
    "EXPLANATION_DTYPE",
    "VALUATOR_KINDS",
    "VARIANTS",
    "DataValuator",
    "HarsanyiTrace",
    "SampleGame",
    "SampleGameTrace",
    "Valuator",
    "ValuatorOutput",
    "explanation_rows",
    "feature_shapley",
    "loss_target",
    "make_sample_valuator",
    "make_slot_valuator",
    "make_valuator",
    "metric_target",
    "prediction_mse",
    "null_player_fraction",
    "parameter_labels",
    "receptive_fields",
    "sample_coalition",
    "sample_shapley",
    "shapley_loss_cosine",
    "shapley_to_probabilities",
    "valuator_features",
    "value_statistics",
]
