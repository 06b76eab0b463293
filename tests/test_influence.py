"""First-order validation influence: finite differences (float64) and the rank correlation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from dvr_jax import influence, losses
from dvr_jax.backbones import make_backbone


@pytest.mark.slow
def test_influence_matches_finite_differences_of_the_validation_loss():
    """infl_b = lim (L_val(T) - L_val(T - h grad l_b)) / h, for every sample of the batch."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        backbone = make_backbone("lightgcn", 7, 9, dim=4)
        train = np.array([[u, i] for u in range(7) for i in range(9) if (u + 2 * i) % 3 == 0])
        # The graph is built in float32; the whole check runs in float64 (no implicit promotion).
        graph = jax.tree.map(
            lambda x: x.astype(jnp.float64) if jnp.issubdtype(x.dtype, jnp.floating) else x,
            backbone.build_graph(train),
        )
        params = jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape)), backbone.init(jax.random.key(0)))
        users, pos, neg = (jnp.asarray(rng.integers(n, size=5)) for n in (7, 9, 9))
        vu, vp, vn = (jnp.asarray(rng.integers(n, size=11)) for n in (7, 9, 9))

        def per_sample(p):
            reps = backbone.encode(p, graph)
            return losses.bpr_per_sample(backbone.score_pairs(reps, users, pos), backbone.score_pairs(reps, users, neg))

        def val_loss(p):
            return influence.validation_loss(backbone, p, graph, vu, vp, vn)

        got = influence.batch_influence(per_sample, val_loss, params)
        h = 1e-6
        for b in range(5):
            grad_b = jax.grad(lambda p, b=b: per_sample(p)[b])(params)
            stepped = jax.tree.map(lambda x, g: x - h * g, params, grad_b)
            finite_difference = (val_loss(params) - val_loss(stepped)) / h
            np.testing.assert_allclose(float(got[b]), float(finite_difference), rtol=1e-4, atol=1e-9)
        assert np.ptp(np.asarray(got)) > 1e-3  # the samples differ


def test_spearman_matches_scipy():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=200), rng.normal(size=200)
    b = 0.5 * a + b
    got = influence.spearman(jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32))
    np.testing.assert_allclose(float(got), scipy.stats.spearmanr(a, b).statistic, rtol=1e-5)
