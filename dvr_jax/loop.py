"""The host loop: build components, train with validation early stopping, checkpoint, report.

This is the only place with I/O, wall-clock timing and device-to-host syncs (once per epoch
for the divergence guard and at the validation cadence). The test split is read exactly
once, after training, at the validation-selected checkpoint.

A run over several processes (`dvr_jax.distributed`) runs this loop in every process: all of
them train, evaluate and save checkpoints together; process 0 alone claims, reads and writes
the run directory (logs, `config.json`, `results.json`, exports, plots) and prints.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import sys
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from dvr_jax import checkpoint, distributed, export, plots, registry, rundir, sampler, sharding, warm_start
from dvr_jax.backbones import Backbone, make_backbone
from dvr_jax.builders import run_valuator  # noqa: F401  (re-exported: the valuator of a run's config)
from dvr_jax.config import PLACEMENT_FIELDS, ConfigError, RunConfig, config_differences, leaky_ingredients
from dvr_jax.data import DataError, load_dataset
from dvr_jax.data.dataset import Dataset
from dvr_jax.errors import RunInterrupted, TrainingDiverged
from dvr_jax.evaluation.ranking import EvalArrays, evaluate, make_eval_arrays, topk_lists
from dvr_jax.methods import Method
from dvr_jax.progress import EvaluationProgress, TrainingProgress
from dvr_jax.step import StepData


@dataclasses.dataclass
class FitProgress:
    """Where the epoch loop stands; saved as the JSON meta of every `latest` checkpoint.

    Attributes:
      epoch: epochs completed.
      best_value: best validation value of `select_metric` so far (-inf before the first check).
      best_epoch: the epoch of `best_value` (-1 before the first check).
      bad_checks: validation checks since the last improvement (early stopping).
      train_seconds: wall time inside training epochs, over every session of the run.
    """

    epoch: int = 0
    best_value: float = -np.inf
    best_epoch: int = -1
    bad_checks: int = 0
    train_seconds: float = 0.0

    def load(self, meta: dict[str, Any]) -> None:
        """Takes the values saved with a checkpoint (`dataclasses.asdict` of one)."""
        for field in dataclasses.fields(self):
            setattr(self, field.name, type(field.default)(meta[field.name]))


@dataclasses.dataclass(frozen=True)
class Components:
    """Everything a run trains and evaluates with (built once from the config)."""

    dataset: Dataset
    backbone: Backbone
    method: Method
    data: StepData
    valid: EvalArrays
    warm_start_seconds: float = 0.0  # wall time of a warm start that trained its BPR run here
    select_test: EvalArrays | None = None  # test arrays for a leaky `select_split="test"` run only
    mesh: Mesh | None = None  # the mesh of a run on several devices (data, or data x model); None: one device


def build(cfg: RunConfig, dataset: Dataset | None = None) -> Components:
    """Loads the dataset (unless given) and builds backbone, method and device arrays.

    Three stages, in this order: everything that can be checked against the data (batch
    size, reward, categories, validation pairs) is checked first, so bad input fails
    before anything is trained or written; then the warm start (`warm_start`), the one
    stage that may train (a BPR run) and write (its own run directory); then the method.
    Only the training and validation splits reach the method and its data: the test split
    is read by `train_and_evaluate` after training. The exceptions are the leaky protocols
    (`config.leaky_ingredients`): the method's entry gets the test pairs when its `leaks` says
    so, and `select_split="test"` builds the test arrays for the selection.
    """
    if dataset is None:
        dataset = load_dataset(cfg.dataset, cfg.data_dir, kcore=cfg.kcore, split_seed=cfg.split_seed)
    try:
        return _build(cfg, dataset)
    except ValueError as err:  # bad combinations of data and options: a one-line CLI error
        if isinstance(err, (ConfigError, DataError)):
            raise
        raise ConfigError(str(err)) from err


def _build(cfg: RunConfig, full_dataset: Dataset) -> Components:
    """The stages of `build`; the method's registry entry supplies everything method-specific."""
    entry = registry.get_method(cfg.method)
    # Methods and rewards get a view without the test split (they cannot read it).
    dataset = dataclasses.replace(full_dataset, test=np.zeros((0, 2), np.int32))
    train_arrays = sampler.make_train_arrays(dataset.train, dataset.n_users, dataset.n_items)
    valid = make_eval_arrays(dataset, "valid", chunk_size=cfg.eval_chunk)
    if entry.make_backbone is not None:
        backbone = entry.make_backbone(cfg, dataset)
    else:
        extra = {"row_multiple": cfg.model_shards} if cfg.model_shards > 1 else {}  # tables split over "model"
        extra |= {"weight_decay": cfg.weight_decay} if cfg.weight_decay is not None else {}
        backbone = make_backbone(cfg.backbone, dataset.n_users, dataset.n_items, dim=cfg.embedding_dim, **extra)
    if entry.trains and train_arrays.n_pairs < cfg.batch_size:
        raise ConfigError(f"batch size {cfg.batch_size} exceeds the {train_arrays.n_pairs} training pairs")
    mesh = data_mesh(cfg) if entry.trains else None
    leaks = entry.leaks is not None and bool(entry.leaks(cfg))  # a leaky protocol: the entry gets the test pairs
    ctx = registry.BuildContext(cfg, dataset, train_arrays, backbone, backbone.build_graph(dataset.train),
                                test=full_dataset.test if leaks else None, mesh=mesh)  # fmt: skip
    ctx = ctx._replace(prepared=None if entry.prepare is None else entry.prepare(ctx))  # data checks first
    warm_seconds = 0.0
    if entry.trains:
        init_params, warm_seconds = warm_start.warm_start(
            cfg, backbone, full_dataset, train=train_and_evaluate, mesh=mesh
        )  # may train and write
        ctx = ctx._replace(init_params=init_params)
    built = entry.build(ctx)
    data = StepData(train_arrays, ctx.graph, built.aux)
    leaky_select = cfg.select_split == "test"
    select_test = make_eval_arrays(full_dataset, "test", chunk_size=cfg.eval_chunk) if leaky_select else None
    return Components(full_dataset, built.backbone, built.method, data, valid, warm_seconds, select_test, mesh)


