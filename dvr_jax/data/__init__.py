"""Dataset pipeline (host NumPy, no JAX): registry, parsing, preprocessing, cache.

`load_dataset(name, data_dir)` returns a `Dataset` with train / valid / test (user,
item) pairs; see `dvr_jax.data.loader` for how names resolve (registered datasets,
RecBole atomic files, generic CSV/TSV) and `dvr_jax.data.download` for checksum-verified
downloads.
"""

from dvr_jax.data.dataset import Dataset
from dvr_jax.data.download import download_dataset
from dvr_jax.data.errors import DataError
from dvr_jax.data.loader import load_dataset
from dvr_jax.data.registry import (
    DATASETS,
    DatasetSpec,
    FileSpec,
    resolve_cache_dir,
    resolve_data_dir,
)

__all__ = [
    "DATASETS",
    "DataError",
    "Dataset",
    "DatasetSpec",
    "FileSpec",
    "download_dataset",
    "load_dataset",
    "resolve_cache_dir",
    "resolve_data_dir",
]
