"""`load_dataset`: find a dataset's files, parse, preprocess, split, cache -> `Dataset`.

How a name is resolved:
  * a key of `DATASETS` (`lastfm`, `ml-100k`, `lastfm-lightgcn`, `gowalla`) reads
    `<data_dir>/<name>/` and downloads missing files when allowed;
  * a name ending in `.csv` or `.tsv` is a path to a generic
    `user,item[,rating[,timestamp]]` file (comma for .csv, tab for .tsv; header
    optional, recognised by a first field starting with "user"); `categories_file=` adds
    an `item,cat1 cat2 ...` file (delimiter from its own extension). A relative path is
    taken from the working directory, else from `data_dir`;
  * any other name is read as RecBole atomic files `<data_dir>/<name>/<name>.inter` with
    optional `<name>.item` (`class` -> categories) and `<name>.user` (gender, age).

Non-fixed datasets are binarised (rating >= `rating_threshold` where ratings exist),
de-duplicated, k-cored (default 10; `kcore=0` disables it) and split 8:1:1 per user
from `split_seed`. Fixed published splits (`lastfm-lightgcn`, `gowalla`) keep their
test set, carve validation out of train and are not k-cored by default; their catalogue
is every user / item id occurring in some pair of their files (LightGCN's 4,489 LastFM
and 40,981 Gowalla items). Items without any category get the category "unknown".
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from dvr_jax.data import cache, csv_format, formats, preprocess, side_info
from dvr_jax.data.dataset import Dataset
from dvr_jax.data.download import (
    fetch_files,
    missing_files,
    missing_message,
    sha256_hex,
)
from dvr_jax.data.errors import DataError
from dvr_jax.data.registry import DATASETS, resolve_cache_dir, resolve_data_dir

_CSV_DELIMITERS = {".csv": ",", ".tsv": "\t"}


@dataclasses.dataclass(frozen=True)
class _Source:
    """A resolved dataset: its files by role and how to treat them."""

    name: str
    layout: str
    paths: dict[str, Path]
    labels: dict[str, str]
    parse: Callable[[Mapping[str, formats.SourceFile]], formats.Parsed]
    default_kcore: int | None


def _delimiter(path: Path) -> str:
    """Field delimiter of a generic table from its extension."""
    try:
        return _CSV_DELIMITERS[path.suffix.lower()]
    except KeyError:
        raise DataError(f"{path}: cannot tell the delimiter, use a .csv or .tsv file") from None


def _csv_source(name: str, data_dir: Path, categories_file: str | os.PathLike[str] | None) -> _Source:
    """A generic CSV/TSV dataset given by path."""
    paths = {"interactions": Path(name).expanduser()}
    if categories_file is not None:
        paths["categories"] = Path(categories_file).expanduser()
    for role, path in paths.items():
        if not path.is_absolute() and not path.exists() and (data_dir / path).exists():
            paths[role] = data_dir / path
        if not paths[role].is_file():
            raise DataError(f"{role} file {paths[role]} does not exist")
    delimiters = {role: _delimiter(path) for role, path in paths.items()}

    def parse(files: Mapping[str, formats.SourceFile]) -> formats.Parsed:
        return csv_format.parse_csv(files, delimiters["interactions"], delimiters.get("categories", ","))

    labels = {role: str(path) for role, path in paths.items()}
    return _Source(paths["interactions"].stem, "csv", paths, labels, parse, 10)


def _resolve(
    name: str,
    data_dir: Path,
    categories_file: str | os.PathLike[str] | None,
    download: bool,
    base_url: str | None,
) -> _Source:
    """Finds (and if needed downloads) the files of dataset `name`."""
    if Path(name).suffix.lower() in _CSV_DELIMITERS:
        return _csv_source(name, data_dir, categories_file)
    if categories_file is not None:
        raise DataError(f"categories_file applies to .csv/.tsv datasets only, not {name!r}")
    if name in DATASETS:
        spec = DATASETS[name]
        folder = data_dir / spec.name
        missing = missing_files(spec, folder)
        if missing and not download:
            raise DataError(missing_message(spec, folder, missing, "download disabled"))
        if missing:
            fetch_files(spec, missing, folder, base_url=base_url)
        paths = {f.role: folder / f.name for f in spec.files}
        labels = {f.role: f.name for f in spec.files}
        return _Source(name, name, paths, labels, spec.parse, spec.default_kcore)
    folder = data_dir / name
    if name and "/" not in name and (folder / f"{name}.inter").is_file():
        paths = {
            role: folder / f"{name}.{role}"
            for role in ("inter", "item", "user")
            if (folder / f"{name}.{role}").is_file()
        }
        labels = {role: path.name for role, path in paths.items()}
        return _Source(name, "atomic", paths, labels, formats.parse_atomic, 10)
    raise DataError(
        f"unknown dataset {name!r}: known datasets are {', '.join(sorted(DATASETS))}; "
        f"for your own data put RecBole atomic files at {folder}/{name}.inter "
        f"(optional {name}.item) or give the path of a .csv/.tsv file"
    )


def _pairs_by_split(inter: formats.Interactions, keep: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Distinct pairs and split codes; fixed-split test pairs also in train are dropped.

    Returns:
      int64[P, 2] pairs (train block, then test block, each sorted) and int8[P] split
      codes, or None for data without a published split.
    """
    users, items, split = inter.users, inter.items, inter.split
    if keep is not None:
        users, items = users[keep], items[keep]
        split = None if split is None else split[keep]
    if split is None:
        return preprocess.unique_pairs(users, items), None
    train = preprocess.unique_pairs(users[split == formats.TRAIN], items[split == formats.TRAIN])
    test = preprocess.unique_pairs(users[split == formats.TEST], items[split == formats.TEST])
    width = int(inter.items.max()) + 1
    in_train = preprocess.isin_sorted(test[:, 0] * width + test[:, 1], train[:, 0] * width + train[:, 1])
    test = test[~in_train]
    codes = np.repeat(np.array([formats.TRAIN, formats.TEST], np.int8), [len(train), len(test)])
    return np.concatenate([train, test]), codes


