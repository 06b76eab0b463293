"""Removal curves: drop the lowest-valued training pairs by each scorer, retrain BPR, plot the metric.

    python experiments/removal.py --from runs/noise/ml-100k-add0.1 --dvr dvr-loss --seeds 0 1 2 \\
        --shares 0 0.05 0.1 0.2 0.3 --extra valid_interval=5 patience=3

The standard data-valuation experiment. It reads a finished planted-noise study (`--from`, the
`--out` of `experiments/noise.py`, which holds for every seed a BPR run `bpr-s<seed>` and a DVR
run such as `dvr-loss-s<seed>`), rebuilds each seed's training data exactly as the study did
(the same planted pairs; `--share 0` studies: the clean data), and scores every training pair:

  dvr_value   the DVR run's mean Shapley value of the pair (`--dvr` names the run),
  influence   the DVR run's mean one-step influence on the validation loss,
  model_score s_ui of the BPR run's validation-selected model,
  random      seeded uniform scores.

For each scorer and share it removes the lowest-scored share of the training pairs
(`dvr_jax.noise.remove_lowest`: never a user's last pair), trains BPR from scratch on the rest
with the study's own settings (its `bpr-s<seed>/config.json`, then `--extra`), and records
validation and test Recall@20 / NDCG@20 (test on the real test pairs, read once per run). Share
0 is one run per seed, shared by every scorer. If removing a scorer's lowest pairs holds or lifts
the metric while random removal lowers it, the scorer's values carry information.

Outputs in `--out` (default `<from>/removal`): one run directory per (scorer, share, seed)
(finished runs are reused), `removal.csv` (scorer, share, seed, removed, planted_removed,
valid/test metrics), `removal.md` (mean ± std over seeds; the change of test Recall@20 from 0 % removed, paired per
seed, with its t-test p and the planted share of the removed pairs) and, with matplotlib, `removal.png`.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import pathlib
import sys
from typing import Any

import numpy as np

from dvr_jax import noise
from dvr_jax.checkpoint import CheckpointError
from dvr_jax.config import ConfigError, config_from_saved
from dvr_jax.data import DataError, load_dataset
from dvr_jax.export import write_atomic
from dvr_jax.progress import GridProgress
from experiments import noise as study

SCORERS = ("dvr_value", "influence", "model_score", "random")
METRICS = ("recall@20", "ndcg@20")
COLUMNS = ("scorer", "share", "seed", "removed", "planted_removed",
           *(f"{split}_{m}" for split in ("valid", "test") for m in METRICS))  # fmt: skip


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--from", dest="source", required=True, help="a finished experiments/noise.py output folder")
    p.add_argument(
        "--dvr", default="dvr-loss", help="the DVR run of the study whose values are used (default dvr-loss)"
    )
    p.add_argument("--scorers", nargs="+", default=list(SCORERS), choices=SCORERS)
    p.add_argument("--shares", nargs="+", type=float, default=[0.0, 0.05, 0.1, 0.2, 0.3])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--extra", nargs="*", default=[], metavar="NAME=VALUE", help="further settings of the BPR runs")
    p.add_argument("--out", help="output folder (default <from>/removal)")
    return p


def study_settings(source: pathlib.Path) -> dict[str, Any]:
    """The study's dataset, planting and data dir, from its summary.json."""
    path = source / "summary.json"
    try:
        summary = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"--from: cannot read {path} ({err}); run experiments/noise.py first") from err
    return {"dataset": summary["dataset"], "share": summary["share"], "mode": summary["mode"] or "add"}


