"""Regenerates the paper's Tables 2-4 and Figure 2 on the datasets we have.

    python experiments/reproduce.py table2   [--seeds 0 1 2] [--datasets lastfm ml-100k] [--backbones mf] [run flags...]
    python experiments/reproduce.py table3   # diversity: BPR vs DVR-CC vs DVR-ILD (ml-100k genres)
    python experiments/reproduce.py table4   # fairness: BPR vs DVR-Gini (lastfm)
    python experiments/reproduce.py figure2  # cos(Shapley, -loss) per 2-epoch window, DVR-Loss

The paper's Beauty and CD files are not available here, so Table 3 uses MovieLens-100K's
genres as item categories and Tables 2/4 use LastFM and MovieLens-100K (Gowalla with
`--datasets gowalla` when the compute allows). Every cell is a full run (validation-selected
checkpoint, test scored once), reported as mean ± std over seeds; finished runs are reused.
Extra flags (e.g. `--epochs 200`) are passed to every run.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np

from experiments import tables

BASELINES = ["bpr", "aobpr", "wbpr", "pris", "tce", "rce", "til-ui", "til-mi"]
GRIDS = {
    "table2": dict(datasets=["lastfm", "ml-100k"], backbones=["mf", "neumf", "mgcf", "lightgcn"],
                   methods=BASELINES + ["dvr"], rewards=["loss", "recall", "ndcg"], metrics=["recall@20", "ndcg@20"]),
    "table3": dict(datasets=["ml-100k"], backbones=["mf", "mgcf"], methods=["bpr", "dvr"], rewards=["cc", "ild"],
                   metrics=["recall@20", "ndcg@20", "cc@20", "ild@20"]),
    "table4": dict(datasets=["lastfm"], backbones=["mf", "lightgcn"], methods=["bpr", "dvr"], rewards=["gini"],
                   metrics=["recall@20", "ndcg@20", "gini@20"]),
}  # fmt: skip


def figure2(out: pathlib.Path, datasets: list[str], seeds: list[int], passthrough: list[str]) -> int:
    """Runs DVR-Loss and writes the per-2-epoch mean of cos(phi, -l) (mean ± std over seeds)."""
    code = tables.main(["--datasets", *datasets, "--methods", "dvr", "--rewards", "loss",
                        "--seeds", *map(str, seeds), "--out", str(out), *passthrough])  # fmt: skip
    if code:
        return code
    lines = ["dataset\twindow_end_epoch\tcosine_mean\tcosine_std"]
    for dataset in datasets:
        series = []
        for seed in seeds:
            log = (out / f"{dataset}-mf-dvr-loss-s{seed}" / "train_log.jsonl").read_text().splitlines()
            cosines = np.array([json.loads(line)["cosine"] for line in log])
            n = len(cosines) // 2 * 2
            series.append(cosines[:n].reshape(-1, 2).mean(1))
        length = min(map(len, series))
        stacked = np.stack([s[:length] for s in series])
        for window in range(length):
            lines.append(
                f"{dataset}\t{2 * (window + 1)}\t{stacked[:, window].mean():.4f}\t{stacked[:, window].std():.4f}"
            )
    (out / "figure2.tsv").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: wrote figure2.tsv only", file=sys.stderr)
        return 0
    rows = [line.split("\t") for line in lines[1:]]
    for dataset in datasets:
        points = [(int(r[1]), float(r[2])) for r in rows if r[0] == dataset]
        plt.plot(*zip(*points), label=dataset)
    plt.xlabel("epoch")
    plt.ylabel("cos(Shapley, -BPR loss)")
    plt.legend()
    plt.savefig(out / "figure2.png", dpi=120)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("target", choices=[*GRIDS, "figure2"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--datasets", nargs="+")
    p.add_argument("--backbones", nargs="+", help="a subset of the table's backbones (default: all of them)")
    p.add_argument("--out")
    args, passthrough = p.parse_known_args(argv)
    out = pathlib.Path(args.out or f"runs/paper/{args.target}")
    if args.target == "figure2":
        return figure2(out, args.datasets or ["lastfm", "ml-100k"], args.seeds, passthrough)
    grid = GRIDS[args.target]
    datasets = args.datasets or grid["datasets"]
    return tables.main([
        "--datasets", *datasets, "--backbones", *(args.backbones or grid["backbones"]), "--methods", *grid["methods"],
        "--rewards", *grid["rewards"], "--metrics", *grid["metrics"], "--seeds", *map(str, args.seeds),
        "--out", str(out), *passthrough,
    ])  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
