"""Runs a grid of (dataset, backbone, method, reward, seed) and prints a results table.

    python experiments/tables.py --datasets lastfm ml-100k --backbones mf lightgcn \\
        --methods pop bpr --seeds 0 1 2 --out runs/tables/table2
    python experiments/tables.py --budget smoke --methods bpr dvr   # minutes on a CPU

`bpr-continued` is BPR warm-started from the same BPR checkpoint DVR starts from and trained
for the same budget (the control of docs/algorithm.md §10). Each cell is one `experiments/run.py`
run (validation-selected checkpoint, test scored once)
written to `<out>/<dataset>-<backbone>-<method>-<reward>-s<seed>/`; finished runs are
reused, so an interrupted table resumes. The table reports test metrics as mean ± std over
seeds (population std, ddof = 0) — a run that read the test split (`--config authors`, `--select-split
test`) is a row of its own, named "[test-leaky]" — and for every method a paired comparison with `--reference`
(default bpr) of the same dataset and backbone on the same seeds: the mean difference in points,
the paired t-test and the Wilcoxon signed-rank p-values (`dvr_jax.noise.paired_comparison`; "–"
where undefined, e.g. one seed). It is written to `<out>/table.md`, the numbers per seed to
`<out>/table.json`.

`--budget` sets the training budget and the default seeds: `smoke` (the `smoke` preset: 4
epochs; seeds 0 1), `cpu` (at most 300 epochs, validation every 5, patience 3; seeds 0 1 2),
`full` (the `paper` preset: 2000 epochs; seeds 0 1 2 3 4). `--seeds` and any run flag given
after it override the budget's.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np

from dvr_jax.noise import format_paired, paired_comparison
from dvr_jax.progress import GridProgress
from experiments import run

BUDGETS = {
    "smoke": (["--config", "smoke"], [0, 1]),
    "cpu": (["--epochs", "300", "--valid-interval", "5", "--patience", "3"], [0, 1, 2]),
    "full": (["--config", "paper"], [0, 1, 2, 3, 4]),
}


def _cell(values: list[float]) -> str:
    return f"{100 * np.mean(values):.2f} ± {100 * np.std(values):.2f}"


def paired_rows(cells: dict, metrics: list[str], reference: str) -> dict:
    """{(dataset, backbone, name): {metric: paired stats vs the reference's row, or None}}.

    `cells` maps (dataset, backbone, name) to {seed: test metrics}; the comparison uses the
    seeds both rows ran, and is None for the reference itself or where it did not run.
    """
    out = {}
    for (dataset, backbone, name), runs in cells.items():
        ref = cells.get((dataset, backbone, reference))
        seeds = sorted(set(runs) & set(ref)) if ref is not None and name != reference else []
        out[(dataset, backbone, name)] = {
            metric: paired_comparison([runs[s][metric] for s in seeds], [ref[s][metric] for s in seeds])
            if seeds else None
            for metric in metrics
        }  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", default=["lastfm", "ml-100k"])
    p.add_argument("--backbones", nargs="+", default=["mf"])
    p.add_argument("--methods", nargs="+", default=["bpr"])
    p.add_argument("--rewards", nargs="+", default=["recall"], help="DVR rewards (ignored by other methods)")
    p.add_argument("--seeds", nargs="+", type=int, help="default: the budget's, else 0 1 2")
    p.add_argument("--metrics", nargs="+", default=["recall@20", "ndcg@20"])
    p.add_argument("--budget", choices=sorted(BUDGETS), help="training budget and default seeds (see above)")
    p.add_argument("--reference", default="bpr", help="the method every other is compared with, paired by seed")
    p.add_argument("--out", default="runs/tables/default")
    args, passthrough = p.parse_known_args(argv)  # remaining flags go to every run (e.g. --epochs)
    budget_flags, budget_seeds = BUDGETS[args.budget] if args.budget else ([], [0, 1, 2])
    seeds = args.seeds if args.seeds is not None else budget_seeds
    passthrough = [*budget_flags, *passthrough]  # flags given later win

    out = pathlib.Path(args.out)
    cells: dict[tuple[str, str, str], dict[int, dict]] = {}
    groups = [(dataset, backbone, method, reward) for dataset in args.datasets for backbone in args.backbones
              for method in args.methods for reward in (args.rewards if method == "dvr" else ["recall"])]  # fmt: skip
    with GridProgress(len(groups) * len(seeds), label="table runs") as progress:
        for dataset, backbone, method, reward in groups:
            name = f"dvr-{reward}" if method == "dvr" else method
            for seed in seeds:
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
                results = json.loads((workdir / "results.json").read_text())
                row = f"{name} [test-leaky]" if results.get("leaky") else name  # leaky runs: a row of their own
                cells.setdefault((dataset, backbone, row), {})[seed] = results["test"]
                progress.advance(workdir.name)
    paired = paired_rows(cells, args.metrics, args.reference)
    header = ("| dataset | backbone | method | " + " | ".join(args.metrics) + " | "
              + " | ".join(f"Δ {m} vs {args.reference} (t p, W p)" for m in args.metrics) + " |")  # fmt: skip
    rule = "|" + "---|" * (3 + 2 * len(args.metrics))
    rows = []
    for (dataset, backbone, name), runs in cells.items():
        means = [_cell([r[m] for r in runs.values()]) for m in args.metrics]
        deltas = [format_paired(paired[(dataset, backbone, name)][m]) for m in args.metrics]
        rows.append(f"| {dataset} | {backbone} | {name} | " + " | ".join(means + deltas) + " |")
    command = "python experiments/tables.py " + " ".join(sys.argv[1:] if argv is None else argv)
    table = "\n".join([header, rule, *rows])
    note = (f"\nTest metrics in %, mean ± std over seeds {seeds}; Δ: mean paired difference in points, "
            f"two-sided paired t-test and Wilcoxon signed-rank p; command: `{command}`\n")  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(table + "\n" + note)
    record = {"seeds": seeds, "metrics": args.metrics, "reference": args.reference, "budget": args.budget,
              "rows": [{"dataset": d, "backbone": b, "method": n, "test": {str(s): r for s, r in runs.items()},
                        "paired": paired[(d, b, n)]} for (d, b, n), runs in cells.items()]}  # fmt: skip
    (out / "table.json").write_text(json.dumps(record, indent=2) + "\n")
    print(table + "\n" + note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
