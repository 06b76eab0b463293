"""Paired comparison of runs from different planted-noise studies: the same seeds, the same data.

    python experiments/compare.py runs/noise/lastfm-add0.1-ub/dvr-loss runs/diag/lastfm-add0.1-b500/bpr-continued \\
        --reference runs/noise/lastfm-add0.1/bpr-continued

`experiments/noise.py` compares the methods of one study; a control that needs other settings
(another batch size, another DVR option) runs as its own study. Each argument here is
`<study out>/<method>`: the runs `<study out>/<method>-s<seed>/` of a study. Every run is paired
with the reference's run of the same seed, over the seeds both finished, and only when the
two trained on the same data (the `source_hash` of their `planting.json`; a mismatch is an
error, since a per-seed pairing of different planted draws means nothing).

Prints (and with `--out` writes) a markdown table: test Recall@20 / NDCG@20 and validation
Recall@20 in %, mean ± std over seeds (population, ddof = 0), and each metric's paired
difference from the reference with the t-test and Wilcoxon p-values
(`dvr_jax.noise.paired_comparison`). A run set (or reference) that read the test split in
training or model selection (its `results.json` lists `leaky` ingredients) is named with
"[test-leaky]", and a line under the table says what leaked.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from dvr_jax.config import ConfigError
from dvr_jax.noise import format_paired
from experiments import noise

METRICS = noise.PAIRED_METRICS


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="<study out>/<method>, e.g. runs/noise/lastfm-add0.1/dvr-loss")
    p.add_argument("--reference", required=True, help="<study out>/<method> every run is paired with")
    p.add_argument("--out", help="also write the table to this markdown file")
    return p


def load_runs(spec: str) -> dict[int, dict[str, Any]]:
    """{seed: {"results": results.json, "source_hash": str | None}} of a `<study out>/<method>` spec.

    Raises:
      ConfigError: no finished run (`<method>-s<seed>/results.json`) under the study folder.
    """
    study, method = pathlib.Path(spec).parent, pathlib.Path(spec).name
    pattern = re.compile(re.escape(method) + r"-s(\d+)")
    runs = {}
    for workdir in sorted(study.glob(f"{method}-s*")):
        match = pattern.fullmatch(workdir.name)
        if not match or not (workdir / "results.json").exists():
            continue
        planting = workdir / "planting.json"
        source = json.loads(planting.read_text()).get("source_hash") if planting.exists() else None
        runs[int(match.group(1))] = {"results": json.loads((workdir / "results.json").read_text()),
                                     "source_hash": source}  # fmt: skip
    if not runs:
        raise ConfigError(f"{spec}: no finished run {study}/{method}-s<seed>/results.json")
    return runs


def compare(runs: dict[int, dict[str, Any]], reference: dict[int, dict[str, Any]], name: str) -> dict[str, Any]:
    """Mean ± std of each metric and its paired comparison with `reference` over the common seeds.

    The pairing is the harness's own (`noise.paired_summary`), on records of the two studies.

    Raises:
      ConfigError: a common seed whose two runs trained on different data, or no common seed.
    """
    seeds = sorted(set(runs) & set(reference))
    if not seeds:
        raise ConfigError(f"{name}: no seed in common with the reference")
    for seed in seeds:
        if runs[seed]["source_hash"] != reference[seed]["source_hash"]:
            raise ConfigError(f"{name}: seed {seed} trained on other data than the reference's (source_hash of "
                              "planting.json differs)")  # fmt: skip
    records = [{**cells[s]["results"], "method": method, "seed": s}
               for method, cells in (("run", runs), ("reference", reference)) for s in seeds]  # fmt: skip
    paired = noise.paired_summary(records, "reference")["run"]["metrics"]
    out: dict[str, Any] = {"seeds": seeds, "leaky": leaky(runs), "metrics": {}}
    for split, metric in METRICS:
        values = [runs[s]["results"][split][metric] for s in seeds]
        out["metrics"][f"{split}/{metric}"] = {"mean": float(np.mean(values)), "std": float(np.std(values)),
                                               **paired[f"{split}/{metric}"]}  # fmt: skip
    return out


def leaky(runs: dict[int, dict[str, Any]]) -> list[str]:
    """The test-leaky ingredients of any of the runs (`results.json`'s `leaky`); [] for honest runs."""
    return sorted({ingredient for cell in runs.values() for ingredient in cell["results"].get("leaky") or []})


def table(rows: dict[str, dict[str, Any]], reference: str, reference_leaky: Sequence[str] = ()) -> str:
    """The markdown table of `compare` results, in points (%); leaky run sets are named so."""
    header = ["run", "seeds"] + [f"{s} {m}" for s, m in METRICS] + [f"Δ {s} {m} (t p, W p)" for s, m in METRICS]
    named = noise.leaky_name(reference, reference_leaky)
    lines = [f"Paired against {named} (same seeds, same data); metrics in %.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]  # fmt: skip
    for name, row in rows.items():
        cells = [noise.leaky_name(name, row["leaky"]), " ".join(str(s) for s in row["seeds"])]
        stats = [row["metrics"][f"{s}/{m}"] for s, m in METRICS]
        cells += [f"{100 * st['mean']:.2f} ± {100 * st['std']:.2f}" for st in stats]
        cells += [format_paired(st).replace("-", "−") for st in stats]
        lines.append("| " + " | ".join(cells) + " |")
    leaks = {name: row["leaky"] for name, row in rows.items() if row["leaky"]}
    if reference_leaky:
        leaks[reference] = list(reference_leaky)
    if leaks:
        lines += ["", noise.leaky_line(leaks)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        reference = load_runs(args.reference)
        rows = {spec: compare(load_runs(spec), reference, spec) for spec in args.runs}
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    text = table(rows, args.reference, leaky(reference))
    print(text, end="")
    if args.out:
        path = pathlib.Path(args.out)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
