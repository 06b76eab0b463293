"""Runs on 8 simulated CPU devices equal the 1-device runs; a checkpoint from 8 devices resumes on 2.

Also: the full-ranking evaluation with its users split over 2 and 8 devices equals 1 device.

Run as a script in a fresh process (the device count is fixed when JAX starts):
`XLA_FLAGS=--xla_force_host_platform_device_count=8 python tests/multidevice/check_runs.py DATA_DIR OUT`.
Prints one JSON line with what it compared; exits non-zero on a mismatch.
"""

from __future__ import annotations

import json
import pathlib
import sys

import jax
from jax.sharding import NamedSharding, PartitionSpec

from dvr_jax import loop, sharding
from dvr_jax.backbones import make_backbone
from dvr_jax.data import load_dataset
from dvr_jax.evaluation import evaluate, make_eval_arrays
from experiments import run

TOLERANCE = 1e-5


def _args(data_dir: str, out: pathlib.Path, method: str, devices: int, epochs: int = 2) -> list[str]:
    return ["--dataset", "ml-100k", "--data-dir", data_dir, "--method", method, "--reward", "recall",
            "--epochs", str(epochs), "--batch-size", "2048", "--valid-interval", "1", "--checkpoint-every", "1",
            "--warm-start", "none", "--devices", str(devices), "--out", str(out), "--no-progress",
            "--no-plots"]  # fmt: skip


def run_interrupted(argv: list[str], epoch: int) -> int:
    """`experiments/run.py argv` stopped by Ctrl-C as epoch `epoch` starts; its exit status (130)."""
    real_train_epoch = loop._train_epoch

    def interrupted(components, step_fn, state, keys, at, *rest):
        if at == epoch:
            raise KeyboardInterrupt
        return real_train_epoch(components, step_fn, state, keys, at, *rest)

    loop._train_epoch = interrupted
    try:
        return run.main(argv)
    finally:
        loop._train_epoch = real_train_epoch


def _results(out: pathlib.Path) -> dict:
    return json.loads((out / "results.json").read_text())


def _close(a: dict, b: dict, what: str, splits: tuple[str, ...] = ("valid", "test")) -> None:
    for split in splits:
        for key in ("recall@20", "ndcg@20"):
            if abs(a[split][key] - b[split][key]) > TOLERANCE:
                sys.exit(f"{what}: {split} {key} {a[split][key]} != {b[split][key]}")


def check_sharded_evaluation(data_dir: str) -> None:
    """Evaluation with the users' chunks split over 2 and 8 devices equals the 1-device evaluation."""
    dataset = load_dataset("ml-100k", data_dir)
    backbone = make_backbone("mf", dataset.n_users, dataset.n_items, dim=16)
    params = backbone.init(jax.random.key(0))
    arrays = make_eval_arrays(dataset, "valid", chunk_size=50)  # 18 chunks: padded to 24 on 8 devices
    one = evaluate(backbone, params, None, arrays, ks=(10, 20), item_categories=dataset.item_categories)
    for n in (2, 8):
        mesh = sharding.make_data_mesh(n)
        replicated = jax.device_put(params, NamedSharding(mesh, PartitionSpec()))
        got = evaluate(backbone, replicated, None, arrays, ks=(10, 20), item_categories=dataset.item_categories,
                       mesh=mesh)  # fmt: skip
        if sorted(got) != sorted(one) or max(abs(got[k] - one[k]) for k in one) > 1e-6:
            sys.exit(f"sharded evaluation on {n} devices differs: {got} vs {one}")


def main(data_dir: str, out: str) -> None:
    root = pathlib.Path(out)
    assert jax.local_device_count() == 8, jax.devices()
    check_sharded_evaluation(data_dir)
    one, eight = root / "bpr-1", root / "bpr-8"
    assert run.main(_args(data_dir, one, "bpr", 1, epochs=1)) == 0
    assert run.main(_args(data_dir, eight, "bpr", 8, epochs=1)) == 0
    _close(_results(one), _results(eight), "bpr on 8 devices")
    mesh = json.loads((eight / "config.json").read_text())["mesh"]
    assert mesh == {"devices": 8, "processes": 1}, mesh
    # DVR: one epoch on 8 devices, stopped in the second, resumed on 2, equals the 1-device run.
    reference, moved = root / "dvr-1", root / "dvr-8-then-2"
    assert run.main(_args(data_dir, reference, "dvr", 1, epochs=2)) == 0
    assert run_interrupted(_args(data_dir, moved, "dvr", 8, epochs=2), epoch=1) == 130
    assert json.loads((moved / "config.json").read_text())["mesh"]["devices"] == 8
    assert run.main([*_args(data_dir, moved, "dvr", 2, epochs=2), "--resume"]) == 0
    _close(_results(reference), _results(moved), "dvr on 8 devices, resumed on 2")
    checks = [json.loads(line) for line in (moved / "metrics.jsonl").read_text().splitlines()]
    expected = [json.loads(line) for line in (reference / "metrics.jsonl").read_text().splitlines()]
    for got, want in zip(checks, expected, strict=True):  # every validation check, on 8 and then 2 devices
        _close(got, want, f"validation check at epoch {want['epoch']}", splits=("valid",))
    print(json.dumps({"bpr": _results(eight)["test"]["recall@20"], "dvr": _results(moved)["test"]["recall@20"]}))


if __name__ == "__main__":
    main(*sys.argv[1:])
