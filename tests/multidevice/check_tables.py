"""Embedding tables split over a "model" axis on 8 simulated CPU devices equal the 1-device run.

On LastFM (1,797 users, 1,507 items: both tables padded on 4 and 8 model shards):
  * BPR-MF steps on meshes 2 x 4 and 1 x 8: losses and the real rows of the params equal the
    1-device steps to 1e-6, the pad rows stay zero, the tables and their Adam moments are
    split over "model", and the step compiles once;
  * the full-ranking evaluation with the tables split: the same metrics (1e-6) and the same
    top-K item lists as one device, for the trained tables and for tables full of exact ties;
  * the CLI: `--model-shards 4 --devices 8` equals `--devices 1` (metrics, exported lists),
    and a run interrupted after its first epoch resumes from its sharded checkpoint to the
    same results; PRIS, TCE and RCE with `--model-shards 4` equal their 1-device runs;
  * DVR (recall reward, leave-one-out estimator) on mesh 2 x 4: the library step's losses,
    rewards, backbone and valuator params and per-pair values equal the 1-device steps to
    1e-6, the backbone tables and Adam moments stay split, and the compiled step holds no
    array of a whole table's rows; `--method dvr --model-shards 4 --devices 8` equals
    `--devices 1` (losses and metrics to 1e-5), from scratch and warm-started from the
    unpadded 1-device BPR run.

Run as a script in a fresh process (the device count is fixed when JAX starts):
`XLA_FLAGS=--xla_force_host_platform_device_count=8 python tests/multidevice/check_tables.py DATA_DIR OUT`.
Prints one JSON line with what it compared; exits non-zero on a mismatch.
"""

from __future__ import annotations

import json
import pathlib
import re
import sys

import jax
import numpy as np
from check_runs import _results, run_interrupted  # this folder, the script's first sys.path entry
from jax.sharding import PartitionSpec

from dvr_jax import dvr, rewards, sampler, sharding, train
from dvr_jax.backbones import make_backbone
from dvr_jax.data import load_dataset
from dvr_jax.evaluation import evaluate, make_eval_arrays, topk_lists
from dvr_jax.evaluation.ranking import pad_chunks
from dvr_jax.methods import make_dvr_method
from dvr_jax.valuator import make_valuator
from experiments import run

MESHES = ((2, 4), (1, 8))
TOLERANCE = 1e-6
KS = (10, 20)


def _fail(message: str) -> None:
    sys.exit(message)


def check_steps(dataset, n_steps: int = 3) -> dict:
    """BPR-MF steps with the tables split over "model" equal the 1-device steps; returns the trained params."""
    arrays = sampler.make_train_arrays(dataset.train, dataset.n_users, dataset.n_items)
    data = train.StepData(arrays, None)
    key = jax.random.key(0)
    batches = sampler.epoch_batches(key, arrays.n_pairs, 2048)
    plain = make_backbone("mf", dataset.n_users, dataset.n_items, dim=64)
    state = train.create_backbone_state(key, plain)
    step = jax.jit(train.make_bpr_step(plain))
    losses = []
    for i in range(n_steps):
        state, metrics = step(state, key, batches[i], data)
        losses.append(float(metrics["loss"]))
    trained = {"one": state.params}
    for n_data, n_model in MESHES:
        mesh = sharding.make_mesh(n_data, n_model)
        backbone = make_backbone("mf", dataset.n_users, dataset.n_items, dim=64, row_multiple=n_model)
        init = lambda k, b=backbone: train.create_backbone_state(k, b)  # noqa: E731
        sharded = sharding.init_sharded(init, key, mesh)
        for leaf in (sharded.params["item"], sharded.opt_state[1][0].mu["user"], sharded.opt_state[1][0].nu["item"]):
            if leaf.sharding.spec != PartitionSpec("model", None):
                _fail(f"mesh {n_data}x{n_model}: a table is not split over model: {leaf.sharding}")
        shardings = sharding.table_shardings(mesh, sharded)
        sharded_step = sharding.shard_step(train.make_bpr_step(backbone), mesh, state_sharding=shardings)
        placed = jax.device_put(data, jax.sharding.NamedSharding(mesh, PartitionSpec()))
        for i in range(n_steps):
            sharded, metrics = sharded_step(sharded, key, batches[i], placed)
            if abs(float(metrics["loss"]) - losses[i]) > TOLERANCE:
                _fail(f"mesh {n_data}x{n_model}: loss of step {i} {float(metrics['loss'])} != {losses[i]}")
        if sharded_step._cache_size() != 1:
            _fail(f"mesh {n_data}x{n_model}: the step compiled {sharded_step._cache_size()} times")
        if sharded.params["user"].sharding.spec != PartitionSpec("model", None):
            _fail(f"mesh {n_data}x{n_model}: the step's output tables are not split over model")
        for name, n_rows in (("user", dataset.n_users), ("item", dataset.n_items)):
            got = np.asarray(sharded.params[name])
            gap = np.abs(got[:n_rows] - np.asarray(state.params[name])).max()
            if gap > TOLERANCE or np.any(got[n_rows:]):
                _fail(f"mesh {n_data}x{n_model}: {name} table differs by {gap} or its pad rows moved")
        trained[(n_data, n_model)] = (backbone, mesh, sharded.params)
    return trained


