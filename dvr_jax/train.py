"""Plain BPR: the shared weighted step (`dvr_jax.step`) with a uniform sampler and unit weights.

One BPR step: sample negatives on device -> encode (graph propagation once) -> score the
positive and negative pairs -> per-sample BPR loss -> gradient of the summed (or mean) loss
plus the backbone regulariser -> Adam update (docs/algorithm.md §2-3). Everything is static
shape; large arrays (training CSR, graph) are arguments, never closure constants, so one
compiled program serves every step (docs/engineering.md §3).
"""

from __future__ import annotations

from dvr_jax.backbones.base import Backbone
from dvr_jax.step import (  # noqa: F401  (the step's pieces, re-exported under their old home)
    StepData,
    create_backbone_state,
    make_learner_init,
    make_step,
    per_sample_bpr,
    uniform_sampler,
    unit_weighter,
)


def make_bpr_step(backbone: Backbone, *, reduction: str = "sum", dropout: bool = True):
    """Builds the plain-BPR train step.

    Args:
      backbone: any registered backbone.
      reduction: "sum" (authors' code, default) or "mean".
      dropout: pass a dropout key to the backbone while training (NeuMF, MGCF).

    Returns:
      `step(state, key, pair_index, data) -> (state, metrics)` on a `LearnerState`, where
      `key` is the run key (the step folds in `state.step`, so results depend only on
      (seed, step)), `pair_index` int32[B] indexes the training pairs and `data` is a
      `StepData`. metrics: {"loss": mean per-sample BPR loss f32[], "finite": bool[]}.
    """
    return make_step(backbone, uniform_sampler(), unit_weighter(), reduction=reduction, dropout=dropout)
