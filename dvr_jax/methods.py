"""Training methods by name: each is an initial state plus one pure train step.

`make_method(name, backbone, ...) -> Method`. The loop jits `Method.step` once and calls it
for every batch; `Method.backbone_params` extracts what the evaluator scores with.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

from dvr_jax import train
from dvr_jax.backbones.base import Backbone
from dvr_jax.typing import Params, PRNGKey


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


def make_method(
    name: str, backbone: Backbone, *, learning_rate: float = 1e-3, reduction: str = "sum"
) -> Method:
    """Builds a method by name ("bpr", "pop").

    Raises:
      ValueError: unknown method name.
    """
    if name == "bpr":
        return Method(
            name=name,
            init=lambda key: train.create_backbone_state(key, backbone, learning_rate=learning_rate),
            step=train.make_bpr_step(backbone, reduction=reduction),
            backbone_params=lambda state: state.params,
        )
    if name == "pop":
        return Method(name=name, init=lambda key: {}, step=None, backbone_params=lambda state: {})
    raise ValueError(f"unknown method {name!r}; known: bpr, pop")
