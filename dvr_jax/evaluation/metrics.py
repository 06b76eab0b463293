"""Top-K ranking metrics on hit matrices and category lists: pure `jnp` functions.

Every per-user metric maps one top-K list per user to one value per user (`f32[C]`);
averaging over users, masking of padded rows and formatting happen in the caller
(`dvr_jax.evaluation.ranking`). K is read from the trailing axis, so metrics at several
cut-offs come from one top-K_max list by slicing `hits[:, :k]`. `gini_index` is the one
population metric: it takes pooled exposure counts over all items.

Definitions: docs/metrics.md. Notation per user u: `X_u = (x_1 .. x_K)` the
top-K list, `G_u` the held-out items, `hits[u, r] = [x_r ∈ G_u]`, `n_pos[u] = |G_u|`.

Items without any category (an all-zero row of the multi-hot matrix) behave as if they
had one extra category `unknown`, the convention of the data loaders: for ILD, two such
items are at distance 0 and such an item is at distance 1 from any categorised item; for
CC they add nothing to `cat(X_u)` or `cat(G_u)` (coverage counts real categories only).

Reference: Järvelin & Kekäläinen, "Cumulated gain-based evaluation of IR techniques",
TOIS 2002 (NDCG); Ziegler et al., "Improving recommendation lists through topic
diversification", WWW 2005 (ILD).
"""

from __future__ import annotations

import jax.numpy as jnp

from dvr_jax.typing import Array


def _num_hits(hits: Array) -> Array:
    """Number of hits per row as float32[C]."""
    return jnp.sum(hits.astype(jnp.float32), axis=1)


def recall_at_k(hits: Array, n_pos: Array) -> Array:
    r"""Standard recall: the fraction of held-out items found in the top-K.

    .. math:: \mathrm{Recall@K}(u) = |X_u \cap G_u| / |G_u|

    Args:
      hits: bool[C, K], `hits[u, r]` is True when the r-th item is held out for u.
      n_pos: int32[C] held-out counts |G_u|; rows with 0 give 0.

    Returns:
      float32[C].
    """
    return _num_hits(hits) / jnp.maximum(n_pos, 1).astype(jnp.float32)


def recall_norm_at_k(hits: Array, n_pos: Array) -> Array:
    r"""Normalised recall of the authors' code (VAE-CF): can reach 1 when |G_u| > K.

    .. math:: \mathrm{Recall_{norm}@K}(u) = |X_u \cap G_u| / \min(K, |G_u|)

    Args:
      hits: bool[C, K].
      n_pos: int32[C] held-out counts |G_u|; rows with 0 give 0.

    Returns:
      float32[C].
    """
    k = hits.shape[1]
    return _num_hits(hits) / jnp.clip(n_pos, 1, k).astype(jnp.float32)


def _discounts(k: int) -> Array:
    """1 / log2(r + 1) for ranks r = 1..k, float32[k]."""
    return 1.0 / jnp.log2(jnp.arange(2, k + 2, dtype=jnp.float32))


def ndcg_at_k(hits: Array, n_pos: Array) -> Array:
    r"""NDCG with binary relevance.

    .. math::
        \mathrm{DCG}_u = \sum_{r=1}^{K} [x_r \in G_u] / \log_2(r + 1), \quad
        \mathrm{IDCG}_u = \sum_{r=1}^{\min(K, |G_u|)} 1 / \log_2(r + 1)

    Args:
      hits: bool[C, K].
      n_pos: int32[C] held-out counts |G_u|; rows with 0 give 0.

    Returns:
      float32[C] DCG_u / IDCG_u.
    """
    k = hits.shape[1]
    discounts = _discounts(k)
    dcg = jnp.sum(hits.astype(jnp.float32) * discounts[None, :], axis=1)
    idcg = jnp.cumsum(discounts)[jnp.clip(n_pos, 1, k) - 1]
    return dcg / idcg


def precision_at_k(hits: Array, n_pos: Array | None = None) -> Array:
    r"""Precision: the fraction of the top-K that is held out.

    .. math:: \mathrm{Precision@K}(u) = |X_u \cap G_u| / K

    Args:
      hits: bool[C, K].
      n_pos: unused; accepted so that every hit metric has the same signature.

    Returns:
      float32[C].
    """
    del n_pos
    return _num_hits(hits) / jnp.float32(hits.shape[1])


def hit_rate_at_k(hits: Array, n_pos: Array | None = None) -> Array:
    r"""Hit rate: 1 when at least one held-out item is in the top-K.

    .. math:: \mathrm{Hit@K}(u) = [X_u \cap G_u \neq \emptyset]

    Args:
      hits: bool[C, K].
      n_pos: unused; accepted so that every hit metric has the same signature.

    Returns:
      float32[C] in {0, 1}.
    """
    del n_pos
    return jnp.any(hits, axis=1).astype(jnp.float32)


