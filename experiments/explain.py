"""Explain a DVR run: training pairs ranked by their data value, with item names.

    python experiments/explain.py RUN_DIR --user 2              # that user's pairs, best first
    python experiments/explain.py RUN_DIR --top 10              # the 10 most and 10 least valuable pairs
    python experiments/explain.py RUN_DIR --user 2 --histogram  # also <RUN_DIR>/plots/values.png

A pair's value is its mean Shapley value over every batch it was in during the run (higher:
the valuator judged it more useful for the reward); `prob` is its mean selection probability,
`visits` the batches it was in. Ids are the dataset's own (e.g. LastFM user and artist ids);
names come from the dataset's item file where it has one (`dvr_jax.explanations`); in a run of
the planted-noise harness the planted pairs are marked "[planted]". Exit
status 2 with one line when the run or the user cannot be explained.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from dvr_jax import explanations, plots
from dvr_jax.data import DataError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", help="a finished DVR run directory (holds pair_values.tsv)")
    p.add_argument("--user", help="a user id (the dataset's own): list that user's training pairs")
    p.add_argument("--top", type=int, default=10, help="pairs shown at each end of the overall ranking (default 10)")
    p.add_argument("--histogram", action="store_true", help="write <run_dir>/plots/values.png (needs matplotlib)")
    return p


def explain(argv: list[str] | None = None) -> str:
    """The text the command prints; raises ExplanationError / DataError on bad input."""
    args = parser().parse_args(argv)
    if args.top < 1:
        raise explanations.ExplanationError(f"--top must be >= 1, got {args.top}")
    values = explanations.read_pair_values(args.run_dir)
    dataset, data_dir = explanations.run_dataset(args.run_dir)
    names = explanations.item_names(dataset, data_dir)
    planted = explanations.planted_pairs(args.run_dir)
    visited = values.visits > 0
    head = (f"{args.run_dir}: {len(values.users)} training pairs of {dataset}, {int(visited.sum())} valued "
            f"(mean value {np.nanmean(values.value):.4g})")  # fmt: skip
    blocks = [head]
    if args.user is not None:
        rows = explanations.user_rows(values, args.user)
        title = f"user {args.user}: {len(rows)} pairs, best first"
        blocks.append(explanations.format_rows(values, rows, names, title, planted))
    else:
        best = explanations.ranked(values, np.flatnonzero(visited))[: args.top]
        worst = explanations.ranked(values, np.flatnonzero(visited), descending=False)[: args.top]
        blocks.append(explanations.format_rows(values, best, names, f"the {len(best)} most valuable pairs", planted))
        blocks.append(explanations.format_rows(values, worst, names, f"the {len(worst)} least valuable pairs", planted))
    if args.histogram:
        path = plots.write_value_histogram(values.value[visited], f"{args.run_dir}/plots/values.png", title=dataset)
        blocks.append(f"histogram: {path}")
    return "\n\n".join(blocks)


def main(argv: list[str] | None = None) -> int:
    try:
        print(explain(argv))
    except (explanations.ExplanationError, DataError, plots.PlotError, plots.PlotDependencyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
