"""Every baseline end to end on real data (lastfm, MF, one epoch): finite metrics, run directory."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dvr_jax.config import RunConfig
from dvr_jax.loop import train_and_evaluate

METHODS = ["aobpr", "wbpr", "pris", "tce", "rce", "til-ui", "til-mi"]


@pytest.mark.realdata
@pytest.mark.parametrize("method", METHODS)
def test_baseline_runs_end_to_end_on_real_data(real_data_dir, tmp_path, method):
    out = tmp_path / method
    cfg = RunConfig(dataset="lastfm", data_dir=str(real_data_dir), method=method, epochs=1, batch_size=2048,
                    valid_interval=1, patience=None, out=str(out), progress=False)  # fmt: skip
    results = train_and_evaluate(cfg)
    assert results["method"] == method and results["best_epoch"] == 1
    for split in ("valid", "test"):
        values = [results[split][k] for k in ("recall@20", "ndcg@20")]
        assert all(np.isfinite(v) and 0.0 <= v <= 1.0 for v in values)
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 1 and np.isfinite(log[0]["loss"]) and 0.0 < log[0]["loss"] < 1.0