def seed_scores(source: pathlib.Path, dvr: str, dataset, planted: np.ndarray, seed: int, scorers) -> dict:
    """Every requested scorer's per-pair scores for one seed of the study."""
    bpr_dir = source / f"bpr-s{seed}"
    bpr_cfg = _saved_config(bpr_dir)
    scores: dict[str, np.ndarray] = {}
    if "model_score" in scorers:
        scores["model_score"] = study.backbone_scores(bpr_cfg, dataset, seed)["model_score"]
    if {"dvr_value", "influence"} & set(scorers):
        values = study.pair_value_scores(source / f"{dvr}-s{seed}", dataset, influence="influence" in scorers)
        scores.update({name: values[name] for name in ("dvr_value", "influence") if name in scorers})
    if "random" in scorers:
        scores["random"] = np.random.default_rng([seed, 11]).random(len(planted))
    return scores


def _saved_config(run_dir: pathlib.Path):
    path = run_dir / "config.json"
    try:
        saved = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"cannot read {path} ({err}): the study has no such run") from err
    return config_from_saved(saved)


def train_reduced(base_cfg, dataset, out: pathlib.Path, extra: dict[str, Any]) -> dict[str, Any]:
    """BPR from scratch on `dataset` into `out` (reused when finished on the same pairs); its results.

    `<out>/kept.json` records a hash of the kept training pairs, so a finished run is reused only
    when the same pairs were removed (a study whose values changed retrains, or says so).

    Raises:
      ConfigError: `out` holds a finished run on other kept pairs, or one without `kept.json`.
    """
    kept_hash = hashlib.sha256(np.ascontiguousarray(dataset.train, np.int32).tobytes()).hexdigest()
    if (out / "results.json").exists():
        try:
            saved = json.loads((out / "kept.json").read_text())["train_hash"]
        except (OSError, json.JSONDecodeError, KeyError):
            saved = None
        if saved != kept_hash:
            raise ConfigError(f"{out} holds a run on other training pairs (or an unrecorded set); "
                              "delete it or choose another --out")  # fmt: skip
        return json.loads((out / "results.json").read_text())
    from dvr_jax.loop import train_and_evaluate  # noqa: PLC0415  (JAX only when training)

    cfg = base_cfg.replace(out=str(out), warm_start="none", resume=False, overwrite=True, progress=False,
                           plots=False, **extra)  # fmt: skip
    results = train_and_evaluate(cfg, dataset=dataset, report=False)
    write_atomic(out / "kept.json", json.dumps({"train_hash": kept_hash}))
    return results


def _recalls(rows: list[dict[str, Any]], scorer: str, share: float, split: str) -> list[float]:
    """Recall@20 of `split` over the seeds of one (scorer, share); 0 % removed is the shared "none" run."""
    return [r[f"{split}_recall@20"] for r in rows if r["share"] == share and r["scorer"] in (scorer, "none")]


