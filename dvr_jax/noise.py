"""Planted-noise harness (host NumPy, no JAX): plant random training pairs and score detectors.

`plant_random_pairs` adds (or substitutes) uniformly random (user, item) pairs to a
dataset's training split and returns a label per training row saying which were planted.
A data valuation method is then judged by how well a per-pair score separates the real
pairs from the planted ones, with `roc_auc` and `average_precision` (sklearn's
definitions, re-implemented in vectorised NumPy).

Convention of the experiments (`experiments/noise.py`): every scorer is oriented so that
*higher means more likely a real pair*, and is evaluated as `roc_auc(score, ~planted)`.
0.5 is chance; 1.0 ranks every real pair above every planted one.

`paired_comparison` compares two methods over the seeds both ran (paired t-test and
Wilcoxon signed-rank test of the per-seed differences, via SciPy).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import warnings

import numpy as np
from scipy import stats

from dvr_jax.data.dataset import Dataset

MODES = ("add", "replace")
_MAX_ROUNDS = 1000  # rejection-sampling rounds before giving up (only for nearly full data)


def plant_random_pairs(dataset: Dataset, share: float, seed: int, mode: str = "add") -> tuple[Dataset, np.ndarray]:
    """Plants round(share * |train|) uniformly random (user, item) pairs into the training split.

    Planted pairs are uniform over the (user, item) grid minus every pair of the user's
    train / valid / test splits, without duplicates; no user ends up positive on every
    item. Valid and test are unchanged.

    Args:
      dataset: the clean dataset.
      share: planted pairs as a share of the clean training pairs, in (0, 1).
      seed: seed of the draw (the result is a deterministic function of dataset and args).
      mode: "add" appends the planted pairs; "replace" first drops as many randomly chosen
        real training pairs (every user keeps at least one), so the size is unchanged.

    Returns:
      (dataset with the new training split and a new `source_hash`, bool[len(new train)]
      True on planted rows). The new train is sorted by (user, item) without duplicates.

    Raises:
      ValueError: share outside (0, 1), unknown mode, a share that plants no pair, or not
        enough free pairs (or removable pairs, for "replace").
    """
    _check_args(share, mode)
    train = np.asarray(dataset.train, np.int64).reshape(-1, 2)
    n_plant = int(round(share * len(train)))
    if n_plant < 1:
        raise ValueError(f"share {share} of {len(train)} training pairs plants no pair")
    rng = np.random.default_rng([int(seed), MODES.index(mode)])
    keep = np.ones(len(train), bool)
    if mode == "replace":
        keep[_pairs_to_drop(train[:, 0], dataset.n_users, n_plant, rng)] = False
    kept = train[keep]
    degree = np.bincount(kept[:, 0], minlength=dataset.n_users)
    planted_pairs = _draw_free_pairs(dataset, train, degree, n_plant, rng)
    pairs = np.concatenate([kept, planted_pairs])
    labels = np.concatenate([np.zeros(len(kept), bool), np.ones(n_plant, bool)])
    order = np.lexsort((pairs[:, 1], pairs[:, 0]))
    new = dataclasses.replace(
        dataset, train=pairs[order].astype(np.int32), source_hash=_planted_hash(dataset.source_hash, share, seed, mode)
    )
    return new, labels[order]


def remove_lowest(dataset: Dataset, scores, share: float, tag: str = "") -> tuple[Dataset, np.ndarray]:
    """Drops the lowest-scored `share` of the training pairs, never a user's last one.

    The removal experiment of data valuation: retrain on what is left and see whether the
    metric holds (the scorer found useless or harmful pairs) or falls. Pairs are removed from
    the lowest score up (ties: the earlier row first); a pair whose user would be left without
    training pairs is skipped, so slightly fewer than `share` may go when one user holds many of
    the lowest scores. Validation and test are untouched.

    Args:
      dataset: the data whose training split is scored.
      scores: f[P] one score per row of `dataset.train` (higher: more valuable; NaN not allowed,
        -inf is the lowest).
      share: in [0, 1).
      tag: names the scorer in the new `source_hash` (with `share`).

    Returns:
      (dataset with the kept training pairs and a new `source_hash`, bool[P] removed rows).
    """
    scores = np.asarray(scores, np.float64).ravel()
    train = np.asarray(dataset.train).reshape(-1, 2)
    if scores.shape != (len(train),):
        raise ValueError(f"got {scores.shape[0]} scores for {len(train)} training pairs")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    if not 0.0 <= share < 1.0:
        raise ValueError(f"share must be in [0, 1), got {share!r}")
    n_remove = int(round(share * len(train)))
    order = np.argsort(scores, kind="stable")  # lowest first
    users = train[order, 0]
    by_user = np.argsort(users, kind="stable")  # each user's rows, still lowest first
    first = np.searchsorted(users[by_user], users[by_user], side="left")
    rank = np.empty(len(order), np.int64)
    rank[by_user] = np.arange(len(order)) - first  # a row's place among its user's rows
    degree = np.bincount(train[:, 0], minlength=dataset.n_users)
    removable = order[rank < degree[users] - 1]  # all but each user's highest-scored row, lowest first
    removed = np.zeros(len(train), bool)
    removed[removable[:n_remove]] = True
    text = f"{dataset.source_hash}|removed-lowest|scorer={tag}|share={float(share)!r}"
    kept = dataclasses.replace(dataset, train=train[~removed].astype(np.int32),
                               source_hash=hashlib.sha256(text.encode()).hexdigest())  # fmt: skip
    return kept, removed


def drop_planted(dataset: Dataset, planted) -> Dataset:
    """The training split without its planted rows: what a perfect detector of the noise keeps.

    With "add" planting this is the clean training split; with "replace" it is the clean split
    less the real pairs that were swapped out. Validation and test are untouched.

    Args:
      dataset: the planted dataset (`plant_random_pairs`).
      planted: bool[P] its planted rows.

    Returns:
      The dataset with the real training rows only and a new `source_hash`.

    Raises:
      ValueError: labels that do not match the training rows, or a user left without training pairs.
    """
    planted = np.asarray(planted)
    train = np.asarray(dataset.train).reshape(-1, 2)
    if planted.dtype != bool or planted.shape != (len(train),):
        raise ValueError(f"planted must be bool[{len(train)}], got {planted.dtype}{list(planted.shape)}")
    kept = train[~planted]
    lost = np.setdiff1d(np.unique(train[:, 0]), kept[:, 0])
    if len(lost):
        raise ValueError(f"dropping the planted pairs leaves {len(lost)} users without training pairs "
                         f"(user index {int(lost[0])} first)")  # fmt: skip
    text = f"{dataset.source_hash}|planted-dropped"
    return dataclasses.replace(dataset, train=kept.astype(np.int32),
                               source_hash=hashlib.sha256(text.encode()).hexdigest())  # fmt: skip


def _check_args(share: float, mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if not 0.0 < share < 1.0:
        raise ValueError(f"share must be in (0, 1), got {share!r}")


def _planted_hash(source_hash: str, share: float, seed: int, mode: str) -> str:
    """A new cache key derived from the clean data's key and the planting options."""
    text = f"{source_hash}|planted-noise|share={float(share)!r}|seed={int(seed)}|mode={mode}"
    return hashlib.sha256(text.encode()).hexdigest()


