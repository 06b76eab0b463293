"""dvr_jax: explainable data valuation and metric adaption for recommendation, in JAX.

The public functional primitives (pure functions and NamedTuples of pure functions; the
caller jits). Shapes follow the legend in `dvr_jax.typing`.
"""

from dvr_jax.adapter import (
    AdapterState,
    advantage,
    bernoulli_log_prob,
    exploration_penalty,
    init_adapter,
    policy_loss,
    select,
)
from dvr_jax.backbones import BACKBONES, Backbone, make_backbone
from dvr_jax.baselines import make_popularity
from dvr_jax.data import DataError, Dataset, load_dataset
from dvr_jax.dvr import DVRConfig, DVRData, DVRState, create_dvr_state, make_dvr_step
from dvr_jax.evaluation import (
    EvalArrays,
    category_coverage_at_k,
    evaluate,
    evaluate_on_device,
    gini_index,
    intra_list_distance_at_k,
    make_eval_arrays,
    ndcg_at_k,
    recall_at_k,
    recall_norm_at_k,
    topk_lists,
)
from dvr_jax.losses import bpr_per_sample, reduce_loss
from dvr_jax.rewards import RewardData, make_reward_data, make_reward_fn
from dvr_jax.sampler import (
    TrainArrays,
    epoch_batches,
    is_training_positive,
    make_train_arrays,
    sample_triplets,
    sample_uniform_negatives,
)
from dvr_jax.sharding import make_data_mesh, shard_step
from dvr_jax.state import LearnerState, make_adam
from dvr_jax.train import StepData, create_backbone_state, make_bpr_step
from dvr_jax.typing import Array, Params
from dvr_jax.valuator import (
    Valuator,
    ValuatorOutput,
    explanation_rows,
    make_sample_valuator,
    make_slot_valuator,
    make_valuator,
    shapley_loss_cosine,
    shapley_to_probabilities,
    valuator_features,
)


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
    "intra_list_distance_at_k",
    "is_training_positive",
    "load_dataset",
    "make_adam",
    "make_backbone",
    "make_bpr_step",
    "make_data_mesh",
    "make_dvr_step",
    "make_eval_arrays",
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
    "topk_lists",
    "valuator_features",
    "valuator_output",
]