def summary_markdown(rows: list[dict[str, Any]], scorers, shares) -> str:
    """Mean ± std over seeds of test and validation Recall@20 per (scorer, share), in %."""
    lines = ["| scorer | " + " | ".join(f"{100 * s:g}% removed" for s in shares) + " |",
             "|---|" + "---|" * len(shares)]  # fmt: skip
    for split in ("test", "valid"):
        for scorer in scorers:
            cells = []
            for share in shares:
                got = _recalls(rows, scorer, share, split)
                cells.append(f"{100 * np.mean(got):.2f} ± {100 * np.std(got):.2f}" if got else "–")
            lines.append(f"| {scorer} ({split} Recall@20) | " + " | ".join(cells) + " |")
    for scorer in scorers:  # change from 0 % removed, paired per seed (t-test p), and planted share removed
        cells = []
        for share in shares:
            cells.append(_paired_cell(rows, scorer, share) if share > 0 else "–")
        lines.append(f"| {scorer} (Δ test Recall@20 (p); planted among removed) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _paired_cell(rows: list[dict[str, Any]], scorer: str, share: float) -> str:
    """Δ test Recall@20 in points against the same seeds' 0 % run (t-test p), and the planted share removed."""
    base = {r["seed"]: r["test_recall@20"] for r in rows if r["share"] == 0}
    cell = [r for r in rows if r["scorer"] == scorer and r["share"] == share and r["seed"] in base]
    if not cell:
        return "–"
    stats = noise.paired_comparison([r["test_recall@20"] for r in cell], [base[r["seed"]] for r in cell])
    p = noise.format_pvalue(stats["t_pvalue"])
    planted = np.mean([r["planted_removed"] / r["removed"] for r in cell])
    return f"{100 * stats['mean_difference']:+.2f} ({p}); {100 * planted:.0f} %"


def draw(rows: list[dict[str, Any]], scorers, shares, path: pathlib.Path, title: str) -> bool:
    """removal.png: test and validation Recall@20 against the removed share (False without matplotlib)."""
    from dvr_jax import plots  # noqa: PLC0415

    try:
        fig = plots.new_figure((2 * plots.PANEL_INCHES[0], plots.PANEL_INCHES[1]))
    except plots.PlotDependencyError:
        return False
    for ax, split in zip(fig.subplots(1, 2), ("test", "valid"), strict=True):
        for scorer in scorers:
            means, stds = [], []
            for share in shares:
                got = _recalls(rows, scorer, share, split)
                means.append(100 * np.mean(got))
                stds.append(100 * np.std(got))
            ax.errorbar([100 * s for s in shares], means, yerr=stds, marker="o", capsize=3, label=scorer)
        ax.set(title=f"{split} Recall@20", xlabel="lowest-scored training pairs removed (%)", ylabel="Recall@20 (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle(title)
    plots.save_png(fig, path)
    return True


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    source = pathlib.Path(args.source)
    settings = study_settings(source)
    out = pathlib.Path(args.out) if args.out else source / "removal"
    shares = sorted(set(args.shares))
    if any(not 0.0 <= s < 1.0 for s in shares):
        raise ConfigError(f"--shares must be in [0, 1), got {shares}")
    extra = study.parse_extra(args.extra)
    rows = []
    cells = len(args.seeds) * ((0.0 in shares) + len(args.scorers) * len([s for s in shares if s > 0]))
    with GridProgress(cells, label="removal runs") as progress:
        for seed in args.seeds:
            base_cfg = _saved_config(source / f"bpr-s{seed}")
            clean = load_dataset(settings["dataset"], base_cfg.data_dir, kcore=None, split_seed=base_cfg.split_seed)
            dataset, planted = study.plant(clean, settings["share"], seed, settings["mode"])
            scores = seed_scores(source, args.dvr, dataset, planted, seed, args.scorers)
            for share in shares:
                for scorer in ["none"] if share == 0 else args.scorers:
                    kept, removed = noise.remove_lowest(dataset, scores.get(scorer, np.zeros(len(planted))), share,
                                                        tag=f"{args.dvr}:{scorer}")  # fmt: skip
                    run_dir = out / f"{scorer}-{share:g}-s{seed}"
                    results = train_reduced(base_cfg, kept, run_dir, extra)
                    rows.append({"scorer": scorer, "share": share, "seed": seed, "removed": int(removed.sum()),
                                 "planted_removed": int((removed & planted).sum()),
                                 **{f"{split}_{m}": results[split][m] for split in ("valid", "test")
                                    for m in METRICS}})  # fmt: skip
                    progress.advance(run_dir.name)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(out / "removal.csv", buffer.getvalue())
    header = (f"# removal curves: {settings['dataset']}, planted share {settings['share']:g}, DVR values of "
              f"{args.dvr}, seeds {' '.join(map(str, args.seeds))}\n\nBPR retrained from scratch on what is left; "
              "mean ± std over seeds, in %; 0% removed is one run per seed shared by every scorer.\n\n")  # fmt: skip
    markdown = header + summary_markdown(rows, args.scorers, shares)
    write_atomic(out / "removal.md", markdown)
    draw(rows, args.scorers, shares, out / "removal.png", f"{settings['dataset']}: removal curves")
    print(markdown)
    return rows


def main(argv: list[str] | None = None) -> int:
    try:
        run(parser().parse_args(argv))
    except (ConfigError, DataError, CheckpointError, study.NoiseHarnessError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