def _same_evaluation(dataset, plain, params, backbone, mesh, sharded_params, what: str) -> None:
    arrays = make_eval_arrays(dataset, "test", chunk_size=100)  # 18 chunks: padded to 20 on 2 data shards
    want = evaluate(plain, params, None, arrays, ks=KS, item_categories=dataset.item_categories)
    got = evaluate(backbone, sharded_params, None, arrays, ks=KS, item_categories=dataset.item_categories, mesh=mesh)
    if sorted(got) != sorted(want) or max(abs(got[k] - want[k]) for k in want) > TOLERANCE:
        _fail(f"{what}: metrics differ: {got} vs {want}")
    users, items, scores = topk_lists(plain, params, None, arrays, max(KS))
    got_users, got_items, got_scores = topk_lists(backbone, sharded_params, None, arrays, max(KS), mesh=mesh)
    if not (np.array_equal(users, got_users) and np.array_equal(items, got_items)):
        _fail(f"{what}: top-K lists differ in {int(np.sum(items != got_items))} places")
    if np.abs(scores - got_scores).max() > TOLERANCE:
        _fail(f"{what}: top-K scores differ by {np.abs(scores - got_scores).max()}")


def check_evaluation(dataset, trained: dict) -> None:
    """Sharded evaluation = 1 device, for the trained tables and for tables whose scores tie everywhere."""
    plain = make_backbone("mf", dataset.n_users, dataset.n_items, dim=64)
    rng = np.random.default_rng(0)
    tied = {
        "user": rng.integers(-1, 2, (dataset.n_users, 4)).astype(np.float32),  # integer scores in [-4, 4]:
        "item": rng.integers(-1, 2, (dataset.n_items, 4)).astype(np.float32),
    }  # exact, and tied everywhere
    small = make_backbone("mf", dataset.n_users, dataset.n_items, dim=4)
    for (n_data, n_model), (backbone, mesh, params) in ((k, v) for k, v in trained.items() if k != "one"):
        _same_evaluation(dataset, plain, trained["one"], backbone, mesh, params, f"trained, mesh {n_data}x{n_model}")
        padded = make_backbone("mf", dataset.n_users, dataset.n_items, dim=4, row_multiple=n_model)
        rows = {name: np.pad(table, ((0, -len(table) % n_model), (0, 0))) for name, table in tied.items()}
        placed = jax.device_put(rows, sharding.table_shardings(mesh, rows))
        _same_evaluation(dataset, small, tied, padded, mesh, placed, f"tied scores, mesh {n_data}x{n_model}")


def _args(data_dir: str, out: pathlib.Path, devices: int, shards: int) -> list[str]:
    return ["--dataset", "lastfm", "--data-dir", data_dir, "--method", "bpr", "--epochs", "2", "--batch-size", "2048",
            "--valid-interval", "1", "--checkpoint-every", "1", "--devices", str(devices), "--model-shards",
            str(shards), "--out", str(out), "--no-progress", "--no-plots", "--export"]  # fmt: skip


def _close(a: dict, b: dict, what: str, tolerance: float = TOLERANCE) -> None:
    for split in ("valid", "test"):
        gap = max(abs(a[split][key] - b[split][key]) for key in a[split])
        if gap > tolerance:
            _fail(f"{what}: {split} metrics differ by {gap}")


def _lists(out: pathlib.Path) -> list[str]:
    return ["\t".join(line.split("\t")[:3]) for line in (out / "export" / "test_topk.tsv").read_text().splitlines()]


