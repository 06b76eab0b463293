"""One run over two processes (two simulated CPU devices each, JAX's runtime on 127.0.0.1) equals the run in one.

Each process is a subprocess under a hard deadline, so a hang (a collective that one process never
reaches) fails the test instead of blocking it.
"""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys
import time

import pytest

from experiments import run
from tests.conftest import REPO

DRIVER = REPO / "tests" / "multiprocess" / "run_process.py"
DEADLINE_SECONDS = 300  # a run takes 20-60 s on the 2-core machine
TOLERANCE = 1e-5
# What process 0 leaves in the run directory besides checkpoints/ (DVR, --no-plots).
RUN_FILES = {"config.json", "metrics.jsonl", "train_log.jsonl", "results.json", "data_values.tsv", "pair_values.npz",
             "pair_values.tsv"}  # fmt: skip


def _flags(data_dir: pathlib.Path, out: pathlib.Path) -> list[str]:
    return ["--dataset", "lastfm", "--data-dir", str(data_dir), "--reward", "recall", "--epochs", "2",
            "--batch-size", "8192", "--valid-interval", "1", "--checkpoint-every", "1", "--warm-start", "none",
            "--out", str(out), "--no-progress", "--no-plots"]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch(
    flags: list[str], tmp_path: pathlib.Path, *, interrupt_at: int | None = None, own: tuple[list[str], ...] = ([], [])
) -> list[dict]:
    """Runs `flags` (and each process's `own` flags) as two processes of one run; returns each one's report
    (see run_process.py) with its output."""
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    address = f"127.0.0.1:{_free_port()}"
    extra = [] if interrupt_at is None else ["--interrupt-at", str(interrupt_at)]
    procs = []
    for index in range(2):
        report = tmp_path / f"process-{index}.json"
        argv = [sys.executable, str(DRIVER), str(report), *extra, "--", *flags, *own[index], "--coordinator",
                address, "--num-processes", "2", "--process-id", str(index)]  # fmt: skip
        procs.append((subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True), report))  # fmt: skip
    deadline, reports = time.monotonic() + DEADLINE_SECONDS, []
    try:
        for proc, report in procs:
            stdout, stderr = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            assert proc.returncode == 0, stderr[-3000:]
            reports.append({**json.loads(report.read_text()), "stdout": stdout, "stderr": stderr})
    except subprocess.TimeoutExpired:
        pytest.fail(f"a run over two processes did not finish in {DEADLINE_SECONDS} s (a hang)")
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return reports


def _test_metrics(out: pathlib.Path) -> dict[str, float]:
    return json.loads((out / "results.json").read_text())["test"]


def _assert_close(got: dict[str, float], want: dict[str, float]) -> None:
    for key in ("recall@20", "ndcg@20"):
        assert abs(got[key] - want[key]) <= TOLERANCE, (key, got[key], want[key])


@pytest.fixture(scope="module")
def one_process_run(real_data_dir, tmp_path_factory) -> pathlib.Path:
    """The 2-epoch DVR-Recall run in one process on one device: the reference of the runs over two."""
    one = tmp_path_factory.mktemp("one-process") / "run"
    assert run.main(_flags(real_data_dir, one)) == 0
    return one


@pytest.mark.slow
@pytest.mark.parametrize("shards", [2, 4], ids=["group-in-each-process", "group-across-processes"])
def test_tables_split_over_two_processes_equal_one_process(real_data_dir, one_process_run, tmp_path, shards):
    """--model-shards on 2 processes x 2 devices. 2: each model group of the 2 x 2 mesh lies in one process;
    4: one model group of four devices, two in each process. Process 0 alone writes the run directory."""
    split = tmp_path / "split"
    main, other = launch([*_flags(real_data_dir, split), "--model-shards", str(shards)], tmp_path)
    assert main["status"] == other["status"] == 0
    _assert_close(_test_metrics(split), _test_metrics(one_process_run))
    saved = json.loads((split / "config.json").read_text())
    assert saved["mesh"] == {"devices": 4, "model_shards": shards, "processes": 2} and saved["num_processes"] == 2
    # Process 0 wrote the run directory and printed the summary; process 1 changed nothing there and printed nothing.
    assert RUN_FILES <= set(main["writes"]) and "run.lock" in main["writes"]
    assert other["writes"] == [], other["writes"]
    assert {p.name for p in split.iterdir()} == RUN_FILES | {"checkpoints"}
    assert "recall@20" in main["stdout"] and "epoch 2:" in main["stderr"]
    assert "recall@20" not in other["stdout"] and "epoch" not in other["stderr"]


@pytest.mark.slow
def test_a_two_process_run_resumes_in_one_process_to_the_one_process_results(real_data_dir, one_process_run,
                                                                              tmp_path):  # fmt: skip
    """Plain data parallelism over 2 processes x 2 devices: stopped by Ctrl-C in epoch 2, its checkpoint of
    epoch 1 (written by both processes) resumes in one process on one device to the one-process run's results."""
    moved = tmp_path / "moved"
    main, other = launch(_flags(real_data_dir, moved), tmp_path, interrupt_at=1)
    assert [main["status"], other["status"]] == [130, 130]
    assert json.loads((moved / "config.json").read_text())["mesh"] == {"devices": 4, "processes": 2}
    assert "epoch 1:" in main["stderr"] and other["writes"] == [], other["writes"]
    assert run.main([*_flags(real_data_dir, moved), "--resume"]) == 0  # 1 process, 1 device
    _assert_close(_test_metrics(moved), _test_metrics(one_process_run))


def test_what_process_0_refuses_stops_every_process(real_data_dir, tmp_path):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "results.json").write_text("{}")  # a finished run: refused without --overwrite or --resume
    main, other = launch(_flags(real_data_dir, taken), tmp_path)
    assert main["status"] == other["status"] == 2
    assert "already holds a run" in main["stderr"] and "process 0 failed" in other["stderr"]
    assert other["writes"] == [] and sorted(p.name for p in taken.iterdir()) == ["results.json"]


def test_processes_with_other_flags_stop_before_anything_is_written(real_data_dir, tmp_path):
    out = tmp_path / "r"
    reports = launch(_flags(real_data_dir, out), tmp_path, own=([], ["--seed", "1"]))
    assert [report["status"] for report in reports] == [2, 2]
    assert all("differ in their flags" in report["stderr"] for report in reports) and not out.exists()


def test_distributed_auto_outside_a_cluster_is_a_one_line_error(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "OMPI_", "JAX_COORDINATOR"))}
    argv = [sys.executable, "experiments/run.py", "--distributed", "auto", "--out", str(tmp_path / "r")]
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and not (tmp_path / "r").exists()
    message = done.stderr.strip()  # JAX's own reason follows, e.g. "coordinator_address should be defined."
    assert message.startswith("error: cannot start JAX's distributed runtime: ") and "\n" not in message, message
