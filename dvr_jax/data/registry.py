"""The dataset registry: the files each named dataset needs, their sources, parsers.

`DATASETS` maps a name to a `DatasetSpec`: its files (name inside `<data_dir>/<name>/`,
sha256 of its exact bytes, public download address), the parser, the default
k-core, whether the dataset ships a fixed published train/test split, and its side
information. `resolve_data_dir` / `resolve_cache_dir` say where files are looked for and
where processed caches go (argument, else `$DVR_DATA_DIR` / `$DVR_CACHE_DIR`, else a
per-user cache directory under `$XDG_CACHE_HOME` or `~/.cache`).
"""

from __future__ import annotations

import dataclasses
import os
import types
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from dvr_jax.data import formats, text

PairsReader = Callable[[bytes, str], tuple[np.ndarray, np.ndarray]]

_GROUPLENS_LASTFM = "https://files.grouplens.org/datasets/hetrec2011/hetrec2011-lastfm-2k.zip"
_RECBOLE_ML100K = "https://recbole.s3-accelerate.amazonaws.com/atomic/ml-100k.zip"
_LIGHTGCN = "https://raw.githubusercontent.com/gusye1234/LightGCN-PyTorch/master/data"
# `pairs_digest` of the mirror's files (see FileSpec.pairs_sha256).
_LASTFM_PAIRS = "c57e8910b9244cc10d4f10a16d84be8ba8175e854248f2b46d2a689c5a4bba01"
_GOWALLA_PAIRS = "d453bfc18e5613d6310ab05f7ebc1c6c724ee913dc31c769d1c8743c678d27f7"


@dataclasses.dataclass(frozen=True)
class FileSpec:
    """One file a registered dataset needs.

    Attributes:
      role: the parser's name for the file (e.g. "train").
      name: file name inside `<data_dir>/<dataset>/`.
      sha256: hex digest of the exact bytes (docs/data.md §2).
      url: public address of the file, or of the zip archive holding it.
      member: base name of the file inside the zip at `url`; None for a plain file.
      pairs_sha256: digest of the file's distinct (user, item) pairs (see
        `dvr_jax.data.download.pairs_digest`), accepted when the bytes differ. The
        mirror's Gowalla `train.txt` lists each line's items in ascending order and so
        differs from upstream byte-wise, while holding exactly the same pairs.
      pairs_reader: reads (users, items) from the bytes for `pairs_sha256`.
    """

    role: str
    name: str
    sha256: str
    url: str
    member: str | None = None
    pairs_sha256: str | None = None
    pairs_reader: PairsReader | None = None


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset.

    Attributes:
      name: registry key, also the folder name under the data directory.
      files: the files the parser needs.
      parse: `parse(files: role -> SourceFile) -> Parsed`.
      default_kcore: k of the iterated k-core applied by default (None: none).
      fixed_split: True when the files hold a published train/test split.
      side_info: what side information the dataset provides, in words.
    """

    name: str
    files: tuple[FileSpec, ...]
    parse: Callable[[Mapping[str, formats.SourceFile]], formats.Parsed]
    default_kcore: int | None
    fixed_split: bool
    side_info: str


DATASETS: Mapping[str, DatasetSpec] = types.MappingProxyType(
    {
        "lastfm": DatasetSpec(
            name="lastfm",
            files=(
                FileSpec(
                    "interactions",
                    "user_artists.dat",
                    "254272fa721c3935e8be286d28c051b206844307128698ab4eaa41d483379416",
                    _GROUPLENS_LASTFM,
                    member="user_artists.dat",
                    pairs_sha256=_LASTFM_PAIRS,
                    pairs_reader=formats.hetrec_pairs,
                ),
            ),
            parse=formats.parse_hetrec_lastfm,
            default_kcore=10,
            fixed_split=False,
            side_info="none (listening counts are not used as ratings)",
        ),
        "ml-100k": DatasetSpec(
            name="ml-100k",
            files=tuple(
                FileSpec(
                    role,
                    f"ml-100k.{role}",
                    digest,
                    _RECBOLE_ML100K,
                    member=f"ml-100k.{role}",
                )
                for role, digest in (
                    (
                        "inter",
                        "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
                    ),
                    (
                        "item",
                        "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
                    ),
                    (
                        "user",
                        "4f670007d9cfbeb9807e757209af1555b9bcc186bde25e767f67cb67c6dd5972",
                    ),
                )
            ),
            parse=formats.parse_atomic,
            default_kcore=10,
            fixed_split=False,
            side_info="19 genres as item categories; user gender and age",
        ),
        "lastfm-lightgcn": DatasetSpec(
            name="lastfm-lightgcn",
            files=(
                FileSpec(
                    "train",
                    "data1.txt",
                    "c82af3228cbbda2f55a39244de09ed93292894f1d0d9f1908ebb57e27598fded",
                    f"{_LIGHTGCN}/lastfm/data1.txt",
                ),
                FileSpec(
                    "test",
                    "test1.txt",
                    "de4417c0e6123284ce59a0934bcf5288ec1ec8774a18a1eef453c9952dfa48f9",
                    f"{_LIGHTGCN}/lastfm/test1.txt",
                ),
            ),
            parse=formats.parse_lightgcn_triplets,
            default_kcore=None,
            fixed_split=True,
            side_info="none",
        ),
        "gowalla": DatasetSpec(
            name="gowalla",
            files=(
                FileSpec(
                    "train",
                    "train.txt",
                    "0f086326b28a56c2e6dcb81d86ee72d4ccb7eed3a8d26788392356d8f51111cc",
                    f"{_LIGHTGCN}/gowalla/train.txt",
                    pairs_sha256=_GOWALLA_PAIRS,
                    pairs_reader=text.parse_adjacency,
                ),
                FileSpec(
                    "test",
                    "test.txt",
                    "099a2a73924e4b754dc6efd730d764f492321b53c38eb93298850c83acf57be3",
                    f"{_LIGHTGCN}/gowalla/test.txt",
                ),
            ),
            parse=formats.parse_adjacency_split,
            default_kcore=None,
            fixed_split=True,
            side_info="none",
        ),
    }
)


def _user_cache_root() -> Path:
    """`$XDG_CACHE_HOME/dvr_jax`, else `~/.cache/dvr_jax`."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "dvr_jax"


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where dataset folders are looked for.

    Args:
      data_dir: explicit directory (e.g. `--data-dir`); wins when given.

    Returns:
      `data_dir`, else `$DVR_DATA_DIR`, else `~/.cache/dvr_jax/data`.
    """
    if data_dir is not None and str(data_dir):
        return Path(data_dir).expanduser()
    env = os.environ.get("DVR_DATA_DIR")
    return Path(env).expanduser() if env else _user_cache_root() / "data"


def resolve_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where processed datasets are cached.

    Args:
      cache_dir: explicit directory; wins when given.

    Returns:
      `cache_dir`, else `$DVR_CACHE_DIR`, else `~/.cache/dvr_jax/processed`.
    """
    if cache_dir is not None and str(cache_dir):
        return Path(cache_dir).expanduser()
    env = os.environ.get("DVR_CACHE_DIR")
    return Path(env).expanduser() if env else _user_cache_root() / "processed"
