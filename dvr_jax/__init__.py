"""dvr_jax: explainable data valuation and metric adaption for recommendation, in JAX.

The public functional primitives (pure functions and NamedTuples of pure functions; the
caller jits). Shapes follow the legend in `dvr_jax.typing`.

Names resolve lazily (PEP 562): `import dvr_jax` loads nothing heavy, and importing one part
(say `dvr_jax.baselines`) does not load the others (DVR, the valuator).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dvr_jax.typing import Array, Params
    from dvr_jax.valuator import Valuator

# public name -> the module that defines it
_EXPORTS = {
    "AdapterState": "dvr_jax.adapter",
    "advantage": "dvr_jax.adapter",
    "bernoulli_log_prob": "dvr_jax.adapter",
    "exploration_penalty": "dvr_jax.adapter",
    "init_adapter": "dvr_jax.adapter",
    "policy_loss": "dvr_jax.adapter",
    "select": "dvr_jax.adapter",
    "BACKBONES": "dvr_jax.backbones",
    "Backbone": "dvr_jax.backbones",
    "make_backbone": "dvr_jax.backbones",
    "make_popularity": "dvr_jax.baselines",
    "DataError": "dvr_jax.data",
    "Dataset": "dvr_jax.data",
    "load_dataset": "dvr_jax.data",
    "DVRConfig": "dvr_jax.dvr",
    "DVRData": "dvr_jax.dvr",
    "DVRState": "dvr_jax.dvr",
    "create_dvr_state": "dvr_jax.dvr",
    "make_dvr_step": "dvr_jax.dvr",
    "EvalArrays": "dvr_jax.evaluation",
    "category_coverage_at_k": "dvr_jax.evaluation",
    "evaluate": "dvr_jax.evaluation",
    "evaluate_on_device": "dvr_jax.evaluation",
    "gini_index": "dvr_jax.evaluation",
    "intra_list_distance_at_k": "dvr_jax.evaluation",
    "make_eval_arrays": "dvr_jax.evaluation",
    "ndcg_at_k": "dvr_jax.evaluation",
    "recall_at_k": "dvr_jax.evaluation",
    "recall_norm_at_k": "dvr_jax.evaluation",
    "topk_lists": "dvr_jax.evaluation",
    "bpr_per_sample": "dvr_jax.losses",
    "reduce_loss": "dvr_jax.losses",
    "RewardData": "dvr_jax.rewards",
    "make_reward_data": "dvr_jax.rewards",
    "make_reward_fn": "dvr_jax.rewards",
    "TrainArrays": "dvr_jax.sampler",
    "epoch_batches": "dvr_jax.sampler",
    "is_training_positive": "dvr_jax.sampler",
    "make_train_arrays": "dvr_jax.sampler",
    "sample_triplets": "dvr_jax.sampler",
    "sample_uniform_negatives": "dvr_jax.sampler",
    "init_sharded": "dvr_jax.sharding",
    "make_data_mesh": "dvr_jax.sharding",
    "make_mesh": "dvr_jax.sharding",
    "shard_step": "dvr_jax.sharding",
    "table_shardings": "dvr_jax.sharding",
    "LearnerState": "dvr_jax.state",
    "make_adam": "dvr_jax.state",
    "StepData": "dvr_jax.train",
    "create_backbone_state": "dvr_jax.train",
    "make_bpr_step": "dvr_jax.train",
    "Array": "dvr_jax.typing",
    "Params": "dvr_jax.typing",
    "Valuator": "dvr_jax.valuator",
    "ValuatorOutput": "dvr_jax.valuator",
    "explanation_rows": "dvr_jax.valuator",
    "make_sample_valuator": "dvr_jax.valuator",
    "make_slot_valuator": "dvr_jax.valuator",
    "make_valuator": "dvr_jax.valuator",
    "shapley_loss_cosine": "dvr_jax.valuator",
    "shapley_to_probabilities": "dvr_jax.valuator",
    "valuator_features": "dvr_jax.valuator",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value  # resolve once
        return value
    raise AttributeError(f"module 'dvr_jax' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


def valuator_output(valuator: Valuator, params: Params, feats: Array, present: Array) -> Array:
    """The valuator's batch prediction y_G with absent samples zeroed.

    Args:
      valuator: from `make_valuator`.
      params: its parameters.
      feats: f32[B, F] per-sample features (`valuator_features`).
      present: f32[B] or bool[B] presence mask (1 = sample in the coalition).

    Returns:
      f32[] the masked-input game value v(S).
    """
    return valuator.output(params, feats, present)


def shapley_values(valuator: Valuator, params: Params, feats: Array) -> Array:
    """Exact Shapley value of every sample of the batch in the valuator's masked-input game.

    Args:
      valuator: from `make_valuator`.
      params: its parameters.
      feats: f32[B, F] per-sample features.

    Returns:
      f32[B]; they sum to v(full batch) - v(empty batch).
    """
    return valuator.shapley(params, feats)


__all__ = [
    "AdapterState",
    "BACKBONES",
    "Backbone",
    "DVRConfig",
    "DVRData",
    "DVRState",
    "DataError",
    "Dataset",
    "EvalArrays",
    "LearnerState",
    "RewardData",
    "StepData",
    "TrainArrays",
    "Valuator",
    "ValuatorOutput",
    "advantage",
    "bernoulli_log_prob",
    "bpr_per_sample",
    "category_coverage_at_k",
    "create_backbone_state",
    "create_dvr_state",
    "epoch_batches",
    "evaluate",
    "evaluate_on_device",
    "explanation_rows",
    "exploration_penalty",
    "gini_index",
    "init_adapter",
    "init_sharded",
    "intra_list_distance_at_k",
    "is_training_positive",
    "load_dataset",
    "make_adam",
    "make_backbone",
    "make_bpr_step",
    "make_data_mesh",
    "make_dvr_step",
    "make_eval_arrays",
    "make_mesh",
    "make_popularity",
    "make_reward_data",
    "make_reward_fn",
    "make_sample_valuator",
    "make_slot_valuator",
    "make_train_arrays",
    "make_valuator",
    "ndcg_at_k",
    "policy_loss",
    "recall_at_k",
    "recall_norm_at_k",
    "reduce_loss",
    "sample_triplets",
    "sample_uniform_negatives",
    "select",
    "shapley_loss_cosine",
    "shapley_to_probabilities",
    "shapley_values",
    "shard_step",
    "table_shardings",
    "topk_lists",
    "valuator_features",
    "valuator_output",
]
