"""Slow, loop-based NumPy oracles of the ranking metrics and a small synthetic dataset builder."""

from __future__ import annotations

import math

import numpy as np

from dvr_jax.data.dataset import Dataset

# ----------------------------------------------------------------------------- metrics


def recall(rec: list[int], heldout: set[int], k: int) -> float:
    if not heldout:
        return 0.0
    return len(set(rec[:k]) & heldout) / len(heldout)


def recall_norm(rec: list[int], heldout: set[int], k: int) -> float:
    if not heldout:
        return 0.0
    return len(set(rec[:k]) & heldout) / min(k, len(heldout))


def ndcg(rec: list[int], heldout: set[int], k: int) -> float:
    if not heldout:
        return 0.0
    dcg = sum(1.0 / math.log2(r + 2) for r, item in enumerate(rec[:k]) if item in heldout)
    idcg = sum(1.0 / math.log2(r + 2) for r in range(min(k, len(heldout))))
    return dcg / idcg


def precision(rec: list[int], heldout: set[int], k: int) -> float:
    return len(set(rec[:k]) & heldout) / k


def hit(rec: list[int], heldout: set[int], k: int) -> float:
    return float(len(set(rec[:k]) & heldout) > 0)


HIT_ORACLES = {
    "recall": recall,
    "recall_norm": recall_norm,
    "ndcg": ndcg,
    "precision": precision,
    "hit": hit,
}


def _cat_set(items, categories: np.ndarray) -> set[int]:
    out: set[int] = set()
    for item in items:
        out |= {c for c in range(categories.shape[1]) if categories[item, c] > 0}
    return out


def cc(rec: list[int], heldout: set[int], k: int, categories: np.ndarray) -> float:
    target = _cat_set(heldout, categories)
    if not target:
        return 0.0
    return len(_cat_set(rec[:k], categories) & target) / len(target)


def cc_global(rec: list[int], k: int, categories: np.ndarray) -> float:
    return len(_cat_set(rec[:k], categories)) / categories.shape[1]


def pair_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine distance; an all-zero vector is the category `unknown`."""
    na, nb = math.sqrt(float(a @ a)), math.sqrt(float(b @ b))
    if na == 0 and nb == 0:
        return 0.0
    if na == 0 or nb == 0:
        return 1.0
    return 1.0 - float(a @ b) / (na * nb)


def ild(rec: list[int], k: int, categories: np.ndarray) -> float:
    items = rec[:k]
    if len(items) < 2:
        return 0.0
    dists = [
        pair_distance(categories[items[r]].astype(np.float64), categories[items[s]].astype(np.float64))
        for r in range(len(items))
        for s in range(r + 1, len(items))
    ]
    return sum(dists) / len(dists)


def gini(counts: np.ndarray) -> float:
    c = sorted(float(x) for x in counts)
    n, total = len(c), sum(c)
    if total == 0:
        return 0.0
    return sum((2 * (i + 1) - n - 1) * c[i] for i in range(n)) / (n * total)


# ----------------------------------------------------------------------------- ranking


def brute_force_evaluate(
    scores: np.ndarray,
    dataset: Dataset,
    split: str,
    ks: tuple[int, ...],
    categories: np.ndarray | None = None,
    users: np.ndarray | None = None,
) -> tuple[dict[str, float], dict[int, list[int]]]:
    """Dense full-ranking evaluation: mask, stable argsort (lower index first on ties), loops.

    Returns:
      (metrics, top lists {user: top-max(ks) items}).
    """
    exclude = dataset.train if split == "valid" else np.concatenate([dataset.train, dataset.valid])
    heldout_pairs = dataset.valid if split == "valid" else dataset.test
    heldout = {u: set() for u in range(dataset.n_users)}
    for u, i in heldout_pairs:
        heldout[int(u)].add(int(i))
    evaluated = [u for u in range(dataset.n_users) if heldout[u]]
    if users is not None:
        evaluated = [u for u in evaluated if u in set(int(x) for x in users)]
    k_max = max(ks)
    lists = {}
    for u in evaluated:
        row = scores[u].astype(np.float64).copy()
        row[exclude[exclude[:, 0] == u, 1]] = -np.inf
        lists[u] = [int(x) for x in np.argsort(-row, kind="stable")[:k_max]]
    out = {}
    for k in ks:
        for name, fn in HIT_ORACLES.items():
            out[f"{name}@{k}"] = float(np.mean([fn(lists[u], heldout[u], k) for u in evaluated]))
        if categories is not None:
            out[f"cc@{k}"] = float(np.mean([cc(lists[u], heldout[u], k, categories) for u in evaluated]))
            out[f"cc_global@{k}"] = float(np.mean([cc_global(lists[u], k, categories) for u in evaluated]))
            out[f"ild@{k}"] = float(np.mean([ild(lists[u], k, categories) for u in evaluated]))
        counts = np.zeros(dataset.n_items)
        for u in evaluated:
            for item in lists[u][:k]:
                counts[item] += 1
        out[f"gini@{k}"] = gini(counts)
    return out, lists


def synthetic_dataset(
    rng: np.random.Generator,
    n_users: int = 23,
    n_items: int = 60,
    density: float = 0.25,
    n_categories: int | None = 4,
) -> Dataset:
    """A random split: ~70/15/15 per user; a few users have no validation or no test items.

    Categories (when requested) are multi-hot, with a few uncategorised items.
    """
    train, valid, test = [], [], []
    for u in range(n_users):
        items = np.flatnonzero(rng.random(n_items) < density)
        items = rng.permutation(items if len(items) >= 2 else np.array([0, 1]))
        n_hold = max(1, round(0.15 * len(items)))
        n_valid = 0 if u % 7 == 3 else n_hold  # some users without validation items
        n_test = 0 if u % 5 == 2 else n_hold  # some users without test items
        valid += [(u, i) for i in items[:n_valid]]
        test += [(u, i) for i in items[n_valid : n_valid + n_test]]
        train += [(u, i) for i in items[n_valid + n_test :]]

    def as_pairs(rows):
        arr = np.asarray(rows, np.int32).reshape(-1, 2)
        return arr[np.lexsort((arr[:, 1], arr[:, 0]))]

    categories = None
    if n_categories:
        categories = (rng.random((n_items, n_categories)) < 0.35).astype(np.float32)
        categories[::9] = 0.0  # uncategorised items
    return Dataset(
        name="synthetic",
        n_users=n_users,
        n_items=n_items,
        train=as_pairs(train),
        valid=as_pairs(valid),
        test=as_pairs(test),
        user_ids=np.arange(n_users).astype(str).astype(object),
        item_ids=np.arange(n_items).astype(str).astype(object),
        item_categories=categories,
    )


def quantized_mf_params(rng: np.random.Generator, n_users: int, n_items: int, dim: int = 8) -> dict:
    """MF params on a 1/4 grid: every score is exact in float32, so ties are real ties."""
    return {
        "user": (rng.integers(-3, 4, (n_users, dim)) / 4).astype(np.float32),
        "item": (rng.integers(-3, 4, (n_items, dim)) / 4).astype(np.float32),
    }
