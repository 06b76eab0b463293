"""Every baseline end to end on real data (lastfm, MF, one epoch), told apart from plain BPR.

One epoch at Adam 0.02 moves the model enough for each rule to leave its mark on the run's
train_log: hard negatives (AOBPR, WBPR) keep the logged BPR loss above plain BPR's on the same
seed and batches; PRIS's importance weights are not flat; the TCE drop rate follows its ramp;
RCE's weights are σ(ŷ_ui − ŷ_uj)^β < 1; TIL's generator weights vary across triplets. The rules
themselves are pinned through each method's step in test_step_rules.py.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from dvr_jax.config import make_config
from dvr_jax.loop import train_and_evaluate

METHODS = ["aobpr", "wbpr", "pris", "tce", "rce", "til-ui", "til-mi"]
BATCH = 2048
TCE_RAMP = 10  # steps; lastfm has 24 steps per epoch, so the epoch sees the ramp and the plateau


def _run(data_dir, out, method: str, **options) -> tuple[dict, dict]:
    """(results, the epoch's train_log record) of a one-epoch run."""
    cfg = make_config(dataset="lastfm", data_dir=str(data_dir), method=method, epochs=1, batch_size=BATCH,
                    learning_rate=0.02, ks=(20,), valid_interval=1, patience=None, out=str(out), progress=False,
                    **options)  # fmt: skip
    results = train_and_evaluate(cfg, report=False)
    assert results["method"] == method and results["best_epoch"] == 1
    for split in ("valid", "test"):
        assert all(np.isfinite(results[split][k]) and 0.0 <= results[split][k] <= 1.0 for k in ("recall@20", "ndcg@20"))
    (log,) = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert np.isfinite(log["loss"]) and 0.0 < log["loss"] < 1.0
    return results, log


@pytest.fixture(scope="module")
def bpr_loss(tmp_path_factory):
    """`bpr_loss(data_dir)`: the logged loss of plain BPR's epoch on the same seed (run once, on first use)."""
    cache = {}

    def loss(data_dir) -> float:
        if "loss" not in cache:
            cache["loss"] = _run(data_dir, tmp_path_factory.mktemp("runs") / "bpr", "bpr")[1]["loss"]
        return cache["loss"]

    return loss


@pytest.mark.parametrize("method", METHODS)
def test_baseline_run_shows_its_rule(real_data_dir, tmp_path, bpr_loss, method):
    options = {"tce_num_gradual": TCE_RAMP} if method == "tce" else {}
    results, log = _run(real_data_dir, tmp_path / method, method, **options)
    if method in ("aobpr", "wbpr"):  # negatives the model scores high: a larger loss than uniform ones
        assert log["loss"] > bpr_loss(real_data_dir) + 0.005
    elif method == "pris":  # softmax weights over L = 5 negatives, flat only for plain BPR
        assert 0.0 < log["weight_entropy"] < math.log(5) - 0.005
    elif method == "tce":  # the epoch's mean of ε(t) = 0.2 min(t / N_r, 1) over its steps
        steps = results["dataset_summary"]["train"] // BATCH
        expected = np.mean([0.2 * min(t / TCE_RAMP, 1.0) for t in range(steps)])
        assert log["drop_rate"] == pytest.approx(expected, rel=1e-5) and 0.0 < expected < 0.2
    elif method == "rce":  # w = exp(-β ℓ): mean_w ≥ exp(-β mean ℓ) (Jensen), and near it early on
        floor = math.exp(-0.2 * log["loss"])
        assert floor - 1e-6 <= log["mean_weight"] < min(floor + 0.01, 1.0)
    else:  # TIL: per-triplet weights from the generator, not BPR's constant 1
        assert log["weight_std"] > 0.1 and log["mean_weight"] > 0.0
        assert np.isfinite(log["outer_loss"]) and 0.0 < log["outer_loss"] < math.log(2)