def data_mesh(cfg: RunConfig) -> Mesh | None:
    """The mesh over `cfg.devices` local devices (default all); None for one device.

    With `cfg.model_shards` M > 1 it is the `data × model` mesh (`sharding.make_mesh`) of
    N / M data shards and M model shards, else the 1-D data mesh of N devices.

    Over several processes the mesh spans every device of every process (`jax.devices()`).

    Raises:
      ConfigError: more devices than there are, fewer than all of them over several processes, a
        device count that does not divide by M, or a batch size that does not divide over the data
        shards.
    """
    available, processes = jax.local_device_count(), jax.process_count()
    n = cfg.devices or available
    if n > available:
        raise ConfigError(f"--devices {n}: this process has {available} local device(s)")
    if processes > 1 and n != available:
        raise ConfigError(f"--devices {n}: a run over {processes} processes uses all {available} devices of each")
    n *= processes
    shards = cfg.model_shards
    if n % shards:
        raise ConfigError(f"--model-shards {shards} does not divide the {n} device(s) of the run (--devices)")
    if cfg.batch_size % (n // shards):
        where = f"{n} devices" if shards == 1 else f"the {n // shards} data shard(s) of {n} devices"
        raise ConfigError(f"batch size {cfg.batch_size} does not divide over {where}")
    if shards > 1:
        return sharding.make_mesh(n // shards, shards)
    return sharding.make_data_mesh(n) if n > 1 else None


def _replicated(tree: Any, mesh: Mesh | None) -> Any:
    """`tree` replicated on every device of `mesh` (as is without one)."""
    return tree if mesh is None else sharding.replicate(tree, mesh)


def _one_device(tree: Any, mesh: Mesh | None) -> Any:
    """`tree` on this process's first device (the top-K export runs there, without collectives; `tree` is
    replicated on `mesh`, so that device holds all of it), unless its tables are split over the mesh's
    "model" axis (the export then ranks on the mesh)."""
    if mesh is None or sharding.model_shards(mesh) > 1:
        return tree
    return jax.tree.map(lambda array: array.addressable_data(0), tree)


def _evaluate(components: Components, params, arrays: EvalArrays, ks, on_chunk=None) -> dict[str, float]:
    """Full-ranking metrics; on a mesh the users' chunks are split over its "data" axis (and tables over "model")."""
    return evaluate(
        components.backbone, params, components.data.graph, arrays,
        ks=ks, item_categories=components.dataset.item_categories, on_chunk=on_chunk, mesh=components.mesh,
    )  # fmt: skip


def _check_workdir(cfg: RunConfig, workdir: pathlib.Path) -> bool:
    """Validates --resume / --overwrite against the (locked) run directory; deletes nothing.

    Only a finished checkpoint or `results.json` make a run: a folder left by a run stopped
    before its first checkpoint (no or a partial `checkpoints/`) counts as empty.

    Returns:
      Whether to resume from `checkpoints/latest`; False: start from the beginning.
    """
    latest = workdir / "checkpoints" / "latest"
    resumable = bool(checkpoint.finished_steps(latest))
    has_run = resumable or bool(checkpoint.finished_steps(workdir / "checkpoints" / "best"))
    has_run = has_run or (workdir / "results.json").exists()
    if cfg.resume:
        if resumable or (workdir / "config.json").exists():
            try:
                saved = json.loads((workdir / "config.json").read_text())
            except (OSError, json.JSONDecodeError) as err:
                raise checkpoint.CheckpointError(f"--resume: cannot read {workdir / 'config.json'}: {err}") from err
            diff = config_differences(cfg.to_dict(), saved)  # may resume elsewhere: placement never counts
            if diff:
                raise ConfigError(f"--resume with a different config than {workdir}/config.json: {', '.join(diff)}")
        if not resumable:
            print(f"--resume: no finished checkpoint in {latest}; starting from the beginning", file=sys.stderr)
        return resumable
    if has_run and not cfg.overwrite:
        raise ConfigError(f"{workdir} already holds a run; pass --resume to continue it or --overwrite")
    if not has_run and rundir.leftovers(workdir):
        print(f"{workdir} holds no results and no finished checkpoint; starting over", file=sys.stderr)
    return False


PER_SAMPLE_KEYS = ("users", "pos_items", "neg_items", "shapley", "probs", "mask", "influence")


def run_keys(seed: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(init key, epoch-permutation key, step key): independent streams from one seed.

    Steps fold their step count into the step key and epochs their index into the epoch
    key, so every random draw depends only on (seed, step) and a resumed run is exact.
    """
    k_init, k_epoch, k_step = jax.random.split(jax.random.key(seed), 3)
    return k_init, k_epoch, k_step


def _train_epoch(components: Components, step_fn, state, keys, epoch: int, cfg: RunConfig, progress: TrainingProgress):
    """Runs one epoch of jitted steps (on a data mesh, with at most one step queued behind the running one).

    Returns:
      (state, per-epoch means of the scalar step metrics, index of the first non-finite
      step or None, the epoch's per-sample arrays (DVR data values) or {}). The only
      device-to-host transfer is one stacked read at the end of the epoch.
    """
    data = components.data
    _, k_epoch, k_step = keys
    epoch_key = jax.random.fold_in(k_epoch, epoch)
    batches = sampler.epoch_batches(epoch_key, data.train.n_pairs, cfg.batch_size)
    history = []
    for index in range(batches.shape[0]):
        state, metrics = step_fn(state, k_step, batches[index], data)
        if components.mesh is not None and index:
            # On a mesh the host stays one step ahead: a host far ahead fills a device's queue of
            # programs in flight, and a launch blocked on that queue left the others waiting in a
            # collective for good (docs/engineering.md, "Several processes").
            jax.block_until_ready(history[-1])
        history.append(metrics)
        progress.update(epoch, index + 1, batches.shape[0])
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *history)
    per_sample = {key: stacked.pop(key) for key in PER_SAMPLE_KEYS if key in stacked}  # stays on device
    stacked = jax.device_get(stacked)
    finite = np.asarray(stacked.pop("finite"), bool)
    due = np.asarray(stacked.pop("reward_due"), bool) if "reward_due" in stacked else None
    means = {}
    for key, values in stacked.items():
        if due is not None and key in ("reward", "advantage"):  # only steps that computed a reward
            values = values[due] if due.any() else np.full(1, np.nan)
        means[key] = float(np.mean(values))
    bad = None if finite.all() else int(np.argmin(finite))
    return state, means, bad, per_sample


def train_and_evaluate(cfg: RunConfig, dataset: Dataset | None = None, *, report: bool = True) -> dict[str, Any]:
    """Trains `cfg.method`, selects on validation, scores test once and writes the run directory.

    The run directory is created and locked (`run.lock`) before anything else. A run that
    fails or is interrupted removes a directory it created unless that holds a finished
    checkpoint, and always releases its lock. Over several processes, process 0 does all of
    that and the others print nothing.

    Args:
      cfg: the run configuration.
      dataset: an already loaded dataset (default: load `cfg.dataset`).
      report: print the result block (the warm start's inner BPR run does not).

    Returns:
      The results dict written to `results.json`.

    Raises:
      RunInterrupted: on KeyboardInterrupt, naming the last completed epoch.
      rundir.RunDirError: the run directory cannot be created or written, or is in use.
    """
    started = time.time()
    workdir = pathlib.Path(cfg.out) if cfg.out else rundir.default_run_dir(cfg)
    with distributed.silent_unless_main():
        held: list[Any] = []  # process 0, once it holds the run directory: (topmost folder it created, lock)
        tracker = FitProgress()
        finished = False
        try:
            _check_alike(cfg)
            resume = bool(distributed.agree(lambda: int(_claim(cfg, workdir, held))))
            components = build(cfg, dataset)  # bad input fails here, before anything is written
            _check_alike(cfg, components.dataset)
            with rundir.writing(workdir):
                label = cfg.method if report else f"warm start ({cfg.method})"
                results = _run(cfg, components, workdir, resume, tracker, label)
                # This session's own time: a warm start that trained is reported apart.
                results["total_seconds"] = time.time() - started - components.warm_start_seconds
                results["warm_start_seconds"] = components.warm_start_seconds
                results["resumed"] = resume
                distributed.on_main(lambda: export.write_json(workdir / "results.json", results))
            finished = True
        except RunInterrupted:  # the warm start's own run: it names its folder and epoch
            raise
        except KeyboardInterrupt as err:
            raise RunInterrupted(tracker.epoch, workdir) from err
        finally:
            if held:
                _release(workdir, *held, finished=finished)
        if cfg.plots and registry.get_method(cfg.method).trains:
            distributed.on_main(lambda: _draw_curves(workdir))
        if report and distributed.is_main():
            _print_summary(cfg, results, workdir)
    return results


def _check_alike(cfg: RunConfig, dataset: Dataset | None = None) -> None:
    """Over several processes: all of them run the same config (but where they run), and on the same data.

    Raises:
      ConfigError: in every process, when they differ (they would take other paths, or other batches).
    """
    settings = {name: value for name, value in cfg.to_dict().items() if name not in PLACEMENT_FIELDS}
    text = json.dumps([settings, None if dataset is None else dataset.source_hash], sort_keys=True, default=str)
    if not distributed.same_everywhere(text):
        what = "flags" if dataset is None else "data (each must load the same files)"
        raise ConfigError(f"the processes of this run differ in their {what}")


def _claim(cfg: RunConfig, workdir: pathlib.Path, held: list[Any]) -> bool:
    """Creates and locks `workdir`, then `_check_workdir`; puts (created, lock) in `held` for `_release`."""
    held[:] = rundir.claim(workdir)
    return _check_workdir(cfg, workdir)


def _release(workdir: pathlib.Path, created: pathlib.Path | None, lock: pathlib.Path, *, finished: bool) -> None:
    """Releases the lock; first removes what an unfinished run leaves unless it holds a checkpoint or results."""
    try:
        if not finished:
            checkpoints = workdir / "checkpoints"
            keep = any(checkpoint.finished_steps(checkpoints / name) for name in ("latest", "best"))
            rundir.discard(workdir, created, keep=keep or (workdir / "results.json").exists())
    finally:
        rundir.release_lock(lock)


def _draw_curves(workdir: pathlib.Path) -> None:
    """The run's training curves as PNG; without matplotlib (the plots extra) nothing is drawn."""
    try:
        plots.plot_run(workdir)
    except plots.PlotDependencyError:
        return


def _run(
    cfg: RunConfig, components: Components, workdir: pathlib.Path, resume: bool, tracker: FitProgress, label: str
) -> dict:
    """The run proper, in a locked `workdir`: (re)start, train, restore the best, score test once.

    Returns:
      The results for `results.json` (the caller adds the total time and writes it).
    """
    if not resume:
        distributed.on_main(lambda: _start_afresh(cfg, components, workdir))
    method, keys, per_sample = components.method, run_keys(cfg.seed), {}
    state, logs = _init_state(components, keys[0]), {"metrics": [], "train_log": []}
    if method.step is not None:
        latest = checkpoint.open_manager(workdir / "checkpoints" / "latest")
        best = checkpoint.open_manager(workdir / "checkpoints" / "best")
        if resume:  # restored straight onto the run's devices (over several processes it can go nowhere else)
            state, saved, _ = checkpoint.restore(latest, _replicated(state, components.mesh))
            tracker.load(saved)
            logs.update({name: _read_log(workdir / f"{name}.jsonl", tracker.epoch) for name in logs})
            print(f"resumed {workdir} at epoch {tracker.epoch}", file=sys.stderr, flush=True)
        with TrainingProgress(cfg.progress, cfg.epochs, label=label, start_epoch=tracker.epoch) as progress:
            try:
                fit = FitContext(cfg, components, keys, latest, best, workdir, progress)
                state, per_sample = _fit(fit, state, tracker, logs)  # updates tracker and logs
            except KeyboardInterrupt:  # keep the logs of the completed epochs; a resume cuts them at its checkpoint
                progress.close()  # the message goes where the bars were
                for name, records in logs.items() if distributed.is_main() else ():
                    kept = [r for r in records if r["epoch"] <= tracker.epoch]
                    export.write_jsonl(workdir / f"{name}.jsonl", kept)
                raise
    params = method.backbone_params(state)
    if method.step is not None and tracker.best_epoch >= 0:
        params = checkpoint.restore_backbone(best, state, method.backbone_params)
    test_arrays = make_eval_arrays(components.dataset, "test", chunk_size=cfg.eval_chunk)
    valid_metrics, test_metrics = _final_metrics(cfg, components, params, test_arrays)
    checkpoint_bytes = checkpoint.disk_bytes(workdir / "checkpoints")
    if checkpoint_bytes:
        print(f"checkpoints: {checkpoint_bytes / 1e6:.1f} MB in {workdir / 'checkpoints'}", file=sys.stderr)
    results = {
        "dataset": cfg.dataset, "method": cfg.method, "backbone": cfg.backbone, "seed": cfg.seed,
        "reward": cfg.reward if registry.get_method(cfg.method).uses_reward else None,
        "best_epoch": tracker.best_epoch, "valid": valid_metrics, "test": test_metrics,
        "train_seconds": tracker.train_seconds, "checkpoint_bytes": checkpoint_bytes,
        "leaky": list(leaky_ingredients(cfg)), "dataset_summary": components.dataset.summary(),
    }  # fmt: skip
    pairs = getattr(state, "pairs", None)  # DVR: running values of every pair over all epochs
    distributed.on_main(lambda: _export(cfg, components, workdir, (pairs, per_sample), params, test_arrays))
    return results


def _export(cfg: RunConfig, components: Components, workdir: pathlib.Path, values: tuple[Any, dict[str, jax.Array]],
            params: Any, test_arrays: EvalArrays) -> None:  # fmt: skip
    """Process 0's outputs after the final evaluation: DVR's data values (`values`: the running values of
    every pair or None, the last epoch's per-sample arrays); with `cfg.export` the splits and the test
    top-K lists (ranked on this process's first device: no collective)."""
    pairs, per_sample = values
    if pairs is not None:
        export.export_pair_values(components.dataset, components.data.train, jax.device_get(pairs),
                                  workdir / "pair_values.npz")  # fmt: skip
    if per_sample:
        export.export_data_values(components.dataset, jax.device_get(per_sample), workdir / "data_values.tsv")
    if cfg.export:
        export.export_splits(components.dataset, workdir / "export")
        users, items, scores = topk_lists(components.backbone, _one_device(params, components.mesh),
                                          components.data.graph, test_arrays, max(cfg.ks),
                                          mesh=components.mesh)  # fmt: skip
        export.export_topk(components.dataset, users, items, scores, workdir / "export" / "test_topk.tsv")


def _start_afresh(cfg: RunConfig, components: Components, workdir: pathlib.Path) -> None:
    """Removes a previous run's outputs (all of the folder under `cfg.overwrite`), then writes `config.json`."""
    rundir.clear(workdir, everything=cfg.overwrite)
    _write_config(cfg, components, workdir)


def _write_config(cfg: RunConfig, components: Components, workdir: pathlib.Path) -> None:
    """`config.json`: the flat config, what of the run reads test, the device mesh, the dataset's counts
    and `source_hash` (which data the run trains on: `rundir.continues_interrupted` reads it)."""
    mesh = {"devices": 1 if components.mesh is None else components.mesh.size, "processes": jax.process_count()}
    if sharding.model_shards(components.mesh) > 1:
        mesh["model_shards"] = sharding.model_shards(components.mesh)
    saved = {**cfg.to_dict(), "leaky": list(leaky_ingredients(cfg)), "mesh": mesh}
    summary = {**components.dataset.summary(), "source_hash": components.dataset.source_hash}
    export.write_json(workdir / "config.json", {**saved, "dataset_summary": summary})


def _final_metrics(cfg: RunConfig, components: Components, params: Any, test_arrays: EvalArrays) -> tuple[dict, dict]:
    """Validation and test metrics of the selected parameters: the only read of test in an honest run."""
    with EvaluationProgress(cfg.progress) as bars:
        valid = _evaluate(components, params, components.valid, cfg.ks, bars.evaluation("valid"))
        return valid, _evaluate(components, params, test_arrays, cfg.ks, bars.evaluation("test"))


def _read_log(path: pathlib.Path, epoch: int) -> list[dict]:
    """The records of a jsonl log up to `epoch` (a resumed run replays the epochs after it)."""
    lines = path.read_text().splitlines() if path.exists() else []
    return [r for r in map(json.loads, lines) if r["epoch"] <= epoch]


class FitContext(NamedTuple):
    """What the epoch loop runs in and never changes: the config, the built components, the run's
    keys (`run_keys`), the two checkpoint managers, the run directory and the progress display."""

    cfg: RunConfig
    components: Components
    keys: tuple[jax.Array, jax.Array, jax.Array]
    latest: Any
    best: Any
    workdir: pathlib.Path
    progress: TrainingProgress


def _init_state(components: Components, key: jax.Array) -> Any:
    """The method's initial state; with tables split over a "model" axis, created in place on the mesh."""
    if sharding.model_shards(components.mesh) > 1:
        return sharding.init_sharded(components.method.init, key, components.mesh)
    return components.method.init(key)


def _place(components: Components, state: Any) -> tuple[Any, Any, Components]:
    """(jitted step, state, components) on the run's devices: one, or the mesh (`dvr_jax.sharding`:
    the batch split over "data", the tables and their Adam moments over "model" if there is one,
    the rest of the state and the step data replicated)."""
    mesh = components.mesh
    if mesh is None:
        return jax.jit(components.method.step, donate_argnums=(0,)), state, components
    if sharding.model_shards(mesh) > 1:
        state_sharding = sharding.table_shardings(mesh, state)
        placed = dataclasses.replace(components, data=_replicated(components.data, mesh))
        step = sharding.shard_step(components.method.step, mesh, state_sharding=state_sharding)
        return step, jax.device_put(state, state_sharding), placed
    placed = dataclasses.replace(components, data=_replicated(components.data, mesh))
    return sharding.shard_step(components.method.step, mesh), _replicated(state, mesh), placed


def _validate(fit: FitContext, params: Any, record: dict[str, Any]) -> float:
    """One validation check: adds its metrics to `record`; returns the value that selects the checkpoint.

    Under the leaky `select_split="test"` it also scores test, and that selects (the released
    code's maximum over epochs of test Recall@20).
    """
    cfg, components = fit.cfg, fit.components
    record["valid"] = _evaluate(components, params, components.valid, cfg.ks, fit.progress.evaluation("valid"))
    if components.select_test is None:
        return record["valid"][cfg.select_metric]
    record["test"] = _evaluate(components, params, components.select_test, cfg.ks)
    return record["test"][cfg.select_metric]


def _fit(
    fit: FitContext, state: Any, tracker: FitProgress, logs: dict[str, list[dict[str, Any]]]
) -> tuple[Any, dict[str, jax.Array]]:
    """The epoch loop with validation, early stopping, checkpoints and the divergence guard.

    Updates `tracker` and appends to `logs` (both are saved with the checkpoints).

    Returns:
      (final state, per-sample arrays of the last epoch).
    """
    cfg, components, keys, latest, best, workdir, progress = fit
    step_fn, state, components = _place(components, state)
    per_sample = {}
    for epoch in range(tracker.epoch, cfg.epochs):
        t0 = time.time()
        state, means, bad, per_sample = _train_epoch(components, step_fn, state, keys, epoch, cfg, progress)
        tracker.train_seconds += time.time() - t0
        if bad is not None:
            step = epoch * (components.data.train.n_pairs // cfg.batch_size) + bad
            raise TrainingDiverged(
                f"non-finite loss, data value or reward at step {step} (epoch {epoch + 1}); last good "
                f"checkpoint: {workdir / 'checkpoints' / 'latest'} (epoch {tracker.epoch})"
            )
        done = epoch + 1
        logs["train_log"].append({"epoch": done, **means})
        progress.status = f"loss {means['loss']:.4f}"
        if done % cfg.valid_interval == 0 or done == cfg.epochs:
            record = {"epoch": done, "loss": means["loss"], "seconds": tracker.train_seconds}
            value = _validate(fit, components.method.backbone_params(state), record)
            logs["metrics"].append(record)
            if value > tracker.best_value:
                tracker.best_value, tracker.best_epoch, tracker.bad_checks = value, done, 0
                checkpoint.save_backbone(best, done, components.method.backbone_params(state),
                                         {"epoch": done, cfg.select_metric: value})  # fmt: skip
            else:
                tracker.bad_checks += 1
            progress.line(f"epoch {done}: loss {means['loss']:.4f}  {cfg.select_split} {cfg.select_metric} "
                          f"{value:.4f}  (best {tracker.best_value:.4f} @ {tracker.best_epoch})")  # fmt: skip
        tracker.epoch = done
        stop = cfg.patience is not None and tracker.bad_checks >= cfg.patience
        if done % cfg.checkpoint_every == 0 or done == cfg.epochs or stop:
            distributed.on_main(lambda: _write_logs(workdir, logs))
            checkpoint.save(latest, done, state, dataclasses.asdict(tracker))  # every process takes part
        if stop:
            progress.line(f"early stop at epoch {done}: no improvement in {cfg.patience} checks")
            break
    return state, per_sample


def _write_logs(workdir: pathlib.Path, logs: dict[str, list[dict[str, Any]]]) -> None:
    for name, records in logs.items():
        export.write_jsonl(workdir / f"{name}.jsonl", records)


def _print_summary(cfg: RunConfig, results: dict[str, Any], workdir: pathlib.Path) -> None:
    test = results["test"]
    keys = ["recall@20", "ndcg@20"] + [k for k in ("cc@20", "ild@20", "gini@20") if k in test]
    summary = "  ".join(f"{k} {test[k]:.4f}" for k in keys)
    method = f"{cfg.method}-{cfg.reward}" if registry.get_method(cfg.method).uses_reward else cfg.method
    if results.get("resumed"):  # the training time counts every session of the run
        time_line = f"{results['total_seconds']:.1f}s this session (training {results['train_seconds']:.1f}s in all)"
    else:
        time_line = f"{results['total_seconds']:.1f}s (training {results['train_seconds']:.1f}s)"
    if results.get("warm_start_seconds"):  # a warm start that trained here, not one reused
        time_line += f"; warm start {results['warm_start_seconds']:.1f}s before that"
    leaky = results.get("leaky") or []
    warning = f"TEST-LEAKY ({'; '.join(leaky)}): not comparable with honest runs\n" if leaky else ""
    print(
        f"{cfg.dataset} | {method} | {cfg.backbone} | seed {cfg.seed} | best epoch {results['best_epoch']}\n"
        f"{warning}test: {summary}\n"
        f"time: {time_line}\n"
        f"outputs: {workdir}"
    )
