"""Command-line entry point: `python experiments/plot.py RUN_DIR [RUN_DIR ...]`.

Draws the training curves of existing run directories (see `dvr_jax.plots`) and prints the
written paths, one a line. By default each run's PNG goes to `<RUN_DIR>/plots/curves.png`;
with `--out DIR` it goes to `DIR/<name>/curves.png`, where `<name>` is the shortest tail of the
run's path that tells the given runs apart (`dvr-loss-s0`, or `ml-100k-add0.1/dvr-loss-s0` when
two datasets have that run). Every run is read and checked before anything is written; bad input
(a missing directory, no metrics.jsonl, a malformed line, an unknown metric, matplotlib not
installed) ends with one line `error: ...` on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

from dvr_jax.plots import (
    DEFAULT_METRICS,
    PLOTS_DIR,
    PlotDependencyError,
    PlotError,
    plan_panels,
    read_run,
    write_plots,
)


def parser() -> argparse.ArgumentParser:
    """The CLI flags."""
    p = argparse.ArgumentParser(description="Plot the training curves of run directories.")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories holding metrics.jsonl")
    p.add_argument("--out", help="write DIR/<run name>/curves.png instead of RUN_DIR/plots/curves.png")
    p.add_argument("--metrics", nargs="+", default=list(DEFAULT_METRICS),
                   help=f"validation metrics to draw (default: {' '.join(DEFAULT_METRICS)})")  # fmt: skip
    return p


def out_dirs(runs: list[pathlib.Path], out: str | None) -> list[pathlib.Path]:
    """Each run's output folder: `<run>/plots`, or `out/<shortest distinguishing path tail>`."""
    if out is None:
        return [run / PLOTS_DIR for run in runs]
    parts = [run.resolve().parts[1:] for run in runs]  # without the root, so tails stay relative
    for depth in range(1, max(len(p) for p in parts) + 1):
        tails = [pathlib.Path(*p[-depth:]) for p in parts]
        if len(set(tails)) == len(tails):
            return [pathlib.Path(out) / tail for tail in tails]
    raise PlotError("the same run directory is given twice")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    runs = list(dict.fromkeys(pathlib.Path(r) for r in args.runs))
    try:
        curves = [read_run(run) for run in runs]
        for c in curves:
            plan_panels(c, args.metrics)  # a missing metric fails before anything is written
        for c, out in zip(curves, out_dirs(runs, args.out)):
            for path in write_plots(c, out, args.metrics):
                print(path)
    except (PlotError, PlotDependencyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
