"""Every run on several devices: the CLI on 8 simulated CPU devices against 1, a move from 8 to 2, a long epoch
on 4; tables split over a model axis against 1 device."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO


def _check_on_8_devices(script: str, real_data_dir, tmp_path) -> dict:
    """Runs tests/multidevice/<script> on 8 simulated CPU devices; its report (the last stdout line)."""
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu"}
    path = REPO / "tests" / "multidevice" / script
    done = subprocess.run([sys.executable, str(path), str(real_data_dir), str(tmp_path)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_runs_on_8_devices_equal_1_and_resume_on_2(real_data_dir, tmp_path):
    report = _check_on_8_devices("check_runs.py", real_data_dir, tmp_path)
    assert set(report) == {"bpr", "dvr"} and all(0 < v < 1 for v in report.values())


@pytest.mark.slow
def test_tables_split_over_model_equal_1_device(real_data_dir, tmp_path):
    report = _check_on_8_devices("check_tables.py", real_data_dir, tmp_path)
    assert report["meshes"] == [[2, 4], [1, 8]] and report["items"] == 1507 and 0 < report["recall@20"] < 1
    assert set(report["dvr_recall@20"]) == {"scratch", "warm"}  # DVR with --model-shards 4: [1 device, 8 devices]


@pytest.mark.slow
def test_a_run_with_many_steps_per_epoch_on_4_devices_finishes(real_data_dir, tmp_path):
    """The host stays one step ahead of the devices: 4 of 5 such runs aborted in an all-to-all without that."""
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    argv = [sys.executable, "experiments/run.py", "--dataset", "lastfm", "--data-dir", str(real_data_dir),
            "--epochs", "3", "--batch-size", "1024", "--valid-interval", "3", "--warm-start", "none",
            "--out", str(tmp_path / "r"), "--no-progress", "--no-plots"]  # fmt: skip
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((tmp_path / "r" / "config.json").read_text())["mesh"] == {"devices": 4, "processes": 1}


def test_too_many_devices_or_an_indivisible_batch_fail_before_training(real_data_dir, tmp_path, capsys):
    from experiments import run

    base = ["--dataset", "ml-100k", "--data-dir", str(real_data_dir), "--method", "bpr", "--epochs", "1",
            "--out", str(tmp_path / "r"), "--no-progress"]  # fmt: skip
    assert run.main([*base, "--devices", "64"]) == 2
    assert "--devices 64: this process has 1 local device(s)" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_bench_scaling_reports_each_device_count(real_data_dir):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)  # the script asks for 8 simulated devices itself
    argv = [sys.executable, "benchmarks/bench_scaling.py", "--dataset", "lastfm", "--data-dir", str(real_data_dir),
            "--batch-size", "1024", "--counts", "1", "2", "16", "--window", "2", "--windows", "1"]  # fmt: skip
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert [r["devices"] for r in summary["results"]] == [1, 2] and "skipping 16 devices" in done.stderr
    assert all(r["samples_per_s"] > 0 for r in summary["results"])


def test_bench_sharded_tables_reports_the_split_memory():
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)  # the script asks for 8 simulated devices itself
    argv = [sys.executable, "benchmarks/bench_sharded_tables.py", "--users", "30000", "--items", "20001", "--dim", "32",
            "--batch-size", "1024", "--steps", "2", "--eval-users", "300", "--eval-chunk", "64"]  # fmt: skip
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["mesh"] == {"data": 1, "model": 8} and report["item_rows_per_device"] == 2501  # 20001 padded to 20008
    assert abs(report["state_ratio"] - 1 / 8) < 1e-3 and report["peak_ratio"] < 0.25
    sharded, replicated = (
        report["compiled_bytes_per_device"]["sharded"],
        report["compiled_bytes_per_device"]["replicated"],
    )
    assert sharded["argument"] < replicated["argument"] / 4 and report["finite"] and len(report["losses"]) == 2
    evaluation = report["evaluation"]["compiled_bytes_per_device"]
    assert evaluation["sharded"]["peak"] < evaluation["replicated"]["peak"] / 4 and report["evaluation"]["users"] == 300
