"""The DVR options of the run config and the CLI: new flags parse, bad combinations fail up front."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from dvr_jax.builders import _update_batch
from dvr_jax.config import ConfigError, RunConfig, make_config
from experiments import run


def test_dvr_flags_reach_the_config():
    cfg = run.config_from_args(["--valuator", "slot", "--estimator", "ema", "--num-masks", "3", "--mse-target",
                                "batch", "--no-influence", "--loss-game-weight", "0.5", "--loss-game-coalitions",
                                "4", "--interaction-rank", "2", "--max-order", "3"])  # fmt: skip
    o = cfg.options
    assert (o.valuator, o.estimator, o.num_masks, o.mse_target, o.influence) == (
        "slot",
        "ema",
        3,
        "batch",
        False,
    )
    assert (o.loss_game_weight, o.loss_game_coalitions, o.interaction_rank, o.max_order) == (0.5, 4, 2, 3)
    assert o.h_dim == 10 and RunConfig().options.h_dim == 32  # the slot valuator keeps its own width


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(estimator="bogus"), "estimator must be one of"),
        (dict(valuator="grouped"), "valuator must be one of"),
        (dict(estimator="loo", reward_interval=3), "reward every step"),
        (dict(estimator="counterfactual", weight_mode="dot"), "sampled masks"),
        (dict(num_masks=0), "num_masks"),
        (dict(loss_game_weight=-1.0), "loss_game_weight must be >= 0"),
    ],  # fmt: skip
)
def test_bad_dvr_options_are_config_errors(changes, message):
    with pytest.raises(ConfigError, match=message):
        make_config(method="dvr", **changes)


def test_update_scale_counts_the_selected_pairs_as_the_warm_starts_batch():
    """bpr: a weight row counts as BPR's batch (5000, or all pairs when fewer); mean: as the run's own; sum: 0."""
    loss, recall = make_config(method="dvr", reward="loss"), make_config(method="dvr", reward="recall")
    assert (loss.batch_size, _update_batch(loss, None), _update_batch(recall, None)) == (1000, 5000, 5000)
    assert _update_batch(loss, 3000) == 3000  # the warm start's batch is capped at the training pairs
    assert _update_batch(make_config(method="dvr", reward="loss", reduction="mean"), None) == 1000
    assert _update_batch(run.config_from_args(["--reward", "loss", "--update-scale", "sum"]), None) == 0
    assert _update_batch(run.config_from_args(["--config", "authors", "--reward", "loss"]), None) == 0


def test_selection_slope_and_floor_reach_the_valuator():
    import jax.numpy as jnp

    from dvr_jax.loop import run_valuator

    shapley = jnp.linspace(-2.0, 2.0, 9)

    def probabilities(**changes):
        valuator = run_valuator(make_config(**changes))
        return valuator.probabilities({"offset": jnp.zeros(())}, shapley)

    base, steep, floored = probabilities(), probabilities(selection_slope=3.0), probabilities(selection_floor=0.2)
    standardised = (shapley - jnp.mean(shapley)) / jnp.std(shapley)
    assert jnp.allclose(steep, 1e-3 + (1 - 2e-3) * jax.nn.sigmoid(3.0 * standardised), atol=1e-5)
    assert jnp.allclose(floored, 0.2 + 0.6 * jax.nn.sigmoid(standardised), atol=1e-5)
    assert jnp.max(steep) > jnp.max(base) and jnp.min(floored) >= 0.2


def test_every_valuator_option_reaches_the_valuator():
    from dvr_jax.loop import run_valuator

    key = jax.random.key(0)
    feats = jax.random.normal(jax.random.key(1), (6, 13))

    def shapes(**changes):
        params = jax.eval_shape(run_valuator(make_config(**changes)).init, key, feats)
        return jax.tree.map(lambda leaf: leaf.shape, params)

    sample, slot = shapes(), shapes(valuator="slot")
    assert shapes(encoder_hidden=(8,)) != sample and shapes(valuator="slot", encoder_hidden=(8, 8, 8)) != slot
    assert shapes(valuator="slot", output_bias=True) != slot and shapes(valuator="slot", slot_encoder="paper") != slot
    assert shapes(valuator="slot", harsanyi_width=7) != slot and shapes(valuator="slot", const_column="no") != slot
    assert shapes(valuator="slot", slot_variant="C_compat") != slot  # children over features, not samples
    compat = run_valuator(make_config(valuator="slot", slot_variant="C_compat"))
    values = compat.shapley(compat.init(key, feats), feats)
    assert values.shape == (6,) and bool(jnp.all(jnp.isfinite(values)))
    assert make_config(valuator="slot", slot_variant="P").options.h_dim == 1  # the scalar variant's width
    with pytest.raises(ConfigError, match="variant 'P' needs h_dim=1"):
        make_config(valuator="slot", slot_variant="P", h_dim=4)