def _pairs_to_drop(users: np.ndarray, n_users: int, n_drop: int, rng: np.random.Generator) -> np.ndarray:
    """Row indices of `n_drop` training pairs to drop, uniformly among all but one random pair per user."""
    perm = rng.permutation(len(users))
    _, first = np.unique(users[perm], return_index=True)  # one random protected row per user
    removable = np.delete(perm, first)
    if n_drop > len(removable):
        raise ValueError(
            f"cannot replace {n_drop} training pairs: only {len(removable)} can go without leaving a user with none"
        )
    return removable[:n_drop]


def _occupied_codes(dataset: Dataset, train: np.ndarray) -> np.ndarray:
    """Sorted unique codes user * I + item of every pair in the clean train / valid / test."""
    splits = (dataset.valid, dataset.test)
    pairs = np.concatenate([train, *(np.asarray(s, np.int64).reshape(-1, 2) for s in splits)])
    return np.unique(pairs[:, 0] * dataset.n_items + pairs[:, 1])


def _draw_free_pairs(
    dataset: Dataset, train: np.ndarray, degree: np.ndarray, n_plant: int, rng: np.random.Generator
) -> np.ndarray:
    """`n_plant` distinct uniform free pairs, int64[n_plant, 2], by rejection sampling.

    A pair is free when it is in none of the user's clean splits; a user receives at most
    `n_items - 1 - degree[user]` pairs, so every user keeps at least one negative item.
    """
    n_users, n_items = dataset.n_users, dataset.n_items
    occupied = _occupied_codes(dataset, train)
    occupied_per_user = np.bincount(occupied // n_items, minlength=n_users)
    capacity = np.minimum(n_items - occupied_per_user, n_items - 1 - degree).clip(min=0)
    if capacity.sum() < n_plant:
        raise ValueError(f"cannot plant {n_plant} pairs: only {int(capacity.sum())} free (user, item) pairs")
    batch = max(4 * n_plant, 4096)
    drawn = np.zeros(0, np.int64)
    for _ in range(_MAX_ROUNDS):
        codes = rng.integers(0, n_users * n_items, size=batch, dtype=np.int64)
        codes = codes[~np.isin(codes, occupied, assume_unique=False)]
        drawn = _unique_in_order(np.concatenate([drawn, codes]))
        accepted = drawn[_within_capacity(drawn // n_items, capacity)]
        if len(accepted) >= n_plant:
            accepted = accepted[:n_plant]
            return np.stack([accepted // n_items, accepted % n_items], axis=1)
    raise ValueError(f"could not draw {n_plant} free pairs in {_MAX_ROUNDS} rounds (the data is nearly full)")


def _unique_in_order(values: np.ndarray) -> np.ndarray:
    """The distinct values in order of first occurrence."""
    _, first = np.unique(values, return_index=True)
    return values[np.sort(first)]


def _within_capacity(groups: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    """bool mask: the element is among the first `capacity[group]` of its group (in order)."""
    order = np.argsort(groups, kind="stable")
    sorted_groups = groups[order]
    starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
    sizes = np.diff(np.r_[starts, len(groups)])
    rank_sorted = np.arange(len(groups)) - np.repeat(starts, sizes)
    rank = np.empty(len(groups), np.int64)
    rank[order] = rank_sorted
    return rank < capacity[groups]


def _check_scores(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, np.float64).ravel()
    labels = np.asarray(labels).ravel()
    if labels.dtype != bool:
        if not np.isin(labels, (0, 1)).all():
            raise ValueError("labels must be boolean (or 0/1)")
        labels = labels.astype(bool)
    if scores.shape != labels.shape:
        raise ValueError(f"scores and labels differ in length: {scores.shape[0]} vs {labels.shape[0]}")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    if labels.all() or not labels.any():
        raise ValueError("labels must contain both classes")
    return scores, labels


def roc_auc(scores, labels) -> float:
    """Area under the ROC curve of `scores` for the positive class `labels == True`.

    The Mann-Whitney statistic with average ranks: the probability that a random positive
    scores above a random negative, ties counting one half.

    Args:
      scores: float[N] (higher means more likely positive; +-inf allowed, NaN not).
      labels: bool[N] (or 0/1), both classes present.

    Returns:
      AUC in [0, 1].
    """
    scores, labels = _check_scores(scores, labels)
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)  # 1-based rank of each group's last element
    average_rank = ends - (counts - 1) / 2.0
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    rank_sum = float(average_rank[inverse[labels]].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def within_user_rank(scores, users) -> np.ndarray:
    """Each pair's rank among its own user's pairs, as a share in (0, 1]: 1 = the user's highest.

    The per-user ranking that noise detectors such as PLD use instead of one global ranking:
    a user whose scores are all low (a niche taste) no longer has all its pairs ranked below
    every other user's. Ties within a user count as the average of their ranks.

    Args:
      scores: float[P] (higher means more likely real; NaN not allowed).
      users: int[P] the user of each pair.

    Returns:
      f64[P] (average rank within the user, 1-based) / (the user's pair count).
    """
    scores = np.asarray(scores, np.float64).ravel()
    users = np.asarray(users).ravel()
    if scores.shape != users.shape:
        raise ValueError(f"scores and users differ in length: {scores.shape[0]} vs {users.shape[0]}")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    order = np.lexsort((scores, users))  # by user, then score
    sorted_users, sorted_scores = users[order], scores[order]
    new_user = np.r_[True, sorted_users[1:] != sorted_users[:-1]]
    new_value = new_user | np.r_[True, sorted_scores[1:] != sorted_scores[:-1]]
    position = np.arange(len(order)) - np.maximum.accumulate(np.where(new_user, np.arange(len(order)), 0))  # 0-based
    tie_group = np.cumsum(new_value) - 1
    first = np.minimum.reduceat(position, np.flatnonzero(new_value)) if len(order) else position
    last = np.maximum.reduceat(position, np.flatnonzero(new_value)) if len(order) else position
    average = (first + last)[tie_group] / 2.0 + 1.0
    _, user_index, counts = np.unique(sorted_users, return_inverse=True, return_counts=True)
    ranks = np.empty(len(order))
    ranks[order] = average / counts[user_index]
    return ranks


def average_precision(scores, labels) -> float:
    """Average precision: sum over score thresholds of (R_n - R_{n-1}) P_n (sklearn's definition).

    Thresholds are the distinct scores, from the highest down; all samples with equal score
    enter together (no interpolation).

    Args:
      scores: float[N] (higher means more likely positive; NaN not allowed).
      labels: bool[N] (or 0/1), both classes present.

    Returns:
      AP in [0, 1].
    """
    scores, labels = _check_scores(scores, labels)
    _, inverse, counts = np.unique(-scores, return_inverse=True, return_counts=True)  # groups, highest first
    positives = np.bincount(inverse, weights=labels.astype(np.float64), minlength=len(counts))
    true_pos = np.cumsum(positives)
    predicted = np.cumsum(counts)
    precision = true_pos / predicted
    recall_gain = positives / labels.sum()
    return float(np.sum(recall_gain * precision))


def _finite_or_none(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def format_pvalue(value: float | None) -> str:
    """A p-value of `paired_comparison` for a table: three decimals, "< 0.001" below, "–" when undefined."""
    if value is None:
        return "–"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def format_paired(stats: dict | None) -> str:
    """A `paired_comparison` of fractions as one table cell: the mean difference in points and its
    (t-test p, Wilcoxon p), e.g. "+0.51 (0.013, 0.250)"; "–" for no comparison."""
    if stats is None:
        return "–"
    p_values = f"{format_pvalue(stats['t_pvalue'])}, {format_pvalue(stats['wilcoxon_pvalue'])}"
    return f"{100 * stats['mean_difference']:+.2f} ({p_values})"


def paired_comparison(values, reference) -> dict:
    """Paired statistics of `values - reference` (one entry per seed, aligned).

    The t-test is `scipy.stats.ttest_rel(values, reference)` (two-sided); the signed-rank
    test is `scipy.stats.wilcoxon(values - reference)` (two-sided; SciPy's exact
    distribution for small samples without ties or zeros, so with fewer than 6 seeds no
    p-value can fall below 0.05). Undefined statistics are None, never an error: the t-test
    needs at least two seeds and non-constant differences; the signed-rank test needs a
    non-zero difference.

    Args:
      values: float[n], the method's metric per seed.
      reference: float[n], the reference method's metric on the same seeds.

    Returns:
      {"n", "differences" (list), "mean_difference", "t_statistic", "t_pvalue",
       "wilcoxon_statistic", "wilcoxon_pvalue"}; floats or None.

    Raises:
      ValueError: the two arrays differ in length or hold NaN.
    """
    a = np.asarray(values, np.float64).ravel()
    b = np.asarray(reference, np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"values and reference differ in length: {a.shape[0]} vs {b.shape[0]}")
    if np.isnan(a).any() or np.isnan(b).any():
        raise ValueError("values or reference contain NaN")
    diff = a - b
    out = {"n": int(diff.size), "differences": [float(d) for d in diff],
           "mean_difference": float(diff.mean()) if diff.size else None,
           "t_statistic": None, "t_pvalue": None, "wilcoxon_statistic": None, "wilcoxon_pvalue": None}  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # SciPy's small-sample / precision warnings
        if diff.size >= 2 and np.ptp(diff) > 0:
            t = stats.ttest_rel(a, b)
            out["t_statistic"], out["t_pvalue"] = _finite_or_none(t.statistic), _finite_or_none(t.pvalue)
        if np.any(diff != 0):
            try:
                w = stats.wilcoxon(diff)
            except ValueError:
                w = None
            if w is not None:
                out["wilcoxon_statistic"] = _finite_or_none(w.statistic)
                out["wilcoxon_pvalue"] = _finite_or_none(w.pvalue)
    return out
