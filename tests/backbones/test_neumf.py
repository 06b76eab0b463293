"""NeuMF: forward pass against NumPy, dropout, chunked full-ranking scores.

score_all cost was measured with (C = 1000 users, jitted, steady state):
  /work/venv/bin/python -m tests.backbones.test_neumf 1000 40981
"""

from __future__ import annotations

import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dvr_jax.backbones import make_backbone

U, I = 5, 11


def numpy_neumf(params, users, items):
    """NumPy re-computation of the deterministic NeuMF score."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params["params"])
    gmf = p["gmf_user"]["embedding"][users] * p["gmf_item"]["embedding"][items]
    act = np.concatenate([p["mlp_user"]["embedding"][users], p["mlp_item"]["embedding"][items]], 1)
    for layer in range(4):
        act = np.maximum(act @ p[f"mlp_{layer}"]["kernel"] + p[f"mlp_{layer}"]["bias"], 0.0)
    return (np.concatenate([gmf, act], 1) @ p["predict"]["kernel"])[:, 0] + p["predict"]["bias"][0]


@pytest.fixture
def model(key):
    backbone = make_backbone("neumf", U, I, rows_per_chunk=12)  # 12 // 5 = 2 items per chunk
    params = backbone.init(key)
    # Non-zero biases so the oracle checks them too.
    params = jax.tree_util.tree_map_with_path(
        lambda path, a: a + 0.1 if "bias" in jax.tree_util.keystr(path) else a, params
    )
    return backbone, params


def test_architecture(model):
    _, params = model
    shapes = {name: jax.tree.map(jnp.shape, leaf) for name, leaf in params["params"].items()}
    assert shapes["gmf_user"]["embedding"] == (U, 64) and shapes["mlp_item"]["embedding"] == (I, 64)
    assert [shapes[f"mlp_{layer}"]["kernel"] for layer in range(4)] == [(128, 64), (64, 32), (32, 16), (16, 8)]
    assert shapes["predict"]["kernel"] == (72, 1)


def test_forward_matches_numpy(model):
    backbone, params = model
    users, items = jnp.array([0, 1, 4, 4]), jnp.array([3, 10, 0, 7])
    got = backbone.score_pairs(backbone.encode(params, None), users, items)
    np.testing.assert_allclose(np.asarray(got), numpy_neumf(params, users, items), rtol=1e-5, atol=1e-6)


def test_dropout_only_with_key(model, key):
    backbone, params = model
    users, items = jnp.arange(U), jnp.arange(U)
    plain = backbone.score_pairs(params, users, items)
    dropped = backbone.score_pairs(params, users, items, key=key)
    again = backbone.score_pairs(params, users, items, key=key)
    np.testing.assert_array_equal(np.asarray(dropped), np.asarray(again))
    assert not np.allclose(np.asarray(plain), np.asarray(dropped))


def test_score_all_chunked_matches_pairs(model):
    backbone, params = model
    users = jnp.array([4, 0, 2, 1, 3])
    got = backbone.score_all(params, users)
    assert got.shape == (U, I)
    grid_u, grid_i = np.meshgrid(np.asarray(users), np.arange(I), indexing="ij")
    want = numpy_neumf(params, grid_u.ravel(), grid_i.ravel()).reshape(U, I)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-6)


def test_pair_features_are_gmf_and_mlp_ego_rows(model):
    backbone, params = model
    users, pos, neg = jnp.array([0, 3]), jnp.array([1, 2]), jnp.array([9, 10])
    feats = np.asarray(backbone.pair_features(params, users, pos, neg))
    assert feats.shape == (2, 6 * 64)
    p = params["params"]
    np.testing.assert_array_equal(feats[:, :64], np.asarray(p["gmf_user"]["embedding"][users]))
    np.testing.assert_array_equal(feats[:, 64:128], np.asarray(p["mlp_user"]["embedding"][users]))
    np.testing.assert_array_equal(feats[:, 128:192], np.asarray(p["gmf_item"]["embedding"][pos]))
    np.testing.assert_array_equal(feats[:, 320:], np.asarray(p["mlp_item"]["embedding"][neg]))


def _measure(n_users: int, n_items: int) -> None:
    """Prints compile and steady-state time of jitted score_all and the peak RSS."""
    import resource

    backbone = make_backbone("neumf", n_users, n_items)
    params = backbone.init(jax.random.key(0))
    users = jnp.arange(n_users, dtype=jnp.int32)
    fn = jax.jit(backbone.score_all)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    fn(params, users).block_until_ready()
    compile_s = time.perf_counter() - start
    times = []
    for _ in range(3):
        start = time.perf_counter()
        fn(params, users).block_until_ready()
        times.append(time.perf_counter() - start)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        f"C={n_users} I={n_items}: first call {compile_s:.2f} s, steady {min(times):.3f} s, "
        f"peak RSS {rss / 1e6:.2f} GB (+{(rss - rss0) / 1e6:.2f} GB during score_all)"
    )


if __name__ == "__main__":
    _measure(int(sys.argv[1]), int(sys.argv[2]))
