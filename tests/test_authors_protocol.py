"""The authors' protocol (`--config authors`): reachable as one preset, and marked test-leaky everywhere.

Its ingredients are tested where they live (the frozen encoder and the batch loss reward in
tests/test_dvr.py, the C_compat valuator in tests/valuator); here: the reward on test users, the
selection on test, and the marking of every run that read the test split.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from dvr_jax import rewards, sampler
from dvr_jax.config import leaky_ingredients, make_config
from experiments import run
from experiments.configs.presets import PRESETS
from tests.helpers import tiny_dataset


def _heldout(arrays) -> set[tuple[int, int]]:
    """The (user, item) held-out pairs of chunked evaluation arrays."""
    users = np.asarray(arrays.users)
    pairs = set()
    for chunk in range(users.shape[0]):
        rows, items = np.asarray(arrays.heldout_rows[chunk]), np.asarray(arrays.heldout_items[chunk])
        pairs |= {(int(users[chunk, r]), int(i)) for r, i in zip(rows, items, strict=True) if r < users.shape[1]}
    return pairs


@pytest.mark.parametrize("split", ["valid", "test"])
def test_the_reward_reads_the_split_it_is_given(rng, split):
    dataset = tiny_dataset(rng)
    arrays = sampler.make_train_arrays(dataset.train, dataset.n_users, dataset.n_items)
    data = rewards.make_reward_data(dataset, "recall", arrays, fraction=1.0, seed=0, chunk_size=8, split=split)
    pairs = getattr(dataset, split)
    assert _heldout(data.eval_arrays) == {(int(u), int(i)) for u, i in pairs}
    np.testing.assert_array_equal(np.asarray(data.pos_items), pairs[:, 1])  # the loss triplets too
    with pytest.raises(ValueError, match="reward split"):
        rewards.make_reward_data(dataset, "recall", arrays, split="train")


def test_what_makes_a_run_leaky():
    assert leaky_ingredients(make_config()) == ()
    assert leaky_ingredients(make_config(method="bpr", select_split="test")) == ("model selection on test",)
    assert leaky_ingredients(make_config(reward_split="test")) == ("reward on test users",)
    assert leaky_ingredients(make_config(**PRESETS["authors"])) == ("model selection on test", "reward on test users")
    authors = make_config(**PRESETS["authors"]).options
    assert (authors.slot_variant, authors.freeze_encoder, authors.weight_mode, authors.pg_mode) == (
        "C_compat", True, "dot", "code")  # fmt: skip
    assert (authors.value_map, authors.reward_k, authors.reward_fraction, authors.loss_reward) == (
        "code", 10, 0.1, "batch")  # fmt: skip


@pytest.mark.slow
def test_a_run_under_the_preset_is_marked_leaky_everywhere(real_data_dir, tmp_path, capsys):
    out = tmp_path / "authors"
    argv = ["--config", "authors", "--dataset", "ml-100k", "--data-dir", str(real_data_dir), "--reward", "loss",
            "--epochs", "2", "--pretrain-epochs", "1", "--batch-size", "512", "--valid-interval", "1",
            "--out", str(out), "--no-progress", "--no-plots"]  # fmt: skip
    assert run.main(argv) == 0
    printed = capsys.readouterr().out
    assert "TEST-LEAKY (model selection on test; reward on test users): not comparable with honest runs" in printed
    both = ["model selection on test", "reward on test users"]
    assert json.loads((out / "config.json").read_text())["leaky"] == both
    results = json.loads((out / "results.json").read_text())
    assert results["leaky"] == both
    checks = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all("test" in c for c in checks)  # selected by test Recall@20, the maximum over epochs
    best = max(checks, key=lambda c: c["test"]["recall@20"])
    assert results["best_epoch"] == best["epoch"]
    warm = next((tmp_path / "pretrained").iterdir())  # the warm start stays an honest run
    assert json.loads((warm / "config.json").read_text())["leaky"] == []
    assert json.loads((warm / "config.json").read_text())["select_split"] == "valid"
    assert run.main(["--config", "authors", "--method", "bpr"]) == 2
    assert "is an option of method dvr, not of bpr" in capsys.readouterr().err
