"""DVR end to end on real data: every reward, warm start, and no test leakage (the test split
never reaches training, rewards or model selection)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from dvr_jax.config import make_config
from dvr_jax.data import load_dataset
from dvr_jax.loop import train_and_evaluate


def _config(real_data_dir, out, **changes):
    base = dict(dataset="lastfm", data_dir=str(real_data_dir), method="dvr", epochs=1, batch_size=2048,
                valid_interval=1, patience=None, warm_start="none", out=str(out), progress=False)  # fmt: skip
    return make_config(**{**base, **changes})


@pytest.mark.parametrize(
    "dataset, reward",
    [
        ("lastfm", "loss"),
        ("lastfm", "recall"),
        ("lastfm", "ndcg"),
        ("lastfm", "gini"),
        ("ml-100k", "cc"),
        ("ml-100k", "ild"),
    ],  # fmt: skip
)
@pytest.mark.slow
def test_dvr_runs_end_to_end_for_every_reward(real_data_dir, tmp_path, dataset, reward):
    out = tmp_path / "run"
    results = train_and_evaluate(_config(real_data_dir, out, dataset=dataset, reward=reward))
    assert results["reward"] == reward and 0.0 <= results["test"]["recall@20"] <= 1.0
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert set(log[0]) >= {"epoch", "loss", "reward", "cosine", "mean_prob", "selected", "null_fraction"}
    assert np.isfinite(log[0]["reward"]) and 0.0 < log[0]["selected"] < 1.0
    if reward in ("cc", "ild"):
        assert {"cc@20", "ild@20"} <= set(results["test"])
    rows = (out / "data_values.tsv").read_text().splitlines()
    assert rows[0] == "step\tuser\tpos_item\tneg_item\tshapley\tprob\tselected\tinfluence"
    steps = results["dataset_summary"]["train"] // 2048
    assert len(rows) == 1 + steps * 2048
    assert {"zero_fraction", "tied_fraction", "spearman_influence"} <= set(log[0])
    pairs = np.load(out / "pair_values.npz")
    assert len(pairs["users"]) == results["dataset_summary"]["train"] and pairs["visits"].sum() == steps * 2048
    visited = pairs["visits"] > 0
    assert np.all(np.isfinite(pairs["value"][visited])) and np.all(np.isnan(pairs["value"][~visited]))
    assert (out / "pair_values.tsv").read_text().startswith("user\titem\tvisits\tvalue\tprob\tinfluence\n")


@pytest.mark.slow
def test_test_split_never_reaches_training_or_selection(real_data_dir, tmp_path):
    """No test leakage: replacing the test split by garbage leaves every training and validation number unchanged."""
    dataset = load_dataset("lastfm", real_data_dir)
    rng = np.random.default_rng(7)
    garbage = np.stack([rng.integers(0, dataset.n_users, 500), rng.integers(0, dataset.n_items, 500)], 1)
    garbage = np.unique(garbage.astype(np.int32), axis=0)
    corrupted = dataclasses.replace(dataset, test=garbage)
    runs = {}
    for name, data in (("real", dataset), ("garbage", corrupted)):
        out = tmp_path / name
        runs[name] = train_and_evaluate(_config(real_data_dir, out, epochs=2), dataset=data)
        runs[name]["logs"] = [(out / f).read_text() for f in ("train_log.jsonl", "metrics.jsonl")]
    assert runs["real"]["logs"][0] == runs["garbage"]["logs"][0]
    metrics = [[json.loads(line)["valid"] for line in run["logs"][1].splitlines()] for run in runs.values()]
    assert metrics[0] == metrics[1] and runs["real"]["valid"] == runs["garbage"]["valid"]
    assert runs["real"]["test"] != runs["garbage"]["test"]


@pytest.mark.slow
def test_warm_start_trains_and_reuses_a_bpr_checkpoint(real_data_dir, tmp_path):
    cfg = _config(real_data_dir, tmp_path / "dvr", warm_start="auto", pretrain_epochs=2, estimator="ema",
                  influence=False)  # fmt: skip
    train_and_evaluate(cfg)
    (pretrained_run,) = (tmp_path / "pretrained").iterdir()
    assert pretrained_run.name.startswith("lastfm-mf-s0-")
    pretrained = json.loads((pretrained_run / "results.json").read_text())
    assert pretrained["method"] == "bpr" and pretrained["best_epoch"] >= 1
    stamp = (pretrained_run / "results.json").stat().st_mtime
    train_and_evaluate(dataclasses.replace(cfg, out=str(tmp_path / "dvr2")))
    assert (pretrained_run / "results.json").stat().st_mtime == stamp  # reused, not retrained
    train_and_evaluate(dataclasses.replace(cfg, out=str(tmp_path / "dvr3"), split_seed=7))
    assert len(list((tmp_path / "pretrained").iterdir())) == 2  # another split never reuses it


@pytest.mark.slow
def test_influence_is_a_diagnostic_that_leaves_training_unchanged(real_data_dir, tmp_path):
    """`influence=False` only drops the ground-truth column: the same seed trains the same models."""
    runs = {}
    for flag in (True, False):
        out = tmp_path / f"influence-{flag}"
        results = train_and_evaluate(_config(real_data_dir, out, epochs=2, reward="loss", estimator="ema",
                                             reward_interval=5, influence=flag))  # fmt: skip
        log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
        pairs = np.load(out / "pair_values.npz")
        runs[flag] = (results, log, pairs)
    (on, log_on, pairs_on), (off, log_off, pairs_off) = runs[True], runs[False]
    for key in ("loss", "reward", "selected", "mean_prob"):
        np.testing.assert_allclose([r[key] for r in log_off], [r[key] for r in log_on], rtol=1e-6)
    for split in ("valid", "test"):
        np.testing.assert_allclose([off[split][k] for k in sorted(off[split])],
                                   [on[split][k] for k in sorted(on[split])], rtol=1e-6)  # fmt: skip
    np.testing.assert_allclose(pairs_off["value"], pairs_on["value"], rtol=1e-5, atol=1e-7)
    assert np.any(pairs_on["influence"][pairs_on["visits"] > 0] != 0.0)
    assert np.all(pairs_off["influence"][pairs_off["visits"] > 0] == 0.0)
