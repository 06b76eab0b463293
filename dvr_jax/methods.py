"""Training methods: each is an initial state plus one pure train step (`Method`).

Every trained method is the shared weighted-BPR step of `dvr_jax.step` with its own sampler
and weighter (docs/engineering.md §12); the loop jits `Method.step` once and calls it for
every batch, and `Method.backbone_params` extracts what the evaluator scores with. Factories
take typed arguments only.
"""

from __future__ import annotations

from collections.abc import Callable

from dvr_jax import dvr, step
from dvr_jax.backbones.base import Backbone
from dvr_jax.step import Method
from dvr_jax.typing import Params
from dvr_jax.valuator import Valuator

__all__ = ["Method", "make_bpr_method", "make_dvr_method", "make_pop_method"]


def make_bpr_method(
    backbone: Backbone, *, learning_rate: float = 1e-3, reduction: str = "sum", init_params: Params | None = None
) -> Method:
    """Plain BPR; `init_params` warm-starts it ("BPR continued" control, fresh Adam moments)."""
    return step.make_method("bpr", backbone, step.uniform_sampler(), step.unit_weighter(), learning_rate=learning_rate,
                            reduction=reduction, init_params=init_params)  # fmt: skip


def make_dvr_method(
    backbone: Backbone,
    valuator: Valuator,
    reward_fn: Callable,
    config: dvr.DVRConfig,
    *,
    batch_size: int,
    n_pairs: int,
    learning_rate: float = 1e-3,
    valuator_learning_rate: float = 1e-3,
    valuator_weight_decay: float = 1e-3,
    init_params: Params | None = None,
    constrain: Callable[[Params], Params] | None = None,
) -> Method:
    """DVR: valuator-selected BPR updates with a REINFORCE-trained valuator (`dvr_jax.dvr`).

    `n_pairs` sizes the per-pair running values; `batch_size` the valuator's init batch;
    `constrain` keeps the step's extra params-shaped gradient split like the tables
    (`dvr_jax.sharding.table_constraint`, for tables split over a "model" axis).
    """
    weighter = dvr.make_dvr_weighter(
        backbone, valuator, reward_fn, config, batch_size=batch_size, n_pairs=n_pairs,
        valuator_learning_rate=valuator_learning_rate, valuator_weight_decay=valuator_weight_decay,
        constrain=constrain,
    )  # fmt: skip
    return step.make_method("dvr", backbone, step.uniform_sampler(), weighter, learning_rate=learning_rate,
                            reduction=config.reduction, init_params=init_params, streams=dvr.DVR_STREAMS,
                            layout=dvr.DVR_LAYOUT)  # fmt: skip


def make_pop_method() -> Method:
    """The most-popular floor: nothing to train."""
    return Method("pop", lambda key: {}, None, lambda state: {})