def category_coverage_at_k(rec_categories: Array, target_categories: Array) -> Array:
    r"""Category coverage of the authors' code: the share of cat(G_u) in the top-K.

    .. math:: \mathrm{CC@K}(u) = |cat(X_u) \cap cat(G_u)| / |cat(G_u)|

    A user whose held-out items have no category (cat(G_u) empty) gets 0.

    Args:
      rec_categories: float32[C, K, n_cat] multi-hot categories of the top-K items
        (a category is present where the entry is > 0).
      target_categories: bool[C, n_cat] cat(G_u), the union over held-out items.

    Returns:
      float32[C].
    """
    covered = jnp.any(rec_categories > 0, axis=1)
    n_common = jnp.sum((covered & target_categories).astype(jnp.float32), axis=1)
    n_target = jnp.sum(target_categories.astype(jnp.float32), axis=1)
    return n_common / jnp.maximum(n_target, 1.0)


def category_coverage_global_at_k(rec_categories: Array) -> Array:
    r"""Global category coverage: the share of all categories present in the top-K.

    .. math:: \mathrm{CC_{global}@K}(u) = |cat(X_u)| / |\mathcal{C}|

    Args:
      rec_categories: float32[C, K, n_cat] multi-hot categories of the top-K items.

    Returns:
      float32[C].
    """
    covered = jnp.any(rec_categories > 0, axis=1)
    return jnp.sum(covered.astype(jnp.float32), axis=1) / jnp.float32(rec_categories.shape[2])


def intra_list_distance_at_k(rec_categories: Array) -> Array:
    r"""Intra-list distance: mean pairwise cosine distance of top-K category vectors.

    .. math::
        \mathrm{ILD@K}(u)
          = \frac{2}{K(K-1)} \sum_{r < r'} (1 - \cos(c_{x_r}, c_{x_{r'}}))
          = 1 - \frac{\lVert \sum_r \hat c_{x_r} \rVert^2 - K}{K(K-1)}

    with `ĉ = c / ‖c‖`. For one category per item this is the fraction of pairs
    whose categories differ. An item with no category counts as category `unknown`
    (module docstring). K = 1 gives 0.

    Args:
      rec_categories: float32[C, K, n_cat] multi-hot (or weighted, non-negative)
        category vectors of the top-K items.

    Returns:
      float32[C] in [0, 1].
    """
    k = rec_categories.shape[1]
    if k < 2:
        return jnp.zeros(rec_categories.shape[:1], jnp.float32)
    cats = rec_categories.astype(jnp.float32)
    sq_norm = jnp.sum(cats * cats, axis=2)  # [C, K]
    unknown = (sq_norm == 0).astype(jnp.float32)  # the implicit `unknown` component
    inv_norm = 1.0 / jnp.sqrt(sq_norm + unknown)
    summed = jnp.sum(cats * inv_norm[:, :, None], axis=1)  # [C, n_cat]
    summed_unknown = jnp.sum(unknown * inv_norm, axis=1)  # [C]
    sq_sum = jnp.sum(summed * summed, axis=1) + summed_unknown * summed_unknown
    mean_cos = (sq_sum - k) / (k * (k - 1))
    return jnp.clip(1.0 - mean_cos, 0.0, 1.0)


def gini_index(counts: Array) -> Array:
    r"""Gini coefficient of exposure over all n items (0 equal, (n-1)/n one item).

    .. math:: \mathrm{Gini} = \sum_{k=1}^{n} (2k - n - 1)\, c_{(k)} / (n \sum_k c_{(k)})

    with `c_(1) <= .. <= c_(n)` the sorted counts. All-zero counts give 0.

    Args:
      counts: float32[I] appearances of every item in the pooled top-K lists, including
        the items never recommended (count 0).

    Returns:
      float32[] scalar.
    """
    n = counts.shape[0]
    sorted_counts = jnp.sort(counts.astype(jnp.float32))
    total = jnp.sum(sorted_counts)
    ranks = jnp.arange(1, n + 1, dtype=jnp.float32)
    weights = (2.0 * ranks - n - 1.0) / n
    shares = sorted_counts / jnp.where(total > 0, total, 1.0)
    return jnp.sum(weights * shares)


HIT_METRICS = {
    "recall": recall_at_k,
    "recall_norm": recall_norm_at_k,
    "ndcg": ndcg_at_k,
    "precision": precision_at_k,
    "hit": hit_rate_at_k,
}
"""Metric key prefix -> `fn(hits bool[C, K], n_pos int32[C]) -> f32[C]`."""