def check_cli(data_dir: str, root: pathlib.Path) -> float:
    """`--model-shards 4 --devices 8` = 1 device; interrupted after epoch 1, it resumes to the same results."""
    one, sharded, resumed = root / "one", root / "model4", root / "model4-resumed"
    assert run.main(_args(data_dir, one, 1, 1)) == 0
    assert run.main(_args(data_dir, sharded, 8, 4)) == 0
    _close(_results(one), _results(sharded), "--model-shards 4 on 8 devices")
    if _lists(one) != _lists(sharded):
        _fail("--model-shards 4 on 8 devices: exported top-K lists differ")
    mesh = json.loads((sharded / "config.json").read_text())["mesh"]
    if mesh != {"devices": 8, "model_shards": 4, "processes": 1}:
        _fail(f"config.json mesh: {mesh}")
    assert run_interrupted(_args(data_dir, resumed, 8, 4), epoch=1) == 130
    assert run.main([*_args(data_dir, resumed, 8, 4), "--resume"]) == 0
    _close(_results(sharded), _results(resumed), "--model-shards 4, resumed")
    for method in ("pris", "tce", "rce"):  # the other methods that take --model-shards
        args = [*_args(data_dir, root / f"{method}-one", 1, 1), "--method", method, "--epochs", "1"]
        assert run.main(args) == 0
        assert run.main([*_args(data_dir, root / f"{method}-model4", 8, 4), "--method", method, "--epochs", "1"]) == 0
        _close(_results(root / f"{method}-one"), _results(root / f"{method}-model4"), f"{method}, --model-shards 4")
    return _results(sharded)["test"]["recall@20"]


def _gap(a, b) -> float:
    """The largest absolute difference between the leaves of two pytrees."""
    return max(float(np.abs(np.asarray(x) - np.asarray(y)).max()) for x, y in zip(*map(jax.tree.leaves, (a, b))))


def check_dvr_steps(dataset, n_steps: int = 3, dim: int = 16, batch: int = 512) -> None:
    """DVR steps (recall reward, loo) with the backbone tables split over "model" (mesh 2 x 4) equal 1 device."""
    arrays = sampler.make_train_arrays(dataset.train, dataset.n_users, dataset.n_items)
    reward_data = rewards.make_reward_data(dataset, "recall", arrays, fraction=0.1, seed=0, chunk_size=64)
    key = jax.random.key(0)
    batches = sampler.epoch_batches(key, arrays.n_pairs, batch)
    valuator = make_valuator("sample", h_dim=8, encoder_hidden=(16,))

    def method(mesh, multiple):
        backbone = make_backbone("mf", dataset.n_users, dataset.n_items, dim=dim, row_multiple=multiple)
        reward_fn = rewards.make_reward_fn(backbone, "recall", k=20, mesh=mesh)
        return make_dvr_method(backbone, valuator, reward_fn, dvr.DVRConfig(reward="recall"), batch_size=batch,
                               n_pairs=arrays.n_pairs, constrain=sharding.table_constraint(mesh))  # fmt: skip

    one = method(None, 1)
    state, step, data = one.init(key), jax.jit(one.step), train.StepData(arrays, None, reward_data)
    want = []
    for i in range(n_steps):
        state, metrics = step(state, key, batches[i], data)
        want.append((float(metrics["loss"]), float(metrics["reward"])))
    mesh = sharding.make_mesh(2, 4)
    split = method(mesh, 4)
    sharded = sharding.init_sharded(split.init, key, mesh)
    sharded_step = sharding.shard_step(split.step, mesh, state_sharding=sharding.table_shardings(mesh, sharded))
    placed = train.StepData(arrays, None, reward_data._replace(eval_arrays=pad_chunks(reward_data.eval_arrays, 2)))
    placed = jax.device_put(placed, jax.sharding.NamedSharding(mesh, PartitionSpec()))
    for i in range(n_steps):
        sharded, metrics = sharded_step(sharded, key, batches[i], placed)
        got = (float(metrics["loss"]), float(metrics["reward"]))
        if max(abs(g - w) for g, w in zip(got, want[i])) > TOLERANCE:
            _fail(f"dvr on mesh 2x4: (loss, reward) of step {i} {got} != {want[i]}")
    if sharded_step._cache_size() != 1:
        _fail(f"dvr on mesh 2x4: the step compiled {sharded_step._cache_size()} times")
    adam = sharded.backbone.opt_state[1][0]
    for leaf in (sharded.backbone.params["user"], sharded.backbone.params["item"], adam.mu["item"], adam.nu["user"]):
        if leaf.sharding.spec != PartitionSpec("model", None):
            _fail(f"dvr on mesh 2x4: a backbone table is not split over model: {leaf.sharding}")
    for name, n_rows in (("user", dataset.n_users), ("item", dataset.n_items)):
        got = np.asarray(sharded.backbone.params[name])
        gap = np.abs(got[:n_rows] - np.asarray(state.backbone.params[name])).max()
        if gap > TOLERANCE or np.any(got[n_rows:]):
            _fail(f"dvr on mesh 2x4: the {name} table differs by {gap} or its pad rows moved")
    for what in ("valuator", "pairs"):  # Adam's normalised steps carry the loss feature's rounding: 1e-6 -> 1e-5
        if _gap(getattr(sharded, what), getattr(state, what)) > 10 * TOLERANCE:
            _fail(f"dvr on mesh 2x4: {what} differ by {_gap(getattr(sharded, what), getattr(state, what))}")
    hlo = sharded_step.lower(sharded, key, batches[0], placed).compile().as_text()
    sizes = {n for rows in (dataset.n_users, dataset.n_items) for n in (rows, sharding.pad_rows(rows, 4))}
    whole = re.findall(rf"f32\[(?:\d+,)?(?:{'|'.join(map(str, sizes))}),{dim}\]", hlo)  # [rows, D], [K, rows, D]
    if whole:
        _fail(f"dvr on mesh 2x4: the compiled step holds whole tables: {sorted(set(whole))}")