def _build(
    source: _Source,
    parsed: formats.Parsed,
    kcore: int | None,
    seed: int,
    threshold: float,
    key: str,
) -> Dataset:
    """Preprocesses parsed records into a split `Dataset`."""
    inter = parsed.interactions
    pairs, codes = _pairs_by_split(inter, preprocess.positives(inter.ratings, threshold))
    keep = preprocess.kcore_mask(pairs, kcore)
    pairs = pairs[keep]
    if not len(pairs):
        raise DataError(
            f"{source.name}: no interactions left after preprocessing (rating >= "
            f"{threshold}, kcore={kcore}); lower kcore or rating_threshold"
        )
    dense, user_codes, item_codes = preprocess.reindex(pairs)
    n_users, n_items = len(user_codes), len(item_codes)
    if codes is None:
        train, valid, test = preprocess.split_per_user(dense, n_users, seed)
    else:
        codes = codes[keep]
        train, valid = preprocess.carve_validation(dense[codes == formats.TRAIN], n_users, seed)
        test = dense[codes == formats.TEST]
    user_ids = inter.user_labels[user_codes]
    item_ids = inter.item_labels[item_codes]
    categories, names = None, None
    if parsed.item_categories is not None:
        categories, names = side_info.category_matrix(item_ids, parsed.item_categories)
    attributes = {
        attr: side_info.attribute_array(user_ids, values) for attr, values in (parsed.user_attributes or {}).items()
    }
    return Dataset(
        name=source.name,
        n_users=n_users,
        n_items=n_items,
        train=train,
        valid=valid,
        test=test,
        user_ids=user_ids.astype(object),
        item_ids=item_ids.astype(object),
        item_categories=categories,
        category_names=names,
        user_attributes=attributes,
        source_hash=key,
    )


def load_dataset(
    name: str | os.PathLike[str],
    data_dir: str | os.PathLike[str] | None = None,
    *,
    kcore: int | None = None,
    split_seed: int = 2024,
    rating_threshold: float = 4.0,
    cache_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    categories_file: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
    base_url: str | None = None,
) -> Dataset:
    """Loads, preprocesses and splits a dataset (cached by source bytes and options).

    Args:
      name: a registry key, a `.csv`/`.tsv` path, or a RecBole atomic dataset name
        (see the module docstring).
      data_dir: where dataset folders live (default `$DVR_DATA_DIR`, else
        `~/.cache/dvr_jax/data`).
      kcore: iterated k-core size; None (the default) takes the dataset's default: 10,
        or no k-core for fixed published splits. 0 (or any k <= 1) disables it.
      split_seed: seed of the per-user random split / validation carve-out.
      rating_threshold: smallest rating counted as positive (only where ratings exist).
      cache_dir: processed-data cache (default `$DVR_CACHE_DIR`, else
        `~/.cache/dvr_jax/processed`).
      download: fetch missing files of registered datasets.
      categories_file: item-category file of a CSV/TSV dataset.
      use_cache: read and write the processed-data cache.
      base_url: download mirror in the data-directory layout (default `$DVR_DATA_URL`).

    Returns:
      The `Dataset`; train/valid/test are int32[*, 2] (user, item) pairs sorted by
      (user, item) with ids in [0, U) x [0, I).

    Raises:
      DataError: unknown name, missing files (says which to put where), malformed files
        (names file and line), checksum mismatch, or nothing left after filtering.
    """
    name = os.fspath(name)
    root = resolve_data_dir(data_dir)
    source = _resolve(name, root, categories_file, download, base_url)
    if kcore is not None and (isinstance(kcore, bool) or not isinstance(kcore, int | np.integer)):
        raise DataError(f"kcore must be an integer or None, got {kcore!r}")
    k = source.default_kcore if kcore is None else int(kcore)
    blobs = {}
    for role, path in source.paths.items():
        try:
            blobs[role] = formats.SourceFile(source.labels[role], path.read_bytes())
        except OSError as err:
            raise DataError(f"{source.labels[role]}: cannot read {path}: {err.strerror}") from None
    key = cache.cache_key(
        {
            "name": source.name,
            "layout": source.layout,
            "files": {role: sha256_hex(blob.data) for role, blob in blobs.items()},
            "kcore": None if k is None or k <= 1 else int(k),
            "split_seed": int(split_seed),
            "rating_threshold": float(rating_threshold),
        }
    )
    path = cache.cache_path(resolve_cache_dir(cache_dir), source.name, key)
    if use_cache and (cached := cache.load(path, key)) is not None:
        return cached
    dataset = _build(source, source.parse(blobs), k, split_seed, rating_threshold, key)
    if use_cache:
        cache.save(path, dataset)
    return dataset
