"""`make_valuator(kind, **options)`: one entry point over the valuator kinds.

"sample" (default) is the sample game of `dvr_jax.valuator.sample_game`
(permutation-equivariant, batch-size free, exact Shapley values over the samples);
"slot" is the slot-indexed Harsanyi valuator of `dvr_jax.valuator.valuator`, the
paper's reading, kept for reproduction.
"""

from __future__ import annotations

import inspect

from dvr_jax.valuator.sample_game import make_sample_valuator
from dvr_jax.valuator.valuator import Valuator, make_slot_valuator

VALUATOR_KINDS = ("sample", "slot")

_BUILDERS = {"sample": make_sample_valuator, "slot": make_slot_valuator}


def make_valuator(kind: str = "sample", **options) -> Valuator:
    """Builds a data valuator of the given kind.

    Args:
      kind: "sample" (`make_sample_valuator`, default) or "slot"
        (`make_slot_valuator`).
      **options: keyword options of that builder.

    Returns:
      A `Valuator` NamedTuple of pure functions.

    Raises:
      ValueError: unknown kind.
      TypeError: an option the chosen builder does not take.
    """
    if kind not in _BUILDERS:
        raise ValueError(f"valuator kind must be one of {VALUATOR_KINDS}, got {kind!r}")
    builder = _BUILDERS[kind]
    accepted = inspect.signature(builder).parameters
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        others = [k for k in VALUATOR_KINDS if k != kind]
        hint = [k for k in others if set(unknown) <= set(inspect.signature(_BUILDERS[k]).parameters)]
        raise TypeError(
            f"{builder.__name__} (kind={kind!r}) got unknown options {unknown}"
            + (f"; they belong to kind={hint[0]!r}" if hint else "")
        )
    return builder(**options)
