"""A method registered from outside the library trains end to end through the CLI.

The toy weighter below lives only in this file: it weights each triplet by the rank of its BPR
loss in the batch (the smallest loss weighs most) and logs the weights' mean; its options class
`ToyOptions` (one field, `scale`) lives here too. Registering it (for the test's duration) makes
`--method toy` a CLI choice, `--toy-scale` a flag and `toy` a valid `RunConfig.method`; the
loop builds and trains it like any built-in method (docs/engineering.md §12). A variant that
zeroes every weight, on a backbone without any regulariser, leaves the parameters exactly
where they started: the weights are what the update applies.
"""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dvr_jax import checkpoint, loop, registry
from dvr_jax.backbones import make_backbone
from dvr_jax.config import ConfigError, RunConfig, make_config, option
from dvr_jax.step import Context, Weighter, make_method, uniform_sampler
from experiments import run

SMOKE = ["--dataset", "lastfm", "--epochs", "2", "--batch-size", "4096", "--valid-interval", "1",
         "--patience", "none", "--no-progress"]  # fmt: skip


@dataclasses.dataclass(frozen=True)
class ToyOptions:
    """Toy: a rank weighter registered by a test (--method toy)."""

    scale: float = option(1.0, "multiplies every weight", min=0)


def rank_weighter(zero: bool = False, scale: float = 1.0) -> Weighter:
    """w_b = scale · 2 (B − rank_b) / (B + 1), rank 0 the smallest loss (mean `scale`); all zeros if `zero`."""

    def weights(state, ctx: Context):
        per_sample = ctx.forward.per_sample
        batch = per_sample.shape[0]
        rank = jnp.argsort(jnp.argsort(per_sample)).astype(jnp.float32)
        w = scale * 2.0 * (batch - rank) / (batch + 1.0)
        w = jnp.zeros_like(w) if zero else w
        return w, {"toy_weight": jnp.mean(w), "toy_top_loss_weight": w[jnp.argmax(per_sample)]}

    return Weighter(weights)


def toy_entry(name: str, zero: bool = False) -> registry.MethodEntry:
    def build(ctx: registry.BuildContext) -> registry.Built:
        backbone = ctx.backbone
        if zero:  # no coupled L2 and no regulariser: a zero weight means a zero gradient
            backbone = make_backbone("mf", ctx.dataset.n_users, ctx.dataset.n_items, dim=ctx.cfg.embedding_dim,
                                     weight_decay=0.0)  # fmt: skip
        scale = 1.0 if ctx.cfg.options is None else ctx.cfg.options.scale
        method = make_method(name, backbone, uniform_sampler(), rank_weighter(zero, scale),
                             learning_rate=ctx.cfg.learning_rate, init_params=ctx.init_params)  # fmt: skip
        return registry.Built(method, backbone)

    return registry.MethodEntry(name, build, **({} if zero else {"options": ToyOptions, "prefix": "toy"}))


@pytest.fixture
def toy():
    with registry.registered_method(toy_entry("toy")), registry.registered_method(toy_entry("toy-zero", zero=True)):
        yield
    assert "toy" not in registry.method_names() and "toy-zero" not in registry.method_names()


def test_registration_is_undone_and_names_are_checked(toy):
    assert {"toy", "toy-zero"} <= set(registry.method_names())
    assert RunConfig(method="toy").method == "toy"
    with pytest.raises(ValueError, match="already registered"):
        registry.register_method(toy_entry("toy"))
    assert "toy" in {a.dest: a.choices for a in run.parser()._actions}["method"]
    assert RunConfig(method="toy").options == ToyOptions() and RunConfig(method="toy-zero").options is None
    assert run.config_from_args(["--method", "toy", "--toy-scale", "0.5"]).options == ToyOptions(scale=0.5)
    with pytest.raises(ConfigError, match="toy_scale must be >= 0"):
        make_config(method="toy", toy_scale=-1.0)


def test_an_unregistered_method_is_refused():
    assert "toy" not in registry.method_names() and "--toy-scale" not in run.parser()._option_string_actions
    with pytest.raises(ConfigError, match="method must be one of"):
        RunConfig(method="toy")


def test_a_registered_method_trains_end_to_end(toy, real_data_dir, tmp_path):
    out = tmp_path / "toy"
    argv = [*SMOKE, "--data-dir", str(real_data_dir), "--method", "toy", "--toy-scale", "0.5", "--out", str(out)]
    assert run.main(argv) == 0
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 2 and all(np.isfinite(r["loss"]) for r in log)
    assert all(r["toy_weight"] == pytest.approx(0.5, rel=1e-5) for r in log)  # its option reached the rule
    assert json.loads((out / "config.json").read_text())["toy_scale"] == 0.5
    assert all(r["toy_top_loss_weight"] < 0.01 for r in log)  # the largest loss weighs least
    results = json.loads((out / "results.json").read_text())
    assert results["method"] == "toy" and results["reward"] is None and 0.0 < results["valid"]["recall@20"] <= 1.0


def test_zero_weights_leave_the_backbone_unchanged(toy, real_data_dir, tmp_path):
    out = tmp_path / "toy-zero"
    argv = [*SMOKE, "--data-dir", str(real_data_dir), "--method", "toy-zero", "--out", str(out)]
    assert run.main(argv) == 0
    cfg = run.config_from_args(argv)
    method = loop.build(cfg).method
    initial = method.init(loop.run_keys(cfg.seed)[0])
    trained, _, _ = checkpoint.restore(checkpoint.open_manager(out / "checkpoints" / "latest"), initial)
    assert int(trained.step) > 0  # Adam stepped, with zero gradients
    pairs = zip(jax.tree.leaves(method.backbone_params(initial)), jax.tree.leaves(method.backbone_params(trained)))
    for before, after in pairs:
        np.testing.assert_array_equal(np.asarray(before), np.asarray(after))
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["toy_weight"] for r in log] == [0.0, 0.0]
