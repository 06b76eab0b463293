"""Training methods: each is an initial state plus one pure train step (`Method`).

The loop jits `Method.step` once and calls it for every batch; `Method.backbone_params`
extracts what the evaluator scores with. Factories take typed arguments only.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

from dvr_jax import dvr, train
from dvr_jax.backbones.base import Backbone
from dvr_jax.typing import Params, PRNGKey
from dvr_jax.valuator import Valuator


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


def make_bpr_method(
    backbone: Backbone, *, learning_rate: float = 1e-3, reduction: str = "sum", init_params: Params | None = None
) -> Method:
    """Plain BPR; `init_params` warm-starts it ("BPR continued" control, fresh Adam moments)."""
    init = train.make_learner_init(backbone, learning_rate=learning_rate, init_params=init_params)
    return Method("bpr", init, train.make_bpr_step(backbone, reduction=reduction), lambda state: state.params)


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
) -> Method:
    """DVR: valuator-selected BPR updates with a REINFORCE-trained valuator (`dvr_jax.dvr`).

    `n_pairs` sizes the per-pair running values; `batch_size` the valuator's init batch.
    """
    dvr.check_config(config)

    def init(key: PRNGKey) -> dvr.DVRState:
        return dvr.create_dvr_state(
            key, backbone, valuator, batch_size, n_pairs=n_pairs, backbone_params=init_params,
            learning_rate=learning_rate, valuator_learning_rate=valuator_learning_rate,
            valuator_weight_decay=valuator_weight_decay, accumulate=config.reward_interval > 1,
        )  # fmt: skip

    return Method("dvr", init, dvr.make_dvr_step(backbone, valuator, reward_fn, config), lambda s: s.backbone.params)


def make_pop_method() -> Method:
    """The most-popular floor: nothing to train."""
    return Method("pop", lambda key: {}, None, lambda state: {})
