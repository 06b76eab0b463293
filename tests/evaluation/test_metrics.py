"""Metric functions: NumPy loop oracles on random lists, and hand-computed tables (docs/metrics.md)."""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dvr_jax.evaluation import metrics
from tests.evaluation import oracles

A, B, C_, Z = 0, 1, 2, 3  # item / category letters of the hand tables


def random_lists(rng: np.random.Generator, n_rows: int = 40, n_items: int = 30, k: int = 12):
    """Random top-K lists and held-out sets (some empty, some larger than K)."""
    recs, heldouts = [], []
    for row in range(n_rows):
        recs.append([int(x) for x in rng.permutation(n_items)[:k]])
        size = 0 if row % 11 == 0 else int(rng.integers(1, 16))
        heldouts.append({int(x) for x in rng.choice(n_items, size, replace=False)})
    hits = np.array([[item in g for item in rec] for rec, g in zip(recs, heldouts)])
    n_pos = np.array([len(g) for g in heldouts], np.int32)
    return recs, heldouts, hits, n_pos


def random_categories(rng: np.random.Generator, n_items: int = 30, n_cat: int = 5) -> np.ndarray:
    cats = (rng.random((n_items, n_cat)) < 0.4).astype(np.float32)
    cats[::7] = 0.0  # uncategorised items
    return cats


@pytest.mark.parametrize("name", sorted(metrics.HIT_METRICS))
@pytest.mark.parametrize("k", [1, 5, 12])
def test_hit_metrics_match_oracle(rng, name, k):
    recs, heldouts, hits, n_pos = random_lists(rng)
    fn = metrics.HIT_METRICS[name]
    got = np.asarray(fn(jnp.asarray(hits[:, :k]), jnp.asarray(n_pos)))
    want = [oracles.HIT_ORACLES[name](rec, g, k) for rec, g in zip(recs, heldouts)]
    assert got.shape == (len(recs),) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("k", [1, 2, 6, 12])
def test_category_metrics_match_oracle(rng, k):
    recs, heldouts, _, _ = random_lists(rng)
    cats = random_categories(rng)
    rec_cats = jnp.asarray(cats[np.array(recs)][:, :k])
    target = jnp.asarray(np.array([[any(cats[i, c] > 0 for i in g) for c in range(cats.shape[1])] for g in heldouts]))
    np.testing.assert_allclose(
        metrics.category_coverage_at_k(rec_cats, target),
        [oracles.cc(rec, g, k, cats) for rec, g in zip(recs, heldouts)],
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        metrics.category_coverage_global_at_k(rec_cats),
        [oracles.cc_global(rec, k, cats) for rec in recs],
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        metrics.intra_list_distance_at_k(rec_cats),
        [oracles.ild(rec, k, cats) for rec in recs],
        rtol=1e-5,
        atol=1e-6,
    )


def test_ild_weighted_vectors_match_oracle(rng):
    cats = rng.random((10, 4)).astype(np.float32) * (rng.random((10, 4)) < 0.6)
    recs = [list(rng.permutation(10)[:6]) for _ in range(8)]
    got = metrics.intra_list_distance_at_k(jnp.asarray(cats[np.array(recs)]))
    np.testing.assert_allclose(got, [oracles.ild(r, 6, cats) for r in recs], rtol=1e-5, atol=1e-6)


