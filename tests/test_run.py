"""End-to-end CLI on real data: outputs, export, errors, and bit-identical resume after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import pytest

from experiments import run
from tests.conftest import REPO

SMOKE = ["--dataset", "lastfm", "--config", "smoke", "--no-progress"]


def _results(path):
    return json.loads((path / "results.json").read_text())


def test_bpr_smoke_run_writes_the_run_directory(real_data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    code = run.main(SMOKE + ["--data-dir", str(real_data_dir), "--out", str(out), "--export", "--method", "bpr",
                             "--plots"])  # fmt: skip
    assert code == 0
    assert (out / "plots" / "curves.png").read_bytes().startswith(b"\x89PNG")  # the run's training curves
    results = _results(out)
    assert set(results["valid"]) >= {"recall@20", "ndcg@20", "recall_norm@20", "gini@20"}
    assert 0.0 < results["test"]["recall@20"] <= 1.0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [2, 4]
    config = json.loads((out / "config.json").read_text())
    assert config["batch_size"] == 1024 and config["dataset_summary"]["users"] == 1797
    topk = (out / "export" / "test_topk.tsv").read_text().splitlines()
    assert topk[0] == "user\titem\trank\tscore" and len(topk) == 1 + 20 * results["dataset_summary"]["users"]
    train_rows = (out / "export" / "train.tsv").read_text().splitlines()
    assert len(train_rows) == 1 + results["dataset_summary"]["train"]
    printed = capsys.readouterr().out
    assert "test: recall@20" in printed and str(out) in printed


def test_existing_run_needs_resume_or_overwrite(real_data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    args = SMOKE + ["--data-dir", str(real_data_dir), "--out", str(out), "--method", "pop"]
    assert run.main(args) == 0
    assert run.main(args) == 2
    assert "--resume" in capsys.readouterr().err
    assert run.main(args + ["--overwrite"]) == 0


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--dataset", "no-such-set"], "known"),
        (["--select-metric", "recall@50"], "select_metric must be <metric>@K with K in ks"),
        (["--backbone", "nope"], "unknown backbone"),
        (["--warm-start", "/nonexistent/run", "--method", "bpr"], "no BPR checkpoint"),
    ],
)
def test_bad_input_gives_one_line_and_exit_2(real_data_dir, tmp_path, capsys, argv, message):
    code = run.main(["--data-dir", str(real_data_dir), "--out", str(tmp_path / "r"), "--no-progress"] + argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "r").exists()  # nothing half-written


def test_malformed_file_names_file_and_line_and_writes_nothing(tmp_path, capsys):
    (tmp_path / "lastfm").mkdir()
    (tmp_path / "lastfm" / "user_artists.dat").write_text("userID\tartistID\tweight\n2\t51\t3\n2\tabc\t1\n")
    code = run.main(["--dataset", "lastfm", "--data-dir", str(tmp_path), "--out", str(tmp_path / "r")])
    assert code == 2 and "user_artists.dat line 3" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_unknown_flag_is_an_error():
    with pytest.raises(SystemExit) as exit_info:
        run.config_from_args(["--datset", "lastfm"])
    assert exit_info.value.code == 2


@pytest.mark.parametrize("method, epochs", [("bpr", "16"), ("dvr", "5")])
@pytest.mark.slow
def test_killed_run_resumes_to_identical_results(real_data_dir, tmp_path, method, epochs):
    args = SMOKE + ["--data-dir", str(real_data_dir), "--method", method, "--epochs", epochs, "--warm-start", "none"]
    script = [sys.executable, str(REPO / "experiments" / "run.py")]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    reference = tmp_path / "reference"
    subprocess.run(script + args + ["--out", str(reference)], check=True, env=env, capture_output=True)

    killed = tmp_path / "killed"
    process = subprocess.Popen(script + args + ["--out", str(killed)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 120
    latest = killed / "checkpoints" / "latest"

    def finalized():  # orbax renames "<step>.orbax-checkpoint-tmp-*" to "<step>" when complete
        return latest.exists() and any(p.name.isdigit() for p in latest.iterdir())

    while not finalized() and time.time() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "results.json").exists(), "the run finished before it could be killed"
    resumed = subprocess.run(
        script + args + ["--out", str(killed), "--resume"], env=env, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    got, expected = _results(killed), _results(reference)
    assert got["valid"] == expected["valid"] and got["test"] == expected["test"]
    assert got["best_epoch"] == expected["best_epoch"]

    def without_clock(path):  # wall-clock seconds are the only thing allowed to differ
        return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in path.read_text().splitlines()]

    for name in ("metrics.jsonl", "train_log.jsonl"):
        assert without_clock(killed / name) == without_clock(reference / name), name
    if method == "dvr":
        assert (killed / "data_values.tsv").read_text() == (reference / "data_values.tsv").read_text()


def test_corrupted_checkpoint_is_a_clear_error_not_a_fresh_start(real_data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    args = SMOKE + ["--data-dir", str(real_data_dir), "--method", "bpr", "--out", str(out)]
    assert run.main(args) == 0
    for path in (out / "checkpoints" / "latest").rglob("*"):
        if path.is_file() and path.stat().st_size > 0 and "state" in path.parts:
            path.write_bytes(b"\0garbage")
    capsys.readouterr()
    assert run.main(args + ["--resume"]) == 2
    err = capsys.readouterr().err
    assert "unreadable" in err and len(err.strip().splitlines()) == 1


def test_non_finite_loss_stops_with_the_step_and_keeps_the_last_checkpoint(real_data_dir, tmp_path, monkeypatch):
    from dvr_jax import loop
    from dvr_jax.config import RunConfig

    real_build = loop.build

    def build_with_nan_after_step_30(cfg, dataset=None):
        components = real_build(cfg, dataset)
        step = components.method.step

        def poisoned(state, key, pair_index, data):
            new_state, metrics = step(state, key, pair_index, data)
            return new_state, {**metrics, "finite": metrics["finite"] & (state.step < 30)}

        method = components.method._replace(step=poisoned)
        return loop.Components(components.dataset, components.backbone, method, components.data, components.valid)

    monkeypatch.setattr(loop, "build", build_with_nan_after_step_30)
    out = tmp_path / "run"
    cfg = RunConfig(dataset="lastfm", data_dir=str(real_data_dir), method="bpr", epochs=4, batch_size=2048,
                    checkpoint_every=1, valid_interval=1, out=str(out), progress=False)  # fmt: skip
    with pytest.raises(loop.TrainingDiverged, match=r"step 30 \(epoch 2\).*epoch 1\)"):
        loop.train_and_evaluate(cfg)
    assert [p.name for p in (out / "checkpoints" / "latest").iterdir()] == ["1"]
    assert not (out / "results.json").exists()


@pytest.mark.parametrize("backbone", ["mf", "neumf", "mgcf", "lightgcn"])
def test_the_cli_builds_every_backbone(real_data_dir, backbone):
    from dvr_jax import loop
    from dvr_jax.config import RunConfig

    cfg = RunConfig(dataset="ml-100k", data_dir=str(real_data_dir), method="bpr", backbone=backbone,
                    embedding_dim=16, progress=False)  # fmt: skip
    components = loop.build(cfg)
    params = components.method.init(jax.random.key(0)).params
    feats = components.backbone.pair_features(params, *(jnp.zeros((2,), jnp.int32),) * 3)
    assert feats.shape == (2, 96 if backbone == "neumf" else 48)
