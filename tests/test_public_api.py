"""The top-level API: primitives importable from `dvr_jax`, valuator read-outs consistent."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dvr_jax


def test_public_names_are_importable():
    for name in ("load_dataset", "make_backbone", "make_bpr_step", "make_dvr_step", "make_valuator",
                 "shapley_values", "valuator_output", "evaluate", "evaluate_on_device", "bpr_per_sample",
                 "sample_uniform_negatives", "shard_step", "make_reward_fn"):  # fmt: skip
        assert name in dvr_jax.__all__ and callable(getattr(dvr_jax, name))


@pytest.mark.parametrize(
    "kind, options",
    [
        ("sample", dict(h_dim=3, encoder_hidden=(8,), interaction_rank=2)),
        ("slot", dict(h_dim=3, width=6, encoder_hidden=(8,), children_init="cover")),
    ],  # fmt: skip
)
def test_shapley_values_sum_to_the_full_minus_empty_batch_value(key, kind, options):
    valuator = dvr_jax.make_valuator(kind, **options)
    feats = jax.random.normal(key, (12, 7))
    params = valuator.init(jax.random.key(1), feats)
    phi = dvr_jax.shapley_values(valuator, params, feats)
    full = dvr_jax.valuator_output(valuator, params, feats, jnp.ones(12))
    empty = dvr_jax.valuator_output(valuator, params, feats, jnp.zeros(12))
    assert float(jnp.abs(phi).max()) > 0
    np.testing.assert_allclose(float(phi.sum()), float(full - empty), rtol=1e-4, atol=1e-5)


def test_loading_a_baseline_does_not_load_dvr():
    import subprocess
    import sys

    heavy = "('dvr_jax.dvr', 'dvr_jax.valuator')"
    code = f"import sys, dvr_jax.baselines; print(sorted(m for m in sys.modules if m.startswith({heavy})))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
