"""Full-ranking evaluation: metrics on hit matrices and chunked top-K on device."""

from __future__ import annotations

from dvr_jax.evaluation.eval_arrays import (
    EvalArrays,
    default_chunk_size,
    make_eval_arrays,
)
from dvr_jax.evaluation.metrics import (
    category_coverage_at_k,
    category_coverage_global_at_k,
    gini_index,
    hit_rate_at_k,
    intra_list_distance_at_k,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
    recall_norm_at_k,
)
from dvr_jax.evaluation.ranking import (
    evaluate,
    evaluate_chunk,
    evaluate_on_device,
    topk_lists,
)

__all__ = [
    "EvalArrays",
    "category_coverage_at_k",
    "category_coverage_global_at_k",
    "default_chunk_size",
    "evaluate",
    "evaluate_chunk",
    "evaluate_on_device",
    "gini_index",
    "hit_rate_at_k",
    "intra_list_distance_at_k",
    "make_eval_arrays",
    "ndcg_at_k",
    "precision_at_k",
    "recall_at_k",
    "recall_norm_at_k",
    "topk_lists",
]
