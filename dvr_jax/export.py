"""Host-side writers for run outputs: atomic JSON/TSV files a person can read.

Every file is written to a temporary sibling and renamed into place, so a killed run never
leaves a half-written file behind.
"""

from __future__ import annotations

import io
import json
import pathlib
from collections.abc import Iterable
from typing import Any

import numpy as np

from dvr_jax.data.atomic import write_bytes_atomic
from dvr_jax.data.dataset import Dataset


def write_atomic(path: str | pathlib.Path, text: str) -> None:
    """Writes `text` to `path` atomically (temp file in the same directory + rename)."""
    write_bytes_atomic(path, text.encode())


def write_json(path: str | pathlib.Path, obj: Any) -> None:
    """Atomic, indented JSON."""
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_jsonl(path: str | pathlib.Path, records: Iterable[dict[str, Any]]) -> None:
    """Atomic JSON-lines file (rewritten whole, so resumed runs never duplicate lines)."""
    write_atomic(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))


def _tsv(header: str, columns: list[np.ndarray]) -> str:
    rows = ["\t".join(map(str, values)) for values in zip(*columns)]
    return header + "\n" + "".join(row + "\n" for row in rows)


def export_splits(dataset: Dataset, directory: str | pathlib.Path) -> None:
    """Writes train/valid/test as TSV `user item` with original ids."""
    for split in ("train", "valid", "test"):
        pairs = getattr(dataset, split)
        write_atomic(
            pathlib.Path(directory) / f"{split}.tsv",
            _tsv("user\titem", [dataset.user_ids[pairs[:, 0]], dataset.item_ids[pairs[:, 1]]]),
        )


def export_topk(
    dataset: Dataset, users: np.ndarray, items: np.ndarray, scores: np.ndarray, path: str | pathlib.Path
) -> None:
    """Writes top-K lists as TSV `user item rank score` with original ids (rank from 1).

    Args:
      dataset: for the id mappings.
      users: int[n] internal user ids.
      items: int[n, K] internal item ids, best first.
      scores: float[n, K].
      path: output file.
    """
    n, k = items.shape
    write_atomic(
        path,
        _tsv(
            "user\titem\trank\tscore",
            [
                dataset.user_ids[np.repeat(users, k)],
                dataset.item_ids[items.reshape(-1)],
                np.tile(np.arange(1, k + 1), n),
                [f"{s:.6g}" for s in scores.reshape(-1)],
            ],
        ),
    )


def export_data_values(dataset: Dataset, per_sample: dict[str, np.ndarray], path: str | pathlib.Path) -> None:
    """Writes one epoch's per-sample data values as TSV with original ids.

    Columns: `step user pos_item neg_item shapley prob selected influence` (step within the
    epoch; influence: the triplet's first-order influence on the validation loss).

    Args:
      dataset: for the id mappings.
      per_sample: arrays [steps, B] keyed users, pos_items, neg_items, shapley, probs, mask.
      path: output file.
    """
    steps, batch = per_sample["users"].shape
    write_atomic(
        path,
        _tsv(
            "step\tuser\tpos_item\tneg_item\tshapley\tprob\tselected\tinfluence",
            [
                np.repeat(np.arange(steps), batch),
                dataset.user_ids[per_sample["users"].reshape(-1)],
                dataset.item_ids[per_sample["pos_items"].reshape(-1)],
                dataset.item_ids[per_sample["neg_items"].reshape(-1)],
                [f"{v:.6g}" for v in per_sample["shapley"].reshape(-1)],
                [f"{v:.6g}" for v in per_sample["probs"].reshape(-1)],
                per_sample["mask"].reshape(-1).astype(int),
                [f"{v:.6g}" for v in per_sample["influence"].reshape(-1)],
            ],
        ),
    )


def export_pair_values(dataset: Dataset, train, pairs, path: str | pathlib.Path) -> None:
    """Writes each training pair's mean value over the run as `pair_values.npz` and `.tsv`.

    Arrays (aligned, one row per training pair in (user, item) order): `users`, `items`
    (internal ids), `value` (mean Shapley value over the pair's visits), `prob` (mean
    selection probability), `influence` (mean first-order validation influence) and
    `visits` (batches the pair was in; means are NaN where it is 0). The TSV beside it
    has the same columns with the dataset's original ids.

    Args:
      dataset: for the id mappings.
      train: `sampler.TrainArrays` of the run (the pair order).
      pairs: host copy of the run's `dvr.PairValues`.
      path: the `.npz` file to write.
    """
    visits = np.asarray(pairs.visits, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = {name: np.where(visits > 0, np.asarray(getattr(pairs, name), np.float64) / visits, np.nan)
                 for name in ("value", "prob", "influence")}  # fmt: skip
    users, items = np.asarray(train.users), np.asarray(train.items)
    arrays = {"users": users, "items": items, **means, "visits": visits.astype(np.int64)}
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path = pathlib.Path(path)
    write_bytes_atomic(path, buffer.getvalue())
    write_atomic(
        path.with_suffix(".tsv"),
        _tsv(
            "user\titem\tvisits\tvalue\tprob\tinfluence",
            [dataset.user_ids[users], dataset.item_ids[items], arrays["visits"],
             *([f"{v:.6g}" for v in means[name]] for name in ("value", "prob", "influence"))],
        ),
    )  # fmt: skip
