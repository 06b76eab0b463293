"""Learner state: params, optimizer state and the step counter (a fork of flax TrainState).

DVR has two learners (backbone and valuator), so the state is forked from
`flax.training.train_state.TrainState` without its `apply_fn` (docs/engineering.md §2).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import struct

from dvr_jax.typing import Array, Params


class LearnerState(struct.PyTreeNode):
    """Parameters and optimizer state of one learner.

    Attributes:
      step: int32[] number of updates applied.
      params: parameter pytree.
      opt_state: optax state.
      tx: the optax transformation (static).
    """

    step: Array
    params: Params
    opt_state: optax.OptState
    tx: optax.GradientTransformation = struct.field(pytree_node=False)

    @classmethod
    def create(cls, params: Params, tx: optax.GradientTransformation) -> LearnerState:
        """A fresh learner at step 0."""
        return cls(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params), tx=tx)

    def apply_gradients(self, grads: Params) -> LearnerState:
        """One optimizer update; returns a new state."""
        updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
        return self.replace(
            step=self.step + 1,
            params=optax.apply_updates(self.params, updates),
            opt_state=opt_state,
        )


def make_adam(
    learning_rate: float, weight_decay: float = 0.0, *, decoupled: bool = False
) -> optax.GradientTransformation:
    """Adam with torch-style *coupled* L2 (wd * theta added to the gradient before the moments).

    Args:
      learning_rate: Adam step size.
      weight_decay: L2 coefficient; 0 disables it.
      decoupled: use AdamW's decoupled decay instead (docs/departures.md §17).

    Returns:
      An optax transformation (safe under strict dtype promotion, see `standard_promotion`).
    """
    if weight_decay == 0.0:
        return standard_promotion(optax.adam(learning_rate))
    if decoupled:
        return standard_promotion(optax.adamw(learning_rate, weight_decay=weight_decay))
    return standard_promotion(optax.chain(optax.add_decayed_weights(weight_decay), optax.adam(learning_rate)))


def standard_promotion(tx: optax.GradientTransformation) -> optax.GradientTransformation:
    """`tx` with its init and update traced under standard dtype promotion.

    optax's Adam bias correction computes `decay**count` (a Python float to the power
    of the int32 step count), which `jax_numpy_dtype_promotion="strict"` rejects. The
    tests can run strict (`DVR_STRICT_DTYPES=1`, tests/conftest.py), so optax's own code
    runs under the standard rules while ours stays strict; no value changes.

    Args:
      tx: an optax transformation.

    Returns:
      The same transformation; its state has the same structure.
    """
    tx = optax.with_extra_args_support(tx)

    def init(params: Params) -> optax.OptState:
        with jax.numpy_dtype_promotion("standard"):
            return tx.init(params)

    def update(updates: Params, state: optax.OptState, params: Params | None = None, **extra_args):
        with jax.numpy_dtype_promotion("standard"):
            return tx.update(updates, state, params, **extra_args)

    return optax.GradientTransformationExtraArgs(init, update)


def tree_all_finite(tree) -> Array:
    """bool[]: every leaf of the pytree is finite."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)
