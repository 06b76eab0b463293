"""A step sharded over 8 simulated CPU devices equals the 1-device step."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO

SCRIPT = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np
    from dvr_jax import sampler, train
    from dvr_jax.backbones import make_backbone
    from dvr_jax.sharding import make_data_mesh, shard_step
    assert len(jax.devices()) == 8
    rng = np.random.default_rng(0)
    pairs = np.unique(np.stack([rng.integers(0, 60, 900), rng.integers(0, 50, 900)], 1), axis=0)
    arrays = sampler.make_train_arrays(pairs, 60, 50)
    for name in ("mf", "lightgcn"):
        backbone = make_backbone(name, 60, 50, dim=8)
        data = train.StepData(arrays, backbone.build_graph(pairs))
        step = train.make_bpr_step(backbone)
        key = jax.random.key(0)
        batches = sampler.epoch_batches(key, arrays.n_pairs, 64)
        single = train.create_backbone_state(key, backbone)
        multi = jax.tree.map(jnp.copy, single)
        one_device, sharded = jax.jit(step), shard_step(step, make_data_mesh())
        for i in range(3):
            single, _ = one_device(single, key, batches[i], data)
            multi, _ = sharded(multi, key, batches[i], data)
        for a, b in zip(jax.tree.leaves(single.params), jax.tree.leaves(multi.params)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    print("ok")
    """
)


@pytest.mark.slow
def test_sharded_step_matches_single_device():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("ok")
