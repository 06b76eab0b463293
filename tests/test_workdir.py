"""The run directory: Ctrl-C, resuming without a checkpoint, the lock, unusable --out, names, sizes."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from dvr_jax import checkpoint, loop, rundir
from dvr_jax.config import RunConfig
from experiments import run

SMOKE = ["--dataset", "lastfm", "--config", "smoke", "--no-progress", "--method", "bpr"]  # 48 steps an epoch


def _args(real_data_dir, out, *extra):
    return SMOKE + ["--data-dir", str(real_data_dir), "--out", str(out), *extra]


def _interrupt_at_step(monkeypatch, step: int) -> None:
    """Makes the `step`-th training step (counted from 0 in this process) raise KeyboardInterrupt."""
    real_train_epoch, calls = loop._train_epoch, [0]

    def train_epoch(components, step_fn, *args):
        def interrupted(*step_args):
            calls[0] += 1
            if calls[0] > step:
                raise KeyboardInterrupt
            return step_fn(*step_args)

        return real_train_epoch(components, interrupted, *args)

    monkeypatch.setattr(loop, "_train_epoch", train_epoch)


def _step_dirs(path: pathlib.Path) -> list[str]:
    return sorted(p.name for p in path.iterdir())


def test_ctrl_c_prints_one_line_exits_130_and_the_run_resumes(real_data_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    args = _args(real_data_dir, out, "--valid-interval", "1")  # checkpoints every 2 epochs, of 4
    _interrupt_at_step(monkeypatch, 3 * 48 + 5)  # in epoch 4: `latest` holds epoch 2, the logs reach 3
    assert run.main(args) == 130
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == "interrupted at epoch 3; resume with --resume"
    assert "Traceback" not in err
    assert _step_dirs(out / "checkpoints" / "latest") == ["2"] and not (out / rundir.LOCK_NAME).exists()
    assert len((out / "train_log.jsonl").read_text().splitlines()) == 3 and not (out / "results.json").exists()

    monkeypatch.undo()
    assert run.main(args) == 2  # a finished checkpoint: a plain rerun needs a flag
    assert "--resume" in capsys.readouterr().err
    assert run.main(args + ["--resume"]) == 0
    assert "resumed" in capsys.readouterr().err
    assert [json.loads(line)["epoch"] for line in (out / "train_log.jsonl").read_text().splitlines()] == [1, 2, 3, 4]


def test_ctrl_c_before_the_first_checkpoint_leaves_nothing_behind(real_data_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "new" / "run"
    _interrupt_at_step(monkeypatch, 0)  # the first step: Ctrl-C while it compiles
    assert run.main(_args(real_data_dir, out)) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == "interrupted at epoch 0; resume with --resume"
    assert not (tmp_path / "new").exists()  # this run created it and nothing in it could be resumed

    monkeypatch.undo()
    assert run.main(_args(real_data_dir, out, "--epochs", "2", "--resume")) == 0  # as the message says
    assert "no finished checkpoint" in capsys.readouterr().err and (out / "results.json").exists()


def test_a_folder_without_a_finished_checkpoint_does_not_block_a_rerun(real_data_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    out.mkdir()  # not created by the run, so its leftovers stay: config.json, a partial checkpoint
    _interrupt_at_step(monkeypatch, 10)
    assert run.main(_args(real_data_dir, out, "--epochs", "2")) == 130
    monkeypatch.undo()
    partial = out / "checkpoints" / "latest" / "2.orbax-checkpoint-tmp-1700000000"
    (partial / "state").mkdir(parents=True)
    assert (out / "config.json").exists() and not checkpoint.finished_steps(out / "checkpoints" / "latest")
    capsys.readouterr()

    assert run.main(_args(real_data_dir, out, "--epochs", "3", "--resume")) == 2  # the config check stays
    assert "different config" in capsys.readouterr().err
    saved = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({k: v for k, v in saved.items() if k != "epochs"}))
    assert run.main(_args(real_data_dir, out, "--epochs", "2", "--resume")) == 2  # without it: the default, 2000
    assert "different config than" in capsys.readouterr().err
    (out / "config.json").write_text(json.dumps(saved))
    assert run.main(_args(real_data_dir, out, "--epochs", "2", "--resume")) == 0
    assert "no finished checkpoint" in capsys.readouterr().err
    assert _step_dirs(out / "checkpoints" / "latest") == ["2"]  # the partial one is gone

    (out / "results.json").unlink()
    for path in (out / "checkpoints").iterdir():
        for step in list(path.iterdir()):
            step.rename(path / f"{step.name}.orbax-checkpoint-tmp-1")  # unfinished again
    assert run.main(_args(real_data_dir, out, "--epochs", "2")) == 0
    assert "holds no results and no finished checkpoint; starting over" in capsys.readouterr().err
    assert _step_dirs(out / "checkpoints" / "latest") == ["2"]


def test_a_run_dir_in_use_is_refused(real_data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / rundir.LOCK_NAME).write_text(f"{os.getppid()}\n")  # a live process other than this one
    assert run.main(_args(real_data_dir, out, "--method", "pop")) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {out} is in use by another run (pid {os.getppid()})"
    assert (out / rundir.LOCK_NAME).read_text() == f"{os.getppid()}\n" and _step_dirs(out) == [rundir.LOCK_NAME]


def test_a_stale_lock_is_taken_over_and_every_exit_releases_the_lock(real_data_dir, tmp_path, capsys):
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()  # its pid is now free: the lock of a killed run
    out = tmp_path / "run"
    out.mkdir()
    (out / rundir.LOCK_NAME).write_text(f"{finished.pid}\n")
    assert run.main(_args(real_data_dir, out, "--method", "pop")) == 0
    assert f"taking over the lock of pid {finished.pid}" in capsys.readouterr().err
    assert (out / "results.json").exists() and not (out / rundir.LOCK_NAME).exists()

    failing = tmp_path / "failing"
    failing.mkdir()
    assert run.main(_args(real_data_dir, failing, "--warm-start", "/nonexistent/run")) == 2
    assert _step_dirs(failing) == []  # no lock, no half-written files


def test_the_lock_is_exclusive_within_one_process(tmp_path):
    lock = rundir.acquire_lock(tmp_path)
    with pytest.raises(rundir.RunDirError, match=rf"in use by another run \(pid {os.getpid()}\)"):
        rundir.acquire_lock(tmp_path)
    rundir.release_lock(lock)
    rundir.release_lock(rundir.acquire_lock(tmp_path))
    assert _step_dirs(tmp_path) == []


def test_a_file_where_the_run_dir_would_go_is_a_one_line_error(real_data_dir, tmp_path, capsys):
    (tmp_path / "file").write_text("not a directory")
    for out in (tmp_path / "file" / "run", tmp_path / "file"):
        assert run.main(_args(real_data_dir, out, "--method", "pop")) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: cannot create run directory {out}: ") and len(err.splitlines()) == 1
    assert (tmp_path / "file").read_text() == "not a directory"


def test_a_refused_mkdir_is_a_one_line_error(real_data_dir, tmp_path, monkeypatch, capsys):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(pathlib.Path, "mkdir", refuse)  # what chmod 0o500 does, also when running as root
    assert run.main(_args(real_data_dir, tmp_path / "run", "--method", "pop")) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: cannot create run directory {tmp_path / 'run'}: Permission denied"
    assert not (tmp_path / "run").exists()

    monkeypatch.undo()
    real_open = os.open

    def refuse_the_lock(path, *args, **kwargs):
        return refuse() if str(path).endswith(rundir.LOCK_NAME) else real_open(path, *args, **kwargs)

    monkeypatch.setattr(rundir.os, "open", refuse_the_lock)  # an existing folder without write permission
    assert run.main(_args(real_data_dir, tmp_path, "--method", "pop")) == 2
    assert capsys.readouterr().err.strip() == f"error: cannot write to {tmp_path}: Permission denied"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a 0o500 directory")
def test_an_unwritable_place_is_a_one_line_error(real_data_dir, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        for out, message in ((locked / "run", "cannot create run directory"), (locked, "cannot write to")):
            assert run.main(_args(real_data_dir, out, "--method", "pop")) == 2
            err = capsys.readouterr().err.strip()
            assert message in err and "Permission denied" in err and len(err.splitlines()) == 1
    finally:
        locked.chmod(0o700)


def test_dataset_labels_hold_no_path_separators():
    assert rundir.dataset_label("lastfm") == "lastfm" and rundir.dataset_label("ml-100k") == "ml-100k"
    assert rundir.dataset_label("/tmp/x/ratings.csv") == "ratings"
    assert rundir.dataset_label("../d/my plays:v2.TSV") == "my_plays_v2"
    cfg = RunConfig(dataset="/tmp/x/ratings.csv", method="bpr")
    assert rundir.default_run_dir(cfg) == pathlib.Path("runs/ratings-mf-bpr-recall-s0")


@pytest.mark.slow
def test_a_csv_dataset_runs_under_runs_not_beside_the_file(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    data.mkdir()
    pairs = [(u, i) for u in range(40) for i in range(30) if rng.random() < 0.4]
    (data / "ratings.csv").write_text("".join(f"u{u},i{i}\n" for u, i in pairs))
    monkeypatch.setenv("DVR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    argv = ["--dataset", str(data / "ratings.csv"), "--kcore", "0", "--epochs", "1", "--batch-size", "64",
            "--valid-interval", "1", "--no-progress"]  # fmt: skip
    assert run.main(argv) == 0  # DVR, warm-started from a BPR run it trains first
    assert _step_dirs(data) == ["ratings.csv"]
    assert (tmp_path / "runs" / "ratings-mf-dvr-recall-s0" / "results.json").exists()
    [pretrained] = (tmp_path / "runs" / "pretrained").iterdir()
    assert pretrained.name.startswith("ratings-mf-s0-") and (pretrained / "results.json").exists()


@pytest.mark.slow
def test_a_dvr_run_keeps_one_checkpoint_each_and_reports_their_size(real_data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    cfg = RunConfig(dataset="lastfm", data_dir=str(real_data_dir), method="dvr", epochs=3, batch_size=2048,
                    valid_interval=1, checkpoint_every=1, patience=None, warm_start="none", out=str(out),
                    progress=False)  # fmt: skip
    results = loop.train_and_evaluate(cfg)
    assert _step_dirs(out / "checkpoints" / "latest") == ["3"]
    assert _step_dirs(out / "checkpoints" / "best") == [str(results["best_epoch"])]
    sizes = {name: checkpoint.disk_bytes(out / "checkpoints" / name) for name in ("latest", "best")}
    assert results["checkpoint_bytes"] == sum(sizes.values()) == checkpoint.disk_bytes(out / "checkpoints")
    assert json.loads((out / "results.json").read_text())["checkpoint_bytes"] == results["checkpoint_bytes"]
    assert f"checkpoints: {results['checkpoint_bytes'] / 1e6:.1f} MB" in capsys.readouterr().err
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    assert sizes["latest"] < 8e6 and total < 20e6  # lastfm: ~4 MB a checkpoint, ~14 MB the folder
    # best/ holds only the backbone (MF: 2 x 3,304 x 64 float32, ~0.85 MB), not the Adam moments, the
    # valuator and the per-pair values that a resume needs
    assert sizes["best"] < 1.2e6 < sizes["latest"]


def test_a_manager_removes_unfinished_saves_and_keeps_the_step_saved_last(tmp_path):
    directory = tmp_path / "latest"
    (directory / "5.orbax-checkpoint-tmp-1700000000" / "state").mkdir(parents=True)
    manager = checkpoint.open_manager(directory)
    state = {"w": jnp.ones((3,), jnp.float32)}
    for step in (4, 2):  # a replayed run may save a lower step than one on disk
        checkpoint.save(manager, step, state, {"epoch": step})
    assert _step_dirs(directory) == ["2"] and checkpoint.finished_steps(directory) == [2]
    assert checkpoint.finished_steps(tmp_path / "missing") == [] and not (tmp_path / "missing").exists()


def test_best_checkpoint_of_an_older_run_with_the_whole_state_still_restores(tmp_path):
    from dvr_jax.state import LearnerState, make_adam

    state = LearnerState.create({"w": jnp.arange(3.0)}, make_adam(1e-3, 0.0))
    old = checkpoint.open_manager(tmp_path / "old")
    checkpoint.save(old, 5, state, {"epoch": 5})  # how best/ was written before
    new = checkpoint.open_manager(tmp_path / "new")
    checkpoint.save_backbone(new, 5, state.params, {"epoch": 5})
    for manager in (old, new):
        params = checkpoint.restore_backbone(manager, state, lambda s: s.params)
        assert jnp.array_equal(params["w"], jnp.arange(3.0))


def test_only_an_interrupted_run_of_the_same_config_and_data_is_continued(tmp_path):
    run_dir = tmp_path / "run"
    cfg = RunConfig(dataset="lastfm", method="bpr", out=str(run_dir), overwrite=True)
    saved = {**cfg.to_dict(), "dataset_summary": {"users": 3, "source_hash": "abc"}}
    assert not rundir.continues_interrupted(cfg, "abc").resume  # nothing there
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps(saved))
    assert not rundir.continues_interrupted(cfg, "abc").resume  # no finished checkpoint
    checkpoint.save(checkpoint.open_manager(run_dir / "checkpoints" / "latest"), 2, {"w": jnp.ones(3)}, {"epoch": 2})
    resumed = rundir.continues_interrupted(cfg, "abc")
    assert resumed.resume and resumed.replace(resume=False) == cfg
    assert not rundir.continues_interrupted(cfg, "xyz").resume  # other data
    assert not rundir.continues_interrupted(cfg.replace(learning_rate=0.01), "abc").resume  # another config
    assert rundir.continues_interrupted(cfg.replace(progress=False), "abc").resume  # how to run never counts
    del saved["dataset_summary"]["source_hash"]  # written before the hash was recorded: data unknown
    (run_dir / "config.json").write_text(json.dumps(saved))
    assert not rundir.continues_interrupted(cfg, "abc").resume
    (run_dir / "config.json").write_text("{")
    assert not rundir.continues_interrupted(cfg, "abc").resume
    (run_dir / "config.json").write_text(json.dumps({**saved, "dataset_summary": {"source_hash": "abc"}}))
    (run_dir / "results.json").write_text("{}")
    assert not rundir.continues_interrupted(cfg, "abc").resume  # finished: the caller reuses it
