"""The prepared device check runs end to end on CPU with --quick: every step, JSON lines out."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.conftest import REPO


@pytest.mark.slow
def test_gpu_check_quick_runs_every_step_on_cpu(real_data_dir):
    env = {**os.environ, "GPU_CHECK_SECONDS": "40", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([str(REPO / "benchmarks" / "gpu_check.sh"), "--quick", str(real_data_dir)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert lines[0]["check"] == "device" and lines[0]["backend"] == "cpu"
    benches = [line.get("bench") for line in lines]
    assert benches[1:5] == ["train_step", "train_step", "train_step", "eval"]
    assert [line["backbone"] for line in lines[1:4]] == ["mf", "lightgcn", "mf"] and lines[3]["method"] == "dvr"
    epochs = [line for line in lines if line.get("bench") == "lightgcn_epoch"]
    assert epochs and all(0.0 <= e["recall@20"] <= 1.0 and e["seconds_per_epoch"] > 0 for e in epochs)
    assert benches[-1] == "repro_lightgcn_gowalla" and lines[-1]["epochs_run"] >= epochs[-1]["epoch"]
