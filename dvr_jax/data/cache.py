"""On-disk cache of processed datasets: one npz per (source bytes, options) hash.

The key is the sha256 of a JSON document holding the cache format version, the dataset
name and layout, the sha256 of every source file's bytes and every preprocessing option,
so editing a source file or changing an option never returns a stale result. Files are
written atomically (temporary file in the cache folder, then `os.replace`) and read with
`allow_pickle=False`; a file that cannot be read or does not match its key is ignored
(and rebuilt by the caller). Failing to write the cache only costs the next load its
speed.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from dvr_jax.data.atomic import write_bytes_atomic
from dvr_jax.data.dataset import Dataset

CACHE_VERSION = 1
_ATTR_PREFIX = "attr__"


def cache_key(description: dict[str, Any]) -> str:
    """Hex sha256 of a JSON-serialisable description of sources and options."""
    document = json.dumps({"version": CACHE_VERSION, **description}, sort_keys=True)
    return hashlib.sha256(document.encode("utf-8")).hexdigest()


def cache_path(cache_dir: Path, name: str, key: str) -> Path:
    """`<cache_dir>/<safe name>-<key prefix>.npz`."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "dataset"
    return cache_dir / f"{safe[:64]}-{key[:24]}.npz"


def _to_arrays(dataset: Dataset) -> dict[str, np.ndarray]:
    """Flattens a `Dataset` into npz-storable arrays (no object arrays)."""
    meta = {
        "name": dataset.name,
        "n_users": dataset.n_users,
        "n_items": dataset.n_items,
        "source_hash": dataset.source_hash,
        "has_categories": dataset.item_categories is not None,
    }
    arrays = {
        "meta": np.array(json.dumps(meta)),
        "train": dataset.train,
        "valid": dataset.valid,
        "test": dataset.test,
        "user_ids": dataset.user_ids.astype(str),
        "item_ids": dataset.item_ids.astype(str),
    }
    if dataset.item_categories is not None:
        arrays["item_categories"] = dataset.item_categories
        arrays["category_names"] = np.array(dataset.category_names or (), dtype=str)
    for name, values in dataset.user_attributes.items():
        arrays[_ATTR_PREFIX + name] = values
    return arrays


def save(path: Path, dataset: Dataset) -> bool:
    """Writes `dataset` to `path` atomically.

    Returns:
      True when written; False (with a warning) when the cache folder is not writable.
    """
    buffer = io.BytesIO()
    np.savez(buffer, **_to_arrays(dataset))
    try:
        write_bytes_atomic(path, buffer.getvalue())
    except OSError as err:
        warnings.warn(f"not caching {dataset.name}: {err}", RuntimeWarning, stacklevel=2)
        return False
    return True


def load(path: Path, key: str) -> Dataset | None:
    """Reads a cached dataset.

    Returns:
      The `Dataset`, or None when the file is absent, unreadable, corrupted, or was
      built for another key.
    """
    if not path.is_file():
        return None
    try:
        # Open the file ourselves: np.load leaks its handle when the zip is truncated.
        with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as npz:
            meta = json.loads(str(npz["meta"]))
            if meta["source_hash"] != key:
                return None
            categories = None
            if meta["has_categories"]:
                categories = npz["item_categories"]
                names = tuple(npz["category_names"].tolist())
            dataset = Dataset(
                name=meta["name"],
                n_users=int(meta["n_users"]),
                n_items=int(meta["n_items"]),
                train=npz["train"],
                valid=npz["valid"],
                test=npz["test"],
                user_ids=npz["user_ids"].astype(object),
                item_ids=npz["item_ids"].astype(object),
                item_categories=categories,
                category_names=names if categories is not None else None,
                user_attributes={k[len(_ATTR_PREFIX) :]: npz[k] for k in npz.files if k.startswith(_ATTR_PREFIX)},
                source_hash=key,
            )
    except Exception:  # noqa: BLE001 - any unreadable cache file is simply rebuilt
        return None
    return dataset if _consistent(dataset) else None


def _consistent(dataset: Dataset) -> bool:
    """Cheap structural checks that catch truncated or mismatched cache contents."""
    splits = (dataset.train, dataset.valid, dataset.test)
    shapes_ok = all(s.ndim == 2 and s.shape[1] == 2 and s.dtype == np.int32 for s in splits)
    ids_ok = len(dataset.user_ids) == dataset.n_users and len(dataset.item_ids) == dataset.n_items
    cats = dataset.item_categories
    cats_ok = cats is None or (cats.shape[0] == dataset.n_items)
    return shapes_ok and ids_ok and cats_ok