def _dvr_args(data_dir: str, out: pathlib.Path, devices: int, shards: int, warm: str = "none") -> list[str]:
    """One epoch of DVR-Recall. `--loss-negatives 1`: with the default 16 the pair losses round differently
    on the mesh, a selection probability at rounding distance from its uniform draw flips a mask bit, and the
    runs part (by 3.8e-5 in validation Recall@20, measured); `check_dvr_steps` checks 16 on the mesh."""
    return ["--dataset", "lastfm", "--data-dir", data_dir, "--method", "dvr", "--reward", "recall", "--epochs", "1",
            "--batch-size", "4096", "--h-dim", "8", "--encoder-hidden", "16", "--loss-negatives", "1",
            "--valid-interval", "1", "--checkpoint-every", "1", "--warm-start", warm, "--devices", str(devices),
            "--model-shards", str(shards), "--out", str(out), "--no-progress", "--no-plots"]  # fmt: skip


def _losses(out: pathlib.Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (out / "train_log.jsonl").read_text().splitlines()]


def check_dvr_cli(data_dir: str, root: pathlib.Path, bpr: pathlib.Path) -> dict:
    """`--method dvr --model-shards 4 --devices 8` = `--devices 1`, from scratch and warm-started from `bpr`."""
    recalls = {}
    for warm in ("none", str(bpr)):
        name = "scratch" if warm == "none" else "warm"
        one, sharded = root / f"dvr-{name}-one", root / f"dvr-{name}-model4"
        assert run.main(_dvr_args(data_dir, one, 1, 1, warm)) == 0
        assert run.main(_dvr_args(data_dir, sharded, 8, 4, warm)) == 0
        _close(_results(one), _results(sharded), f"dvr ({name}), --model-shards 4", tolerance=1e-5)
        gap = max(abs(a - b) for a, b in zip(_losses(one), _losses(sharded), strict=True))
        if gap > 1e-5:
            _fail(f"dvr ({name}), --model-shards 4: training losses differ by {gap}")
        recalls[name] = [_results(out)["test"]["recall@20"] for out in (one, sharded)]
    return recalls


def main(data_dir: str, out: str) -> None:
    assert jax.local_device_count() == 8, jax.devices()
    dataset = load_dataset("lastfm", data_dir)
    trained = check_steps(dataset)
    check_evaluation(dataset, trained)
    recall = check_cli(data_dir, pathlib.Path(out))
    check_dvr_steps(dataset)
    dvr_recalls = check_dvr_cli(data_dir, pathlib.Path(out), pathlib.Path(out) / "one")
    print(json.dumps({"meshes": [list(m) for m in MESHES], "items": dataset.n_items, "recall@20": recall,
                      "dvr_recall@20": dvr_recalls}))  # fmt: skip


if __name__ == "__main__":
    main(*sys.argv[1:])