def test_gini_matches_oracle(rng):
    for counts in [rng.integers(0, 50, 97), rng.zipf(1.5, 300) % 1000, np.zeros(5)]:
        counts = counts.astype(np.float32)
        np.testing.assert_allclose(metrics.gini_index(jnp.asarray(counts)), oracles.gini(counts), rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- hand tables


def _hits(rec, heldout):
    return jnp.asarray([[item in heldout for item in rec]])


def test_recall_vector_3_6():
    """K = 2, G = {a, b, c}, X = (a, z): code (normalised) 1/2, standard 1/3."""
    hits, n_pos = _hits([A, Z], {A, B, C_}), jnp.asarray([3], jnp.int32)
    np.testing.assert_allclose(metrics.recall_norm_at_k(hits, n_pos), [1 / 2], rtol=1e-6)
    np.testing.assert_allclose(metrics.recall_at_k(hits, n_pos), [1 / 3], rtol=1e-6)


def test_ndcg_vector_3_6():
    """G = {a}, X = (z, a): 1 / log2(3) = 0.6309."""
    got = metrics.ndcg_at_k(_hits([Z, A], {A}), jnp.asarray([1], jnp.int32))
    np.testing.assert_allclose(got, [1 / math.log2(3)], rtol=1e-6)
    np.testing.assert_allclose(got, [0.6309], atol=1e-4)


@pytest.mark.parametrize(
    "rec, heldout, k, table",
    [
        # recall, recall_norm, ndcg, precision, hit
        ([A, B, Z], {A, B}, 3, (1.0, 1.0, 1.0, 2 / 3, 1.0)),
        ([Z, A, B], {A, B}, 3, (1.0, 1.0, (1 / math.log2(3) + 1 / 2) / (1 + 1 / math.log2(3)), 2 / 3, 1.0)),
        ([Z, 4, 5], {A}, 3, (0.0, 0.0, 0.0, 0.0, 0.0)),
        ([A, Z], {A, B, C_, 6}, 2, (1 / 4, 1 / 2, 1 / (1 + 1 / math.log2(3)), 1 / 2, 1.0)),
        ([A, B, C_, Z], {A, B, C_}, 4, (1.0, 1.0, 1.0, 3 / 4, 1.0)),
    ],
)
def test_hit_metric_table(rec, heldout, k, table):
    hits, n_pos = _hits(rec, heldout), jnp.asarray([len(heldout)], jnp.int32)
    names = ["recall", "recall_norm", "ndcg", "precision", "hit"]
    for name, want in zip(names, table):
        np.testing.assert_allclose(metrics.HIT_METRICS[name](hits, n_pos), [want], rtol=1e-6, err_msg=name)


def test_empty_heldout_gives_zero():
    hits, n_pos = jnp.zeros((1, 3), bool), jnp.zeros((1,), jnp.int32)
    for name, fn in metrics.HIT_METRICS.items():
        np.testing.assert_array_equal(fn(hits, n_pos), [0.0], err_msg=name)


def test_gini_vectors_3_6():
    n = 7
    np.testing.assert_allclose(metrics.gini_index(jnp.full((n,), 3.0)), 0.0, atol=1e-7)
    one = jnp.zeros((n,)).at[4].set(20.0)
    np.testing.assert_allclose(metrics.gini_index(one), (n - 1) / n, rtol=1e-6)
    np.testing.assert_allclose(metrics.gini_index(jnp.zeros((n,))), 0.0)
    # counts (0, 1, 3) sorted: (-2*0 + 0*1 + 2*3) / (3 * 4) = 0.5
    np.testing.assert_allclose(metrics.gini_index(jnp.asarray([3.0, 0.0, 1.0])), 0.5, rtol=1e-6)


def _one_hot(labels, n_cat=4):
    return jnp.asarray(np.eye(n_cat, dtype=np.float32)[labels])[None]  # [1, K, n_cat]


def test_ild_vectors_3_6():
    np.testing.assert_allclose(metrics.intra_list_distance_at_k(_one_hot([2, 2, 2, 2])), [0.0], atol=1e-6)
    np.testing.assert_allclose(metrics.intra_list_distance_at_k(_one_hot([0, 1, 2, 3])), [1.0], atol=1e-6)
    # one category per item: the fraction of differing pairs; (A, A, B): 2 of 3 pairs differ
    np.testing.assert_allclose(metrics.intra_list_distance_at_k(_one_hot([0, 0, 1])), [2 / 3], rtol=1e-6)
    # multi-hot: {A, B} vs {A}: cos = 1/sqrt(2)
    pair = jnp.asarray([[[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]]])
    np.testing.assert_allclose(metrics.intra_list_distance_at_k(pair), [1 - 1 / math.sqrt(2)], rtol=1e-6)
    np.testing.assert_allclose(metrics.intra_list_distance_at_k(_one_hot([3])), [0.0])


def test_ild_uncategorised_items_are_category_unknown():
    none = jnp.zeros((1, 3, 4))
    np.testing.assert_allclose(metrics.intra_list_distance_at_k(none), [0.0], atol=1e-6)
    mixed = jnp.asarray([[[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]]])  # unknown, A, unknown
    np.testing.assert_allclose(metrics.intra_list_distance_at_k(mixed), [2 / 3], rtol=1e-6)
    assert np.all(np.isfinite(metrics.intra_list_distance_at_k(mixed)))


def test_cc_vector_3_6():
    """cat(G) = {A, B}, cat(X) = {A, C}: CC (code) 0.5; CC global |{A, C}| / 4 = 0.5."""
    rec_cats = _one_hot([A, C_])
    target = jnp.asarray([[True, True, False, False]])
    np.testing.assert_allclose(metrics.category_coverage_at_k(rec_cats, target), [0.5])
    np.testing.assert_allclose(metrics.category_coverage_global_at_k(rec_cats), [0.5])
    # multi-hot items: X = ({A, B}, {}) covers all of cat(G) = {A, B}; 2 of 4 categories
    multi = jnp.asarray([[[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]])
    np.testing.assert_allclose(metrics.category_coverage_at_k(multi, target), [1.0])
    np.testing.assert_allclose(metrics.category_coverage_global_at_k(multi), [0.5])
    # no category among the held-out items: 0
    np.testing.assert_allclose(metrics.category_coverage_at_k(multi, jnp.zeros((1, 4), bool)), [0.0])


def test_metrics_jit_equals_no_jit(rng):
    _, _, hits, n_pos = random_lists(rng)
    hits, n_pos = jnp.asarray(hits), jnp.asarray(n_pos)
    cats = jnp.asarray(random_categories(rng)[rng.integers(0, 30, (8, 5))])

    def every_metric(hits, n_pos, cats):
        values = {name: fn(hits, n_pos) for name, fn in metrics.HIT_METRICS.items()}
        return {**values, "intra_list_distance": metrics.intra_list_distance_at_k(cats)}

    chex.assert_trees_all_close(jax.jit(every_metric)(hits, n_pos, cats), every_metric(hits, n_pos, cats), rtol=1e-6)
