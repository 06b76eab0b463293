"""The warm start: the BPR run a DVR run fine-tunes, where it is kept, and reading its checkpoint.

`warm_start="auto"` trains (once) a validation-selected BPR run under `pretrained_dir`, keyed by
every setting that shapes it; `warm_start=PATH` reads a given run. MF tables are read in the
caller's layout: padded for any number of model shards, and straight into their shards on a mesh
(docs/engineering.md §14).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
from jax.sharding import Mesh

from dvr_jax import checkpoint, distributed, rundir, sharding
from dvr_jax.backbones import Backbone
from dvr_jax.config import ConfigError, RunConfig
from dvr_jax.data import DataError, resolve_data_dir
from dvr_jax.data.dataset import Dataset
from dvr_jax.errors import TrainingDiverged
from dvr_jax.methods import make_bpr_method

PRETRAIN_KEYS = ("dataset", "data_dir", "kcore", "split_seed", "backbone", "embedding_dim", "learning_rate",
                 "reduction", "valid_interval", "patience", "select_metric", "seed")  # fmt: skip
_DEFAULT_REWARD = {field.name: field.default for field in dataclasses.fields(RunConfig)}["reward"]


def pretrain_config(cfg: RunConfig, n_pairs: int | None = None) -> RunConfig:
    """The warm start's BPR run: BPR's own batch size (capped at `n_pairs`) and the backbone's own
    weight decay, not the caller's.

    It is always an honest run (validation-selected), also under a leaky `select_split`, and
    carries the default reward (BPR reads none), so its config is that of a plain BPR run of the
    same settings (`experiments/noise.py` reuses one for the other).

    DVR-Loss and DVR-Recall of one seed then share one BPR checkpoint although their batch
    sizes differ; on data with fewer training pairs than BPR's batch, the batch is all pairs.
    """
    bpr = cfg.replace(method="bpr", warm_start="none", batch_size=None, weight_decay=None, resume=False,
                      overwrite=True, export=False, epochs=cfg.pretrain_epochs or cfg.epochs,
                      select_split="valid", reward=_DEFAULT_REWARD)  # fmt: skip
    if n_pairs is not None and bpr.batch_size > n_pairs:
        multiple = (cfg.devices or jax.local_device_count()) * jax.process_count()  # still divides over the mesh
        bpr = bpr.replace(batch_size=max(multiple, n_pairs - n_pairs % multiple))
    return bpr


def pretrained_dir(cfg: RunConfig, dataset: Dataset | None = None) -> pathlib.Path:
    """Where `warm_start="auto"` keeps its BPR run: keyed by every setting that shapes it.

    The key covers the data (dataset, data dir, k-core, split seed), so a warm start never
    comes from a model trained on another split, whose training pairs may be this split's
    test pairs.
    """
    pretrain = pretrain_config(cfg, None if dataset is None else len(dataset.train)).to_dict()
    settings = {k: pretrain[k] for k in (*PRETRAIN_KEYS, "epochs", "batch_size")}
    settings["data_dir"] = str(resolve_data_dir(cfg.data_dir).resolve())
    if dataset is not None:  # the processed data itself (e.g. a dataset with planted pairs)
        settings["source_hash"] = dataset.source_hash
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
    root = pathlib.Path(cfg.out).parent if cfg.out else pathlib.Path("runs")
    return root / "pretrained" / f"{rundir.dataset_label(cfg.dataset)}-{cfg.backbone}-s{cfg.seed}-{digest}"


def ensure_pretrained(cfg: RunConfig, dataset: Dataset, *, train: Callable[..., dict]) -> tuple[pathlib.Path, float]:
    """(`pretrained_dir` of `cfg` on `dataset`, seconds spent training there): the BPR run that
    `warm_start="auto"` starts from, trained first (or, when killed, continued from its
    checkpoint) unless it has finished; 0 seconds when it was reused.

    One line on stderr before and after training; errors of that run say that they come from
    the warm start. Over several processes, process 0 looks and tells the others.
    """
    source = pretrained_dir(cfg, dataset)
    if distributed.agree(lambda: int((source / "results.json").exists())):
        return source, 0.0
    started = time.time()
    print(f"warm start: training BPR into {source}", file=sys.stderr, flush=True)
    bpr = pretrain_config(cfg, len(dataset.train)).replace(out=str(source))
    # A killed warm start goes on from its checkpoint; process 0 decides, as it does for the run itself.
    if distributed.agree(lambda: int(rundir.continues_interrupted(bpr, dataset.source_hash).resume)):
        bpr = bpr.replace(resume=True)
    try:
        results = train(bpr, dataset, report=False)
    except (ConfigError, DataError, checkpoint.CheckpointError, TrainingDiverged) as err:
        raise type(err)(f"warm start (BPR run into {source}): {err}") from err
    seconds = time.time() - started
    print(f"warm start: BPR best epoch {results['best_epoch']}, valid {cfg.select_metric} "
          f"{results['valid'][cfg.select_metric]:.4f} ({seconds:.1f}s)", file=sys.stderr, flush=True)  # fmt: skip
    return source, seconds


def warm_start(
    cfg: RunConfig, backbone: Backbone, dataset: Dataset, *, train: Callable[..., dict], mesh: Mesh | None = None
) -> tuple[Any, float]:
    """The warm-start stage: (backbone params of a validation-selected BPR checkpoint or None,
    seconds spent training that BPR run here, 0 when it was reused or there is none).

    `warm_start="auto"` trains that BPR run into `pretrained_dir` unless it exists
    (`ensure_pretrained`; not the run's own report). The BPR run trains on `dataset` itself,
    so a dataset passed in by the caller (one with planted pairs, say) is the one it sees.
    The params are read in `backbone`'s layout (`pretrained_params`): with tables split over
    the `mesh`'s "model" axis, into their shards, else replicated on `mesh`; over several
    processes, process 0 looks for the BPR run and tells the others what it found.
    `train(cfg, dataset, report=False)` trains a run: `dvr_jax.loop.train_and_evaluate`.
    """
    if cfg.warm_start == "none":
        return None, 0.0
    if cfg.warm_start == "auto":
        source, seconds = ensure_pretrained(cfg, dataset, train=train)
    else:
        source, seconds = pathlib.Path(cfg.warm_start), 0.0
    if not distributed.agree(lambda: int((source / "checkpoints" / "best").is_dir())):
        raise checkpoint.CheckpointError(f"--warm-start: no BPR checkpoint in {source / 'checkpoints' / 'best'}")
    return pretrained_params(source, backbone, dataset, mesh), seconds


def pretrained_params(source: pathlib.Path, backbone: Backbone, dataset: Dataset, mesh: Mesh | None = None) -> Any:
    """The backbone params of the BPR run in `source` (its `checkpoints/best`), in `backbone`'s layout.

    MF tables are read with `backbone`'s row count: a checkpoint of tables padded for another
    number of model shards (its `config.json` names them; none: unpadded) loses or gains zero
    rows at the end, so a run with `--model-shards M` starts from a BPR run trained with any
    M (or none), and the other way round. On a mesh with a "model" axis the tables are read
    straight into their shards (`sharding.table_shardings`); no device holds a whole table. On
    a data mesh they are restored replicated on it.

    Raises:
      CheckpointError: no checkpoint, or MF tables that are not this dataset's (other real
        row counts or another width).
    """
    best = checkpoint.open_manager(source / "checkpoints" / "best")
    like = jax.eval_shape(make_bpr_method(backbone).init, jax.random.key(0))
    if mesh is not None:  # tables into their shards, or everything replicated on the mesh (every process's devices)
        shardings = (sharding.table_shardings(mesh, like) if sharding.model_shards(mesh) > 1
                     else jax.tree.map(lambda _: jax.sharding.NamedSharding(mesh, jax.P()), like))  # fmt: skip
        like = jax.tree.map(lambda leaf, s: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=s), like, shardings)
    saved = checkpoint.saved_shapes(best)
    padded = backbone.name == "mf" and isinstance(saved, dict) and set(saved) == set(sharding.TABLES)
    if padded:  # MF params saved by `save_backbone`: only pad rows may differ
        shards = _model_shards_of(source)
        for name, n_rows in (("user", dataset.n_users), ("item", dataset.n_items)):
            (rows, width), dim = saved[name], like.params[name].shape[1]
            if rows != sharding.pad_rows(n_rows, shards) or width != dim:
                padding = f" padded for its {shards} model shards" if shards > 1 else ""
                raise checkpoint.CheckpointError(f"--warm-start: the {name} table in {best.directory} is {rows} x "
                                                 f"{width}, not this dataset's {n_rows} x {dim}{padding}")  # fmt: skip
    return checkpoint.restore_backbone(best, like, lambda state: state.params, strict=not padded)


def _model_shards_of(run: pathlib.Path) -> int:
    """The `--model-shards` a run directory's `config.json` records (1 when it names none or is missing)."""
    try:
        saved = json.loads((run / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return 1
    return int(saved.get("mesh", {}).get("model_shards", 1))
