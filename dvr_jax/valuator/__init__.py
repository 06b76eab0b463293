"""DVR data valuator: sample encoder, masked-AND Harsanyi blocks, exact Shapley values.

Reference: DVR paper §5.1-5.2.1 and HarsanyiNet (Chen et al., ICML 2023);
ALGORITHMS.md §1. Public functional primitives (all pure and jit-able, B static):

* `make_valuator(**options) -> Valuator` with `init(key, feats[B, F])`,
  `forward(params, feats, present=None) -> ValuatorOutput(prediction, shapley[B],
  null_fraction, active_fraction)`, `output(params, feats, present) -> f[]`,
  `shapley(params, feats) -> f[B]`, `probabilities(params, shapley) -> f[B]` and
  `mse_loss(params, feats, target, present=None) -> (f[], ValuatorOutput)`.
* `valuator_features(pair_features[B, 3D], losses[B]) -> f[B, 3D + 1]`.
* `loss_target`, `metric_target`, `prediction_mse`, `sample_coalition` (§1.8);
  `shapley_to_probabilities` (§1.9); `parameter_labels` (optax labels, the
  `freeze_encoder` compat flag).
* `shapley_loss_cosine` (Fig. 2 statistic) and `explanation_rows` (host-side export).
"""

from dvr_jax.valuator.explain import (
    EXPLANATION_DTYPE,
    explanation_rows,
    shapley_loss_cosine,
)
from dvr_jax.valuator.features import valuator_features
from dvr_jax.valuator.harsanyi import HarsanyiTrace
from dvr_jax.valuator.module import DataValuator
from dvr_jax.valuator.shapley import (
    feature_shapley,
    null_player_fraction,
    receptive_fields,
    sample_shapley,
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
    make_valuator,
    parameter_labels,
)
from dvr_jax.valuator.value_map import shapley_to_probabilities

__all__ = [
    "EXPLANATION_DTYPE",
    "VARIANTS",
    "DataValuator",
    "HarsanyiTrace",
    "Valuator",
    "ValuatorOutput",
    "explanation_rows",
    "feature_shapley",
    "loss_target",
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
]
