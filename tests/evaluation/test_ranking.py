"""Full-ranking evaluation against a dense brute-force NumPy evaluation, plus invariants."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dvr_jax.backbones import make_mf
from dvr_jax.evaluation import evaluate, evaluate_on_device, make_eval_arrays, ranking, topk_lists
from tests.evaluation import oracles

KS = (3, 10)


@pytest.fixture
def setup(rng):
    """A synthetic dataset, an MF backbone and exact (1/4-grid) params with real ties."""
    ds = oracles.synthetic_dataset(rng)
    backbone = make_mf(ds.n_users, ds.n_items, dim=8)
    params = jax.tree.map(jnp.asarray, oracles.quantized_mf_params(rng, ds.n_users, ds.n_items))
    scores = np.asarray(params["user"], np.float64) @ np.asarray(params["item"], np.float64).T
    return ds, backbone, params, scores


def _assert_metrics_close(got: dict, want: dict, rtol: float = 1e-5):
    chex.assert_trees_all_close(got, want, rtol=rtol, atol=1e-6)  # same metric names, each close


@pytest.mark.parametrize("split", ["valid", "test"])
@pytest.mark.parametrize("with_categories", [True, False])
def test_evaluate_matches_brute_force(setup, split, with_categories):
    ds, backbone, params, scores = setup
    assert len(np.unique(scores)) < scores.size / 4  # many exact ties: the tie rule matters
    cats = ds.item_categories if with_categories else None
    ea = make_eval_arrays(ds, split, chunk_size={"valid": 7, "test": 4}[split])
    assert not np.all(np.asarray(ea.user_mask))  # some pad rows
    got = evaluate(backbone, params, None, ea, ks=KS, item_categories=cats)
    want, _ = oracles.brute_force_evaluate(scores, ds, split, KS, cats)
    _assert_metrics_close(got, want)
    assert 0 < got["recall@10"] < 1 and 0 < got["gini@10"] < 1


@pytest.mark.parametrize("split", ["valid", "test"])
def test_topk_lists_match_brute_force(setup, split):
    ds, backbone, params, scores = setup
    users, items, top_scores = topk_lists(backbone, params, None, make_eval_arrays(ds, split, chunk_size=5), 10)
    _, lists = oracles.brute_force_evaluate(scores, ds, split, (10,))
    assert users.tolist() == sorted(lists)
    np.testing.assert_array_equal(items, np.array([lists[u] for u in users.tolist()]))
    np.testing.assert_array_equal(top_scores, np.take_along_axis(scores[users], items, 1))
    assert items.dtype == np.int32 and top_scores.dtype == np.float32


def test_lower_index_first_on_ties():
    """All scores equal: the top-K is the K smallest non-excluded item ids."""
    ds = oracles.synthetic_dataset(np.random.default_rng(1), n_categories=None)
    backbone = make_mf(ds.n_users, ds.n_items, dim=2)
    params = {"user": jnp.ones((ds.n_users, 2)), "item": jnp.ones((ds.n_items, 2))}
    users, items, _ = topk_lists(backbone, params, None, make_eval_arrays(ds, "valid"), 5)
    for user, row in zip(users, items):
        allowed = np.setdiff1d(np.arange(ds.n_items), ds.train[ds.train[:, 0] == user, 1])
        np.testing.assert_array_equal(row, allowed[:5])


@pytest.mark.parametrize("split", ["valid", "test"])
def test_excluded_items_never_recommended(rng, split):
    ds = oracles.synthetic_dataset(rng, n_users=30, n_items=80)
    backbone = make_mf(ds.n_users, ds.n_items, dim=8)
    params = backbone.init(jax.random.key(3))
    # push the excluded items to the top so that masking is what keeps them out
    exclude = ds.train if split == "valid" else np.concatenate([ds.train, ds.valid])
    popular = np.bincount(exclude[:, 1], minlength=ds.n_items).astype(np.float32)
    params = {"user": params["user"].at[:, 0].set(1.0), "item": params["item"].at[:, 0].set(jnp.asarray(popular))}
    users, items, scores = topk_lists(backbone, params, None, make_eval_arrays(ds, split, chunk_size=7), 20)
    for user, row in zip(users, items):
        assert not set(row.tolist()) & set(exclude[exclude[:, 0] == user, 1].tolist())
    assert np.all(np.isfinite(scores))
    if split == "valid":  # test items remain candidates for validation
        recommended = {(int(u), int(i)) for u, row in zip(users, items) for i in row}
        assert recommended & {(int(u), int(i)) for u, i in ds.test}


def test_compiles_once(setup):
    ds, _, params, _ = setup
    backbone = make_mf(ds.n_users, ds.n_items, dim=8)  # a fresh backbone: a new cache entry
    ea = make_eval_arrays(ds, "valid", chunk_size=4)
    assert ea.n_chunks > 2
    before = ranking._accumulate_step._cache_size()
    encode_before = ranking._encode._cache_size()
    for seed in range(3):
        evaluate(backbone, jax.tree.map(lambda x, s=seed: x + s, params), None, ea, ks=KS)
    assert ranking._accumulate_step._cache_size() == before + 1
    assert ranking._encode._cache_size() == encode_before + 1


@pytest.mark.slow
def test_on_device_jit_equals_no_jit_and_host_driver(rng):
    ds = oracles.synthetic_dataset(rng)
    backbone = make_mf(ds.n_users, ds.n_items, dim=8)
    params = backbone.init(jax.random.key(0))
    ea = make_eval_arrays(ds, "valid", chunk_size=12)  # two chunks: eager mode is slow
    assert ea.n_chunks == 2
    cats = jnp.asarray(ds.item_categories)

    def reward_fn(params, eval_arrays, item_categories):
        reps = backbone.encode(params, None)
        return evaluate_on_device(backbone, reps, eval_arrays, ks=KS, item_categories=item_categories)

    jitted = jax.jit(reward_fn)(params, ea, cats)
    with jax.disable_jit():
        eager = reward_fn(params, ea, cats)
    host = evaluate(backbone, params, None, ea, ks=KS, item_categories=cats)
    _assert_metrics_close(eager, jitted)
    _assert_metrics_close(host, jitted)
    assert all(v.shape == () and v.dtype == jnp.float32 for v in jitted.values())


def test_independent_of_chunk_size(setup):
    ds, backbone, params, _ = setup
    results = [
        evaluate(
            backbone,
            params,
            None,
            make_eval_arrays(ds, "test", chunk_size=c),
            ks=KS,
            item_categories=ds.item_categories,
        )
        for c in (1, 4, 7, 1000)
    ]
    for other in results[1:]:
        _assert_metrics_close(other, results[0], rtol=1e-6)


def test_pad_rows_do_not_affect_metrics(setup):
    ds, backbone, params, _ = setup
    ea = make_eval_arrays(ds, "valid", chunk_size=7)
    mask = np.asarray(ea.user_mask)
    assert (~mask).sum() >= 1
    base = evaluate(backbone, params, None, ea, ks=KS, item_categories=ds.item_categories)
    # pad rows pointed at other users (and pretending to have held-out items) change nothing
    for pad_user in (1, ds.n_users - 1):
        moved = ea.replace(
            users=jnp.where(ea.user_mask, ea.users, pad_user),
            n_pos=jnp.where(ea.user_mask, ea.n_pos, 5),
        )
        other = evaluate(backbone, params, None, moved, ks=KS, item_categories=ds.item_categories)
        _assert_metrics_close(other, base, rtol=1e-6)
    no_pad = make_eval_arrays(ds, "valid", chunk_size=ea.n_users)
    assert np.all(np.asarray(no_pad.user_mask))
    _assert_metrics_close(evaluate(backbone, params, None, no_pad, ks=KS, item_categories=ds.item_categories), base)


def test_user_subset_matches_brute_force(setup):
    ds, backbone, params, scores = setup
    subset = np.array([0, 2, 3, 8, 9, 15, 21])
    ea = make_eval_arrays(ds, "valid", chunk_size=3, users=subset)
    got = evaluate(backbone, params, None, ea, ks=KS, item_categories=ds.item_categories)
    want, _ = oracles.brute_force_evaluate(scores, ds, "valid", KS, ds.item_categories, users=subset)
    _assert_metrics_close(got, want)


def test_short_candidate_list_is_completed_with_excluded_items():
    """A user with fewer than K candidates: the list ends with -inf (excluded) items, no hits."""
    from dvr_jax.data.dataset import Dataset

    train = np.array([[0, i] for i in range(6) if i not in (2, 4)] + [[1, 0]], np.int32)
    ds = Dataset(
        name="short", n_users=2, n_items=6, train=train,
        valid=np.array([[0, 2], [1, 3]], np.int32), test=np.array([[0, 4]], np.int32),
        user_ids=np.array(["a", "b"], object), item_ids=np.arange(6).astype(str).astype(object),
    )  # fmt: skip
    backbone = make_mf(2, 6, dim=1)
    params = {"user": jnp.ones((2, 1)), "item": jnp.arange(6.0)[:, None]}
    users, items, scores = topk_lists(backbone, params, None, make_eval_arrays(ds, "valid"), 4)
    np.testing.assert_array_equal(items[0], [4, 2, 0, 1])  # candidates 4, 2; then excluded 0, 1
    assert np.all(np.isinf(scores[0, 2:]))
    got = evaluate(backbone, params, None, make_eval_arrays(ds, "valid"), ks=(4,))
    np.testing.assert_allclose(got["recall@4"], 1.0)  # user 0 finds 2, user 1 finds 3
    np.testing.assert_allclose(got["precision@4"], 0.25)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="checks the XLA:CPU lowering")
def test_top_k_stays_a_top_k_kernel(setup):
    """Slicing the top-K (metrics at several K) must not turn top_k into a full [C, I] sort."""
    ds, backbone, params, _ = setup
    ea = make_eval_arrays(ds, "valid", chunk_size=7)
    cats = jnp.asarray(ds.item_categories)
    totals = ranking._init_totals(KS, ds.n_items, True)
    step = ranking._accumulate_step.lower(totals, params, ea, cats, np.int32(0), score_all=backbone.score_all, ks=KS)
    on_device = jax.jit(lambda p, e, c: evaluate_on_device(backbone, p, e, ks=KS, item_categories=c)).lower(
        params, ea, cats
    )
    for lowered in (step, on_device):
        hlo = lowered.compile().as_text()
        assert 'custom_call_target="TopK"' in hlo
        full = f"f32[{ea.chunk_size},{ds.n_items}]"
        assert not [line for line in hlo.splitlines() if " sort(" in line and full in line]


def test_a_progress_callback_sees_every_chunk_and_changes_nothing(setup):
    ds, backbone, params, scores = setup
    ea = make_eval_arrays(ds, "valid", chunk_size=4)
    calls = []
    got = evaluate(backbone, params, None, ea, ks=KS, on_chunk=lambda done, total: calls.append((done, total)))
    assert calls == [(i, ea.n_chunks) for i in range(1, ea.n_chunks + 1)] and ea.n_chunks > 2
    assert got == evaluate(backbone, params, None, ea, ks=KS)  # the per-chunk wait changes no number
