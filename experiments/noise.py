"""Planted-noise harness: do data values detect bad training pairs, and does DVR beat its control?

    python experiments/noise.py --dataset lastfm --share 0.1 --mode add \\
        --methods bpr bpr-continued dvr-loss dvr-recall dvr-recall:scratch --seeds 0 1 2 3 4

Methods (the name fixes the warm start; there is no --warm-start flag):

  bpr                  BPR from scratch (warm_start "none").
  bpr-continued        BPR warm-started from the BPR checkpoint trained on the same (planted)
                       data and trained `--epochs` further: the control for DVR's extra budget.
  dvr-<reward>         DVR warm-started the same way (warm_start "auto"), e.g. dvr-loss.
  dvr-<reward>:scratch DVR from scratch (warm_start "none").
  tce, rce, ...        another baseline, from scratch.
  bpr-oracle           the perfect detector: bpr-continued's run (same warm start, same budget) on
                       the training pairs less exactly the planted ones (`dvr_jax.noise.drop_planted`),
                       the head room of any method that finds the noise; planted data only.

All warm-started methods of one seed share one BPR checkpoint, under `<out>/pretrained/`.
When `bpr` is among the methods and its config is that of the warm start's BPR run (no
`--batch-size`, no `pretrain_epochs`), the two are one run: whichever finished first is copied
into the other's folder instead of being trained twice (`share_bpr_run`).

For each seed the dataset's training split gets round(share * |train|) uniformly random
(user, item) pairs (`dvr_jax.noise.plant_random_pairs`, seeded by the seed; "replace"
drops as many real pairs first). `--share 0` trains on the clean data as loaded (nothing
planted, detection metrics skipped). Each method trains on it (`dvr_jax.loop`; a run whose
`results.json` exists is reused; an interrupted one continues from its last checkpoint)
into `<out>/<method with ':' as '-'>-s<seed>/`, and every training pair is scored by each
scorer (planted data only):

  model_score  s_ui of the validation-selected backbone,
  neg_loss     mean over 20 seeded uniform negatives j of log sigmoid(s_ui - s_uj): the
               global loss ranking that TCE's truncation relies on,
  user_neg_loss  the pair's rank of neg_loss among its own user's pairs, as a share
               (`dvr_jax.noise.within_user_rank`): the per-user loss ranking of PLD,
  dvr_value    mean Shapley value of the pair over the run (DVR runs, `pair_values.npz`),
  dvr_prob     mean selection probability (DVR),
  influence    mean first-order influence on the validation loss (DVR, positive: helpful),
  random       seeded uniform scores (the chance level).

Convention: every scorer is oriented so that *higher means more likely a real pair*. `auc`
is `roc_auc(score, ~planted)` (= the AUC of -score for detecting planted pairs; 0.5 is
chance). `ap` is the average precision of *detecting planted pairs*, i.e.
`average_precision(-score, planted)`; its chance level is the planted share of the training
rows (`ap_chance`). DVR pairs never visited (NaN means) get the lowest score (-inf).

DVR runs also get diagnostics: the mean selection probability of real and planted pairs,
the Spearman correlation of per-pair value and influence (visited pairs), the share of pairs
visited, and the last epoch's `train_log.jsonl` entries among LOG_KEYS.

Paired comparison: every method against `--reference` (default bpr-continued when run,
else bpr), over the seeds both ran: per-seed differences (method - reference) of test
recall@20 / ndcg@20 and validation recall@20, their mean, the paired t-test and the Wilcoxon
signed-rank p-values (`dvr_jax.noise.paired_comparison`; None where undefined).

Outputs: `<run>/noise.json` per run; `<out>/summary.json` and `<out>/summary.md` with four
tables: detection (mean ± std of AUC / AP per method and scorer; planted data only), metrics
(test recall@20 / ndcg@20 and valid recall@20), the paired comparison and the DVR
diagnostics. Mean ± std are over seeds (population, ddof = 0).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats

from dvr_jax import noise, rundir
from dvr_jax.checkpoint import CheckpointError
from dvr_jax.config import (
    FIELDS,
    METHODS,
    REWARDS,
    ConfigError,
    RunConfig,
    all_options,
    config_differences,
    make_config,
    option_names,
)
from dvr_jax.data import DataError, Dataset, load_dataset
from dvr_jax.export import write_json
from experiments.configs.presets import PRESETS

TEST_METRICS = ("recall@20", "ndcg@20")
VALID_METRICS = ("recall@20",)
PAIRED_METRICS = (("test", "recall@20"), ("test", "ndcg@20"), ("valid", "recall@20"))
LOG_KEYS = ("spearman_influence", "advantage", "selected", "zero_fraction", "tied_fraction")
SCRATCH = "scratch"  # the suffix of dvr-<reward>:scratch
ORACLE = "bpr-oracle"  # the perfect detector
DVR_SCORERS = {"dvr_value": "value", "dvr_prob": "prob", "influence": "influence"}
N_NEGATIVES = 20
SCORE_CHUNK = 8192  # pairs per jitted scoring call (x 20 negatives)
HARNESS_FIELDS = ("dataset", "data_dir", "method", "reward", "warm_start", "seed", "out", "resume", "overwrite")
QUICK = {"epochs": 2, "batch_size": 2048, "valid_interval": 1, "checkpoint_every": 1, "patience": None,
         "pretrain_epochs": 2, "embedding_dim": 16}  # fmt: skip


class NoiseHarnessError(RuntimeError):
    """Run outputs the harness cannot score (missing or mismatched files)."""


class MissingPairValues(NoiseHarnessError):
    """A DVR run directory without `pair_values.npz`."""


def parser() -> argparse.ArgumentParser:
    """The CLI flags."""
    methods = __doc__[__doc__.index("Methods (") : __doc__.index("For each seed")].rstrip()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=methods,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--dataset", default="lastfm")
    p.add_argument("--data-dir", help="directory holding <dataset>/ folders (default $DVR_DATA_DIR)")
    p.add_argument(
        "--share",
        type=float,
        default=0.1,
        help="planted pairs as a share of the training pairs; 0: clean data, nothing planted",
    )
    p.add_argument("--mode", choices=noise.MODES, default="add")
    p.add_argument(
        "--methods",
        nargs="+",
        default=["bpr", "dvr-loss"],
        help="bpr, bpr-continued, dvr-<reward>[:scratch] (e.g. dvr-loss, dvr-recall:scratch) "
        "or another baseline (tce, rce, ...)",
    )
    p.add_argument(
        "--reference",
        help="method the others are compared with, paired by seed (default: bpr-continued if run, else bpr)",
    )
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="planting and training seeds")
    p.add_argument("--backbone", default="mf")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--warm-start", help=argparse.SUPPRESS)  # removed (the method name sets it): a clear error
    p.add_argument(
        "--out",
        help="output directory (default runs/noise/<dataset>-<mode><share>, "
        "or runs/noise/<dataset>-clean with --share 0)",
    )
    p.add_argument(
        "--extra",
        nargs="*",
        default=[],
        metavar="NAME=VALUE",
        help="further RunConfig fields, e.g. estimator=loo patience=none",
    )
    p.add_argument("--config", choices=sorted(PRESETS), help="a run preset (as experiments/run.py's); --extra "
                   "overrides it; a method gets only the preset's fields it takes")  # fmt: skip
    p.add_argument("--quick", action="store_true", help="tiny smoke settings (2 epochs, small model)")
    return p


def method_fields(method: str) -> dict[str, str]:
    """RunConfig fields of a method name, warm start included.

    "bpr" -> BPR from scratch; "bpr-continued" -> BPR with warm_start "auto";
    "dvr-loss" -> DVR, reward loss, warm_start "auto"; "dvr-loss:scratch" -> the same from
    scratch; another baseline name -> that method from scratch.

    Raises:
      ConfigError: an unknown name or a suffix other than ":scratch" after dvr-<reward>.
    """
    name, colon, suffix = method.partition(":")
    if colon and not (name.startswith("dvr-") and suffix == SCRATCH):
        raise ConfigError(f"bad method {method!r}: only dvr-<reward> takes a suffix, ':{SCRATCH}'")
    if name.startswith("dvr-"):
        reward = name.removeprefix("dvr-")
        if reward not in REWARDS:
            raise ConfigError(f"unknown DVR reward in {method!r}; known: {', '.join(REWARDS)}")
        return {"method": "dvr", "reward": reward, "warm_start": "none" if colon else "auto"}
    if name in ("bpr-continued", ORACLE):  # the oracle's warm start is made concrete in `oracle_run`
        return {"method": "bpr", "warm_start": "auto"}
    if name in METHODS and name not in ("dvr", "pop"):
        return {"method": name, "warm_start": "none"}
    raise ConfigError(f"unknown method {method!r}: use bpr, bpr-continued, {ORACLE}, dvr-<reward>[:{SCRATCH}] "
                      f"or one of {', '.join(METHODS[2:])}")  # fmt: skip


def run_dir_name(method: str, seed: int) -> str:
    """The run directory of a (method, seed) cell: "dvr-recall:scratch", 0 -> "dvr-recall-scratch-s0"."""
    return f"{method.replace(':', '-')}-s{seed}"


def _convert(text: str, annotation: str) -> Any:
    """Parses `text` into the type named by a RunConfig field annotation (a string)."""
    if "None" in annotation and text.lower() in ("none", "null", "off"):
        return None
    base = annotation.split("|")[0].strip()
    if base == "bool":
        if text.lower() not in ("true", "1", "yes", "false", "0", "no"):
            raise ValueError(f"not a boolean: {text!r}")
        return text.lower() in ("true", "1", "yes")
    if base.startswith("tuple"):
        return tuple(int(x) for x in text.split(","))
    return {"int": int, "float": float}.get(base, str)(text)


def parse_extra(items: list[str]) -> dict[str, Any]:
    """`NAME=VALUE` strings -> config fields by flat name (typed by the field's annotation).

    NAME is a RunConfig field or any registered method's option (`estimator`, `tce_drop_rate`);
    `run_config` gives each run the options of its own method only.
    """
    fields = {**FIELDS, **{name: field for name, (_, field, _) in all_options().items()}}
    parsed = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in fields:
            raise ConfigError(f"--extra {item!r}: expected NAME=VALUE with NAME a config field or a method's option")
        if name in HARNESS_FIELDS:
            raise ConfigError(f"--extra {name}: set by the harness (use its own flag)")
        try:
            parsed[name] = _convert(text, str(fields[name].type))
        except ValueError as err:
            raise ConfigError(f"--extra {item!r}: {err}") from err
    return parsed


def default_out(dataset: str, mode: str, share: float) -> pathlib.Path:
    name = f"{dataset}-clean" if share == 0 else f"{dataset}-{mode}{share:g}"
    return pathlib.Path("runs") / "noise" / name


def run_config(args: argparse.Namespace, method: str, seed: int, out: pathlib.Path) -> RunConfig:
    """The RunConfig of one (method, seed) cell: quick <- flags <- --extra, then the harness fields.

    An `--extra` (or `--config` preset) option of one method (`selection_slope=3`,
    `tce_drop_rate=0.1`) applies to that method's runs and is left out of the others'; its
    RunConfig fields (`select_split=test`) apply to every run.
    """
    fields = dict(QUICK) if args.quick else {}
    flags = {"backbone": args.backbone, "epochs": args.epochs, "batch_size": args.batch_size}
    fields.update({k: v for k, v in flags.items() if v is not None})
    harness = method_fields(method)
    own = set(option_names(harness["method"]))
    preset = PRESETS[args.config] if getattr(args, "config", None) else {}
    fields.update({k: v for k, v in {**preset, **parse_extra(args.extra)}.items() if k in FIELDS or k in own})
    fields.update(harness)
    return make_config(dataset=args.dataset, data_dir=args.data_dir, seed=seed,
                       out=str(out / run_dir_name(method, seed)), overwrite=True, progress=False,
                       **fields)  # fmt: skip


def train_or_reuse(cfg: RunConfig, dataset: Dataset, planting: dict[str, Any]) -> dict[str, Any]:
    """Trains the run (unless `results.json` of the same config and planted data exists); its results dict.

    An interrupted run of the same config and data in its folder is continued from its last
    checkpoint (`rundir.continues_interrupted`); any other unfinished run there is started over.
    """
    workdir = pathlib.Path(cfg.out)
    if (workdir / "results.json").exists():
        _check_reusable(cfg, workdir, planting)
        return json.loads((workdir / "results.json").read_text())
    from dvr_jax.loop import train_and_evaluate  # noqa: PLC0415  (JAX only when training)

    results = train_and_evaluate(rundir.continues_interrupted(cfg, dataset.source_hash), dataset=dataset)
    write_json(workdir / "planting.json", planting)
    return results


def oracle_run(cfg: RunConfig, dataset: Dataset, planted: np.ndarray) -> tuple[RunConfig, Dataset]:
    """The perfect detector's (config, training data): bpr-continued's warm start, made a concrete
    path, and the planted dataset less its planted rows.

    The warm start is the BPR run that `warm_start="auto"` trains on the planted data (the one
    bpr-continued and DVR start from); it is trained here first when no other method has yet.
    """
    from dvr_jax import warm_start  # noqa: PLC0415  (JAX only when training)
    from dvr_jax.loop import train_and_evaluate  # noqa: PLC0415

    source, _ = warm_start.ensure_pretrained(cfg, dataset, train=train_and_evaluate)
    return cfg.replace(warm_start=str(source)), noise.drop_planted(dataset, planted)


def share_bpr_run(bpr: RunConfig, warm: RunConfig, dataset: Dataset, planting: dict[str, Any]) -> bool:
    """Copies the finished one of (the seed's `bpr` run, the warm start of `warm`) into the other's folder.

    Only when the other has no `results.json` and the two configs agree in every field but
    `out` (`config_differences`, against the finished run's saved `config.json`); the copy
    gets its own `out` in `config.json`, the `bpr` folder also `planting.json`, and appears
    whole or not at all (copied beside, then renamed). Returns whether it copied.
    """
    from dvr_jax import warm_start  # noqa: PLC0415  (JAX only when training)

    folder = warm_start.pretrained_dir(warm, dataset)
    twin = warm_start.pretrain_config(warm, len(dataset.train)).replace(out=str(folder))
    pairs = ((pathlib.Path(bpr.out), twin), (folder, bpr))
    for source, target in pairs:
        target_dir = pathlib.Path(target.out)
        if (target_dir / "results.json").exists() or not (source / "results.json").exists():
            continue
        try:
            saved = json.loads((source / "config.json").read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if config_differences({k: v for k, v in target.to_dict().items() if k != "out"}, saved):
            continue
        partial = target_dir.with_name(target_dir.name + ".copying")
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(source, partial, ignore=shutil.ignore_patterns("run.lock", "planting.json", "noise.json"))
        write_json(partial / "config.json", {**saved, "out": target.out})
        if target is bpr:
            write_json(partial / "planting.json", planting)
        shutil.rmtree(target_dir, ignore_errors=True)  # an unfinished run of its own
        partial.rename(target_dir)
        return True
    return False


def _check_reusable(cfg: RunConfig, workdir: pathlib.Path, planting: dict[str, Any]) -> None:
    """Raises ConfigError when a finished run in `workdir` has another config or other planted data."""
    try:
        saved_planting = json.loads((workdir / "planting.json").read_text())
        saved = json.loads((workdir / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"{workdir} holds a run without a readable planting.json/config.json; "
                          f"delete it or choose another --out ({err})") from err  # fmt: skip
    if saved_planting.get("source_hash") != planting["source_hash"]:
        raise ConfigError(f"{workdir} holds a run on other planted data; delete it or choose another --out")
    diff = config_differences(cfg.to_dict(), saved)
    if diff:
        raise ConfigError(f"{workdir} holds a run with another config ({', '.join(diff)}); "
                          "delete it or choose another --out")  # fmt: skip


def backbone_scores(cfg: RunConfig, dataset: Dataset, seed: int) -> dict[str, np.ndarray]:
    """`model_score`, `neg_loss` and `user_neg_loss` of every training row, from the run's best checkpoint.

    Args:
      cfg: the run's config (its `out` is the run directory).
      dataset: the planted dataset the run trained on.
      seed: seed of the negatives.

    Returns:
      {"model_score", "neg_loss", "user_neg_loss": f64[P]} aligned to `dataset.train`.
    """
    import jax  # noqa: PLC0415

    from dvr_jax import checkpoint, loop  # noqa: PLC0415

    best = pathlib.Path(cfg.out) / "checkpoints" / "best"
    if not best.is_dir():
        raise CheckpointError(f"no best checkpoint in {best} (the run never validated)")
    components = loop.build(cfg.replace(warm_start="none"), dataset)  # same state structure, no pretraining
    like = components.method.init(jax.random.key(0))
    params = checkpoint.restore_backbone(checkpoint.open_manager(best), like, components.method.backbone_params)
    reps = jax.jit(components.backbone.encode)(params, components.data.graph)
    score_chunk = _make_chunk_scorer(components.backbone, N_NEGATIVES)
    train = components.data.train
    pairs = np.asarray(dataset.train, np.int32)
    key = jax.random.key(seed)
    pos, loss = [], []
    for index, start in enumerate(range(0, len(pairs), SCORE_CHUNK)):
        chunk = pairs[start : start + SCORE_CHUNK]
        padded = np.zeros((SCORE_CHUNK, 2), np.int32)  # fixed shape: one compilation
        padded[: len(chunk)] = chunk
        out = score_chunk(reps, train, padded[:, 0], padded[:, 1], jax.random.fold_in(key, index))
        chunk_pos, chunk_loss = jax.device_get(out)
        pos.append(chunk_pos[: len(chunk)])
        loss.append(chunk_loss[: len(chunk)])
    neg_loss = np.concatenate(loss).astype(np.float64)
    return {"model_score": np.concatenate(pos).astype(np.float64), "neg_loss": neg_loss,
            "user_neg_loss": noise.within_user_rank(neg_loss, pairs[:, 0])}  # fmt: skip


def _make_chunk_scorer(backbone, n_negatives: int):
    """jit(reps, train, users, items, key) -> (s_ui f32[C], mean_j log sigmoid(s_ui - s_uj) f32[C])."""
    import jax  # noqa: PLC0415
    import jax.numpy as jnp  # noqa: PLC0415

    from dvr_jax import sampler  # noqa: PLC0415

    def score(reps, train, users, items, key):
        pos = backbone.score_pairs(reps, users, items)
        neg_users = jnp.repeat(users, n_negatives)
        neg_items = sampler.sample_uniform_negatives(key, train, neg_users)
        neg = backbone.score_pairs(reps, neg_users, neg_items).reshape(users.shape[0], n_negatives)
        return pos, jnp.mean(jax.nn.log_sigmoid(pos[:, None] - neg), axis=1)

    return jax.jit(score)


def load_pair_values(workdir: pathlib.Path, dataset: Dataset) -> dict[str, np.ndarray]:
    """`<run>/pair_values.npz` aligned to the rows of `dataset.train` by (user, item).

    Returns:
      {"value", "prob", "influence": f64[P] (NaN where never visited), "visits": int64[P]}.

    Raises:
      MissingPairValues: no `pair_values.npz`.
      NoiseHarnessError: the file does not hold exactly the training pairs.
    """
    path = workdir / "pair_values.npz"
    if not path.exists():
        raise MissingPairValues(f"{path} is missing: DVR runs must write pair_values.npz "
                                "(dvr_jax.export.export_pair_values) for the dvr_value / dvr_prob / "
                                "influence scorers")  # fmt: skip
    with np.load(path) as npz:
        arrays = {name: np.asarray(npz[name]) for name in ("users", "items", "visits", *DVR_SCORERS.values())}
    n_items = dataset.n_items
    codes = arrays["users"].astype(np.int64) * n_items + arrays["items"].astype(np.int64)
    wanted = dataset.train[:, 0].astype(np.int64) * n_items + dataset.train[:, 1].astype(np.int64)
    order = np.argsort(codes)
    position = np.clip(np.searchsorted(codes, wanted, sorter=order), 0, len(codes) - 1)
    rows = order[position]
    if len(codes) != len(wanted) or not np.array_equal(codes[rows], wanted):
        raise NoiseHarnessError(f"{path} does not hold exactly the {len(wanted)} training pairs of the planted data")
    visits = arrays["visits"][rows].astype(np.int64)
    aligned = {f: np.where(visits > 0, arrays[f][rows].astype(np.float64), np.nan) for f in DVR_SCORERS.values()}
    return {**aligned, "visits": visits}


def pair_value_scores(workdir: pathlib.Path, dataset: Dataset, influence: bool = True) -> dict[str, np.ndarray]:
    """DVR scorers of every training row from `<run>/pair_values.npz`, aligned by (user, item).

    Pairs never visited (NaN means) get -inf, the lowest score.

    Args:
      workdir: the DVR run directory.
      dataset: the planted dataset the run trained on.
      influence: include the influence scorer (False when the run did not compute it).

    Returns:
      {"dvr_value", "dvr_prob"[, "influence"]: f64[P]}.

    Raises:
      MissingPairValues: no `pair_values.npz`.
      NoiseHarnessError: the file does not hold exactly the training pairs.
    """
    arrays = load_pair_values(workdir, dataset)
    scorers = {name: field for name, field in DVR_SCORERS.items() if influence or name != "influence"}
    return {name: np.where(np.isnan(arrays[field]), -np.inf, arrays[field]) for name, field in scorers.items()}


def _finite(value: Any) -> float | None:
    """A float, or None for None / NaN / inf / non-numbers (JSON-safe)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) else None


def last_log_entry(workdir: pathlib.Path) -> dict[str, Any]:
    """The last JSON line of `<run>/train_log.jsonl`, or {} without one."""
    path = workdir / "train_log.jsonl"
    if not path.exists():
        return {}
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    try:
        return json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError as err:
        raise NoiseHarnessError(f"{path}: the last line is not JSON ({err})") from err


def dvr_diagnostics(workdir: pathlib.Path, dataset: Dataset, planted: np.ndarray,
                    influence: bool = True) -> dict[str, float | None]:  # fmt: skip
    """Diagnostics of one DVR run (floats; None where undefined).

    prob_real / prob_planted: mean selection probability of the visited real / planted pairs
    (prob_planted absent on clean data); visited_fraction: share of training pairs visited;
    spearman_value_influence: Spearman correlation of per-pair value and influence over the
    visited pairs (absent when the run computed no influence); then the last epoch's
    `train_log.jsonl` entries among LOG_KEYS that exist.
    """
    arrays = load_pair_values(workdir, dataset)
    visited = arrays["visits"] > 0
    prob = arrays["prob"]
    out: dict[str, float | None] = {"visited_fraction": float(visited.mean()) if len(visited) else None}
    groups = {"prob_real": visited & ~planted, **({"prob_planted": visited & planted} if planted.any() else {})}
    for name, mask in groups.items():
        out[name] = _finite(prob[mask].mean()) if mask.any() else None
    if influence:
        value, infl = arrays["value"], arrays["influence"]
        both = visited & np.isfinite(value) & np.isfinite(infl)
        rho = None
        if both.sum() >= 2 and np.ptp(value[both]) > 0 and np.ptp(infl[both]) > 0:
            rho = _finite(stats.spearmanr(value[both], infl[both]).statistic)
        out["spearman_value_influence"] = rho
    last = last_log_entry(workdir)
    out.update({key: _finite(last[key]) for key in LOG_KEYS if key in last})
    return out


def detection_metrics(scores: dict[str, np.ndarray], planted: np.ndarray) -> dict[str, dict[str, float]]:
    """{scorer: {"auc": AUC(score, real), "ap": AP(-score, planted)}} (scores: higher = more likely real)."""
    out = {}
    for name, score in scores.items():
        score = np.nan_to_num(np.asarray(score, np.float64), nan=-np.inf)
        out[name] = {"auc": noise.roc_auc(score, ~planted), "ap": noise.average_precision(-score, planted)}
    return out


def _draw_values(workdir: pathlib.Path, values: np.ndarray, planted: np.ndarray, title: str) -> None:
    """`<run>/plots/values.png` with real and planted pairs apart (nothing without matplotlib)."""
    from dvr_jax import plots  # noqa: PLC0415

    try:
        plots.write_value_histogram(values, workdir / plots.PLOTS_DIR / plots.VALUES_FILE, planted=planted, title=title)
    except plots.PlotDependencyError:
        return


def score_run(cfg: RunConfig, method: str, dataset: Dataset, planted: np.ndarray,
              results: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """Scores one finished run and writes `<run>/noise.json`; returns its content.

    On clean data (nothing planted) the detection scorers are skipped (`scorers` is {}).
    """
    workdir = pathlib.Path(cfg.out)
    noisy = bool(planted.any())
    scorers = {}
    if noisy:
        scores = backbone_scores(cfg, dataset, cfg.seed)
        if cfg.method == "dvr":
            scores.update(pair_value_scores(workdir, dataset, influence=cfg.options.influence))
            _draw_values(workdir, load_pair_values(workdir, dataset)["value"], planted, f"{cfg.dataset} {method}")
        scores["random"] = np.random.default_rng([cfg.seed, 7]).random(len(planted))
        scorers = detection_metrics(scores, planted)
    record = {
        "dataset": cfg.dataset, "method": method, "seed": cfg.seed, "warm_start": cfg.warm_start,
        "planted": int(planted.sum()), "ap_chance": float(planted.mean()) if noisy else None,
        "scorers": scorers,
        "test": {k: results["test"][k] for k in TEST_METRICS},
        "valid": {k: results.get("valid", {}).get(k) for k in VALID_METRICS},
        "diagnostics": dvr_diagnostics(workdir, dataset, planted, cfg.options.influence) if cfg.method == "dvr" else {},
        "best_epoch": results.get("best_epoch"), "dataset_summary": dataset.summary(),
        "source_hash": dataset.source_hash, "leaky": list(results.get("leaky") or []),
        "convention": "auc = roc_auc(score, ~planted) with higher score = more likely real; "
                      "ap = average_precision(-score, planted)",
    }  # fmt: skip
    write_json(workdir / "noise.json", record)
    return record


def _mean_std(values: list[Any]) -> dict[str, float] | None:
    """Mean ± std (ddof 0) of the defined values, with their count; None if there is none."""
    values = [v for v in (_finite(v) for v in values) if v is not None]
    if not values:
        return None
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "n": len(values)}


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean ± std over seeds per method.

    Returns:
      {method: {"seeds", "planted", "leaky", "scorers": {s: {auc, ap}}, "test": {m: ...},
                "valid": {m: ...}, "diagnostics": {d: ...}}}; "leaky" lists the test-leaky
      ingredients of any of its runs (`config.leaky_ingredients`), [] for honest runs.
    """
    summary: dict[str, Any] = {}
    for method in dict.fromkeys(r["method"] for r in records):
        mine = [r for r in records if r["method"] == method]
        scorers = dict.fromkeys(s for r in mine for s in r["scorers"])
        diagnostics = dict.fromkeys(d for r in mine for d in r.get("diagnostics", {}))
        summary[method] = {
            "seeds": [r["seed"] for r in mine],
            "planted": [r["planted"] for r in mine],
            "leaky": sorted({ingredient for r in mine for ingredient in r.get("leaky") or []}),
            "scorers": {s: {m: _mean_std([r["scorers"][s][m] for r in mine if s in r["scorers"]])
                            for m in ("auc", "ap")} for s in scorers},
            "test": {m: _mean_std([r["test"][m] for r in mine]) for m in TEST_METRICS},
            "valid": {m: _mean_std([r.get("valid", {}).get(m) for r in mine]) for m in VALID_METRICS},
            "diagnostics": {d: _mean_std([r["diagnostics"].get(d) for r in mine if "diagnostics" in r])
                            for d in diagnostics},
        }  # fmt: skip
    return summary


def default_reference(methods: list[str]) -> str | None:
    """bpr-continued if it is among `methods`, else bpr if it is, else None."""
    return next((m for m in ("bpr-continued", "bpr") if m in methods), None)


def paired_summary(records: list[dict[str, Any]], reference: str | None) -> dict[str, Any]:
    """Every other method against `reference`, paired over the seeds both ran.

    Returns:
      {method: {"reference", "seeds", "metrics": {"<split>/<metric>": paired_comparison(...)}}}
      ({} without a reference).
    """
    if reference is None:
        return {}
    by_cell = {(r["method"], r["seed"]): r for r in records}
    out = {}
    for method in dict.fromkeys(r["method"] for r in records):
        if method == reference:
            continue
        seeds = [s for (m, s) in by_cell if m == method and (reference, s) in by_cell]
        metrics = {}
        for split, metric in PAIRED_METRICS:
            pairs = [(by_cell[(method, s)][split].get(metric), by_cell[(reference, s)][split].get(metric))
                     for s in seeds]  # fmt: skip
            kept = [(s, a, b) for s, (a, b) in zip(seeds, pairs) if _finite(a) is not None and _finite(b) is not None]
            stats_ = noise.paired_comparison([a for _, a, _ in kept], [b for _, _, b in kept])
            metrics[f"{split}/{metric}"] = {"seeds": [s for s, _, _ in kept], **stats_}
        out[method] = {"reference": reference, "seeds": seeds, "metrics": metrics}
    return out


def _cell(stats_: dict[str, float] | None) -> str:
    return "–" if stats_ is None else f"{stats_['mean']:.4f} ± {stats_['std']:.4f}"


def _num(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def leaky_name(name: str, ingredients: Sequence[str]) -> str:
    """`name` as the tables show it: "<name> [test-leaky]" when its runs read the test split."""
    return f"{name} [test-leaky]" if ingredients else name


def leaky_line(leaks: Mapping[str, Sequence[str]]) -> str:
    """The line under a table that says which of its rows read the test split, and what; "" when none did."""
    if not leaks:
        return ""
    said = "; ".join(f"{name} ({', '.join(ingredients)})" for name, ingredients in leaks.items())
    return f"TEST-LEAKY: {said}. Their test metrics are not honest estimates, not comparable with honest runs."


def _label(method: str, summary: dict[str, Any]) -> str:
    return leaky_name(method, summary.get(method, {}).get("leaky"))


def summary_markdown(summary: dict[str, Any], paired: dict[str, Any], header: str) -> str:
    """Four tables: detection (noisy data only), metrics, paired comparison, DVR diagnostics.

    A method whose runs read the test split (a leaky protocol) is named "<method> [test-leaky]" in
    every table, and a line under the header says which ingredients leak.
    """
    lines = [header]
    said = leaky_line({m: cell["leaky"] for m, cell in summary.items() if cell.get("leaky")})
    if said:
        lines += ["", said]
    if any(cell["scorers"] for cell in summary.values()):
        lines += ["", "## Detection", "", "| method | scorer | AUC | AP (planted) |", "|---|---|---|---|"]
        for method, cell in summary.items():
            name = _label(method, summary)
            for scorer, stats_ in cell["scorers"].items():
                lines.append(f"| {name} | {scorer} | {_cell(stats_['auc'])} | {_cell(stats_['ap'])} |")
    names = [f"test {m}" for m in TEST_METRICS] + [f"valid {m}" for m in VALID_METRICS]
    lines += ["", "## Metrics", "", "| method | seeds | " + " | ".join(names) + " |",
              "|---|---|" + "---|" * len(names)]  # fmt: skip
    for method, cell in summary.items():
        metrics = [_cell(cell["test"][m]) for m in TEST_METRICS] + [_cell(cell["valid"][m]) for m in VALID_METRICS]
        lines.append(f"| {_label(method, summary)} | {len(cell['seeds'])} | " + " | ".join(metrics) + " |")
    if paired:
        lines += ["", "## Paired comparison (method − reference, per seed)", "",
                  "| method | reference | metric | seeds | mean diff | per-seed diffs | t-test p | Wilcoxon p |",
                  "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for method, cell in paired.items():
            name, reference = _label(method, summary), _label(cell["reference"], summary)
            for metric, st in cell["metrics"].items():
                diffs = " ".join(f"{d:+.4f}" for d in st["differences"]) or "–"
                lines.append(f"| {name} | {reference} | {metric} | {st['n']} | "
                             f"{_num(st['mean_difference'], '+.4f')} | {diffs} | {_num(st['t_pvalue'], '.3g')} | "
                             f"{_num(st['wilcoxon_pvalue'], '.3g')} |")  # fmt: skip
    if any(cell["diagnostics"] for cell in summary.values()):
        lines += ["", "## DVR diagnostics (mean ± std over seeds)", "", "| method | diagnostic | value | runs |",
                  "|---|---|---|---|"]  # fmt: skip
        for method, cell in summary.items():
            label = _label(method, summary)
            for name, stats_ in cell["diagnostics"].items():
                lines.append(f"| {label} | {name} | {_cell(stats_)} | {stats_['n'] if stats_ else 0} |")
    return "\n".join(lines) + "\n"


def plant(clean: Dataset, share: float, seed: int, mode: str) -> tuple[Dataset, np.ndarray]:
    """The dataset of one seed and its planted labels; share 0: the clean data, nothing planted."""
    if share == 0:
        return clean, np.zeros(len(clean.train), bool)
    try:
        return noise.plant_random_pairs(clean, share, seed, mode)
    except ValueError as err:
        raise ConfigError(f"--share/--mode: {err}") from err


def check_args(args: argparse.Namespace) -> tuple[list[str], str | None]:
    """Validates the flags before any training; returns (methods without duplicates, reference)."""
    if args.warm_start is not None:
        raise ConfigError("--warm-start was removed: the method name sets it (bpr / bpr-continued, "
                          "dvr-<reward> / dvr-<reward>:scratch)")  # fmt: skip
    if not 0.0 <= args.share < 1.0:
        raise ConfigError(f"--share must be in [0, 1), got {args.share!r}")
    methods = list(dict.fromkeys(args.methods))
    for method in methods:
        method_fields(method)
    if ORACLE in methods and args.share == 0:
        raise ConfigError(f"{ORACLE} drops the planted pairs: it needs --share above 0")
    parse_extra(args.extra)
    if args.reference is not None and args.reference not in methods:
        raise ConfigError(f"--reference {args.reference!r} is not among --methods")
    return methods, args.reference if args.reference is not None else default_reference(methods)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Plants, trains, scores every (seed, method) and writes the summary; returns summary.json's content."""
    methods, reference = check_args(args)
    clean_data = args.share == 0
    out = pathlib.Path(args.out) if args.out else default_out(args.dataset, args.mode, args.share)
    clean = load_dataset(args.dataset, args.data_dir, kcore=None, split_seed=2024)
    records = []
    warm = next((m for m in methods if method_fields(m)["warm_start"] == "auto"), None)
    for seed in args.seeds:
        dataset, planted = plant(clean, args.share, seed, args.mode)
        planting = {"share": args.share, "mode": None if clean_data else args.mode, "seed": seed,
                    "planted": int(planted.sum()), "source_hash": dataset.source_hash,
                    "clean_source_hash": clean.source_hash}  # fmt: skip
        for method in methods:
            if "bpr" in methods and warm is not None:
                share_bpr_run(run_config(args, "bpr", seed, out), run_config(args, warm, seed, out), dataset, planting)
            cfg, data = run_config(args, method, seed, out), dataset
            if method == ORACLE:
                cfg, data = oracle_run(cfg, dataset, planted)
            results = train_or_reuse(cfg, data, planting)  # scored below on all rows, the planted ones too
            records.append(score_run(cfg, method, dataset, planted, results))
    summary = summarize(records)
    paired = paired_summary(records, reference)
    seeds = " ".join(map(str, args.seeds))
    if clean_data:
        header = f"# clean data: {args.dataset}, seeds {seeds}\n\nNothing planted: detection metrics skipped."
    else:
        header = (f"# planted noise: {args.dataset}, mode {args.mode}, share {args.share:g}, seeds {seeds}\n\n"
                  f"AUC: higher score = real pair (0.5 chance). AP: detecting planted pairs (chance "
                  f"{np.mean([r['ap_chance'] for r in records]):.4f}).")  # fmt: skip
    if reference is not None:
        header += (f" Paired comparison against {reference}: two-sided paired t-test and Wilcoxon signed-rank "
                   "test; – where undefined (one seed, constant or all-zero differences).")  # fmt: skip
    markdown = summary_markdown(summary, paired, header)
    content = {"dataset": args.dataset, "share": args.share, "mode": None if clean_data else args.mode,
               "seeds": args.seeds, "methods_run": methods, "reference": reference,
               "clean_summary": clean.summary(), "methods": summary, "paired": paired}  # fmt: skip
    write_json(out / "summary.json", content)
    (out / "summary.md").write_text(markdown)
    print(markdown)
    return content


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; exit status 2 on bad input, 3 on a diverged run, 130 on Ctrl-C."""
    args = parser().parse_args(argv)
    try:
        from dvr_jax.loop import TrainingDiverged  # noqa: PLC0415

        try:
            run(args)
        except TrainingDiverged as err:
            print(f"error: {err}", file=sys.stderr)
            return 3
    except (ConfigError, CheckpointError, DataError, NoiseHarnessError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:  # a RunInterrupted names the run and its last completed epoch
        print(f"{err or 'interrupted'}; the same command continues the study", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
