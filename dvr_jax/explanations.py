"""Explanations a person reads: a DVR run's training pairs ranked by their data value, with names.

A DVR run writes every training pair's mean value over the run (`pair_values.tsv`, original
ids; `dvr_jax.export.export_pair_values`). This module reads it back, finds display names for
the items where the dataset ships them (LastFM artist names from `artists.dat`, titles or names
from a RecBole `.item` file such as MovieLens-100K's `movie_title`), and ranks pairs: one user's
interactions, or the most and least valuable pairs overall. Host-side NumPy only; it never
touches the model. `experiments/explain.py` is the command line over it (docs/valuation.md).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import pathlib

import numpy as np

from dvr_jax.data import DataError, resolve_data_dir

NAME_COLUMNS = ("movie_title", "title", "name", "item_name")  # RecBole .item fields read as a display name
PAIR_VALUES = "pair_values.tsv"


class ExplanationError(ValueError):
    """A run directory or a user the explanation cannot serve (one line for the CLI)."""


@dataclasses.dataclass(frozen=True)
class PairValues:
    """Every training pair of a run with its mean values; rows never visited have NaN values.

    Attributes:
      users, items: str[P] original ids.
      visits: int64[P] batches the pair was in.
      value, prob, influence: f64[P] mean Shapley value, selection probability, influence.
    """

    users: np.ndarray
    items: np.ndarray
    visits: np.ndarray
    value: np.ndarray
    prob: np.ndarray
    influence: np.ndarray


def read_pair_values(run_dir: str | pathlib.Path) -> PairValues:
    """`<run_dir>/pair_values.tsv` as arrays.

    Raises:
      ExplanationError: the file is missing (not a DVR run, or not finished) or malformed.
    """
    path = pathlib.Path(run_dir) / PAIR_VALUES
    if not path.exists():
        raise ExplanationError(f"{path} is missing: explanations need a finished DVR run")
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t"))
    header, body = rows[0] if rows else [], rows[1:]
    expected = ["user", "item", "visits", "value", "prob", "influence"]
    if header != expected:
        raise ExplanationError(f"{path}: header {header} is not {expected}")
    try:
        columns = list(zip(*body, strict=True)) if body else [()] * len(expected)
    except ValueError as err:
        raise ExplanationError(f"{path}: a row does not have {len(expected)} columns") from err
    try:
        numbers = [np.asarray(column, np.float64) for column in columns[2:]]
    except ValueError as err:
        raise ExplanationError(f"{path}: {err}") from err
    users, items = (np.asarray(column, dtype=object).astype(str) for column in columns[:2])
    return PairValues(users, items, numbers[0].astype(np.int64), *numbers[1:])


def item_names(dataset: str, data_dir: str | None = None) -> dict[str, str]:
    """{original item id: display name} of a named dataset; {} where it ships no names.

    LastFM: `<data>/lastfm/artists.dat` (id, name). A RecBole atomic dataset: the first of
    `NAME_COLUMNS` in `<data>/<name>/<name>.item`. Other datasets (files, fixed splits): {}.
    """
    root = resolve_data_dir(data_dir) / dataset
    if dataset == "lastfm":
        path, id_field, name_fields = root / "artists.dat", "id", ("name",)
    else:
        path, id_field, name_fields = root / f"{dataset}.item", "item_id", NAME_COLUMNS
    if not path.exists():
        return {}
    with path.open(encoding="utf-8", errors="replace", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = [field.split(":")[0] for field in next(reader, [])]
        if id_field not in header or not any(name in header for name in name_fields):
            raise DataError(f"{path}: no {id_field} and name column ({', '.join(name_fields)}) in its header")
        key = header.index(id_field)
        name = header.index(next(name for name in name_fields if name in header))
        return {row[key]: row[name] for row in reader if len(row) > max(key, name)}


def run_dataset(run_dir: str | pathlib.Path) -> tuple[str, str | None]:
    """(dataset, data_dir) of a run, from its `config.json`."""
    path = pathlib.Path(run_dir) / "config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ExplanationError(f"cannot read {path}: {err}") from err
    return config["dataset"], config.get("data_dir")


def planted_pairs(run_dir: str | pathlib.Path) -> set[tuple[str, str]]:
    """The (user, item) original ids planted into a noise-harness run's training data; empty otherwise.

    A run of `experiments/noise.py` keeps `planting.json` (share, mode, seed); planting is
    deterministic, so the planted pairs are rebuilt from the clean data, and checked against the
    recorded hash of the planted data.
    """
    path = pathlib.Path(run_dir) / "planting.json"
    if not path.exists():
        return set()
    planting = json.loads(path.read_text())
    if not planting.get("planted"):
        return set()
    from dvr_jax import noise  # noqa: PLC0415
    from dvr_jax.data import load_dataset  # noqa: PLC0415

    dataset_name, data_dir = run_dataset(run_dir)
    clean = load_dataset(dataset_name, data_dir, kcore=None, split_seed=2024)
    dataset, planted = noise.plant_random_pairs(clean, planting["share"], planting["seed"], planting["mode"])
    if dataset.source_hash != planting["source_hash"]:
        raise ExplanationError(f"{path}: the rebuilt planted data does not match the run's (hash differs)")
    rows = dataset.train[planted]
    return set(zip(dataset.user_ids[rows[:, 0]].astype(str), dataset.item_ids[rows[:, 1]].astype(str), strict=True))


def ranked(values: PairValues, rows: np.ndarray, descending: bool = True) -> np.ndarray:
    """`rows` (indices) ordered by value, visited pairs first; ties by (user, item) for a stable order."""
    rows = np.asarray(rows, np.int64)
    value = values.value[rows]
    key = np.where(np.isnan(value), np.inf, -value if descending else value)
    return rows[np.lexsort((values.items[rows], values.users[rows], key))]


def user_rows(values: PairValues, user: str) -> np.ndarray:
    """The rows of one user's training pairs, best first.

    Raises:
      ExplanationError: the user has no training pair in this run.
    """
    rows = np.flatnonzero(values.users == str(user))
    if len(rows) == 0:
        raise ExplanationError(f"user {user!r} has no training pair in this run (ids are the dataset's own)")
    return ranked(values, rows)


def format_rows(values: PairValues, rows: np.ndarray, names: dict[str, str], title: str,
                planted: set[tuple[str, str]] = frozenset()) -> str:  # fmt: skip
    """A plain-text table: rank, user, item, value, selection probability, visits, name (and
    "planted" for a pair the noise harness planted)."""
    lines = [title, f"{'rank':>4}  {'user':>8}  {'item':>8}  {'value':>10}  {'prob':>6}  {'visits':>6}  name"]
    for rank, row in enumerate(rows, 1):
        value = "never" if values.visits[row] == 0 else f"{values.value[row]:10.4g}"
        prob = "" if values.visits[row] == 0 else f"{values.prob[row]:6.3f}"
        name = names.get(values.items[row], "")
        mark = "  [planted]" if (values.users[row], values.items[row]) in planted else ""
        lines.append(f"{rank:>4}  {values.users[row]:>8}  {values.items[row]:>8}  {value:>10}  {prob:>6}  "
                     f"{values.visits[row]:>6}  {name}{mark}")  # fmt: skip
    return "\n".join(lines)
