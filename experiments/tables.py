"""Runs a grid of (dataset, backbone, method, reward, seed) and prints a results table.

    python experiments/tables.py --datasets lastfm ml-100k --backbones mf lightgcn \\
        --methods pop bpr --seeds 0 1 2 --out runs/tables/table2

`bpr-continued` is BPR warm-started from the same BPR checkpoint DVR starts from and trained
for the same budget (the control of docs/algorithm.md §10). Each cell is one `experiments/run.py`
run (validation-selected checkpoint, test scored once)
written to `<out>/<dataset>-<backbone>-<method>-<reward>-s<seed>/`; finished runs are
reused, so an interrupted table resumes. The table reports test metrics as mean ± std over
seeds (population std, ddof = 0) and is also written to `<out>/table.md`.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np

from dvr_jax.progress import GridProgress
from experiments import run


def _cell(values: list[float]) -> str:
    return f"{100 * np.mean(values):.2f} ± {100 * np.std(values):.2f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", default=["lastfm", "ml-100k"])
    p.add_argument("--backbones", nargs="+", default=["mf"])
    p.add_argument("--methods", nargs="+", default=["bpr"])
    p.add_argument("--rewards", nargs="+", default=["recall"], help="DVR rewards (ignored by other methods)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--metrics", nargs="+", default=["recall@20", "ndcg@20"])
    p.add_argument("--out", default="runs/tables/default")
    args, passthrough = p.parse_known_args(argv)  # remaining flags go to every run (e.g. --epochs)

    out = pathlib.Path(args.out)
    rows = []
    groups = [(dataset, backbone, method, reward) for dataset in args.datasets for backbone in args.backbones
              for method in args.methods for reward in (args.rewards if method == "dvr" else ["recall"])]  # fmt: skip
    with GridProgress(len(groups) * len(args.seeds), label="table runs") as progress:
        for dataset, backbone, method, reward in groups:
            per_seed = []
            for seed in args.seeds:
                workdir = out / f"{dataset}-{backbone}-{method}-{reward}-s{seed}"
                if not (workdir / "results.json").exists():
                    cli_method = ["bpr", "--warm-start", "auto"] if method == "bpr-continued" else [method]
                    code = run.main([
                        "--dataset", dataset, "--backbone", backbone, "--method", *cli_method,
                        "--reward", reward, "--seed", str(seed), "--out", str(workdir),
                        "--overwrite", "--no-progress", *passthrough,
                    ])  # fmt: skip
                    if code != 0:
                        return code
                per_seed.append(json.loads((workdir / "results.json").read_text())["test"])
                progress.advance(workdir.name)
            name = f"dvr-{reward}" if method == "dvr" else method
            cells = [_cell([r[m] for r in per_seed]) for m in args.metrics]
            rows.append(f"| {dataset} | {backbone} | {name} | " + " | ".join(cells) + " |")
    header = "| dataset | backbone | method | " + " | ".join(args.metrics) + " |"
    rule = "|" + "---|" * (3 + len(args.metrics))
    command = "python experiments/tables.py " + " ".join(sys.argv[1:] if argv is None else argv)
    table = "\n".join([header, rule, *rows])
    note = f"\nTest metrics in %, mean ± std over seeds {args.seeds}; command: `{command}`\n"
    (out / "table.md").write_text(table + "\n" + note)
    print(table + "\n" + note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
