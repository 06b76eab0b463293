"""Downloading a registered dataset's files, checksum-verified, with atomic writes.

Each `FileSpec` names a public address: a plain file (LightGCN's GitHub copies) or a zip
archive whose member is extracted (GroupLens hetrec2011, RecBole's ml-100k). Every file
is held in memory and verified against its sha256 (or, for files whose bytes
legitimately differ from the mirror, against the digest of their distinct (user, item)
pairs) before anything is written; then each is written to a temporary file in the
target folder and moved into place with `os.replace`. On a mismatch or a network failure
`DataError` is raised and nothing is left in the target folder. A mirror with the
data-directory layout (`<base>/<dataset>/<file>`, e.g. a local `http.server` over
`shared/data`) replaces the upstream addresses when `base_url` or `$DVR_DATA_URL` is
set.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import urllib.error
import urllib.request
import zipfile
from collections.abc import Sequence
from pathlib import Path

from dvr_jax.data.atomic import write_bytes_atomic
from dvr_jax.data.errors import DataError
from dvr_jax.data.preprocess import unique_pairs
from dvr_jax.data.registry import (
    DATASETS,
    DatasetSpec,
    FileSpec,
    PairsReader,
    resolve_data_dir,
)

DATA_URL_ENV = "DVR_DATA_URL"


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of `data`."""
    return hashlib.sha256(data).hexdigest()


def pairs_digest(reader: PairsReader, data: bytes, label: str) -> str:
    """Order-insensitive content digest: sha256 of a file's sorted distinct pairs.

    Args:
      reader: returns (users int64[P], items int64[P]) from the bytes.
      data: the file contents.
      label: file name used in error messages.

    Returns:
      Hex sha256 of the little-endian int64[P', 2] sorted distinct (user, item) pairs.
    """
    return sha256_hex(unique_pairs(*reader(data, label)).astype("<i8").tobytes())


def missing_files(spec: DatasetSpec, folder: Path) -> list[FileSpec]:
    """The files of `spec` that are not in `folder`."""
    return [f for f in spec.files if not (folder / f.name).is_file()]


def missing_message(spec: DatasetSpec, folder: Path, missing: Sequence[FileSpec], why: str) -> str:
    """One line telling the user which files to put in which directory."""
    names = ", ".join(f.name for f in missing)
    sources = "; ".join(f"{f.name} from {f.url}" + (f" (member {f.member})" if f.member else "") for f in missing)
    return (
        f"dataset {spec.name!r}: missing {names} in {folder}/ ({why}). Put {names} "
        f"into {folder}/ (sources: {sources}), or point --data-dir / $DVR_DATA_DIR at "
        f"a directory holding {spec.name}/{missing[0].name}"
    )


def _get(url: str, timeout: float) -> bytes:
    """Fetches `url` into memory; any network failure becomes `OSError`."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.read()
    except urllib.error.HTTPError as err:
        raise OSError(f"{url}: HTTP {err.code} {err.reason}") from err
    except (urllib.error.URLError, ValueError, TimeoutError) as err:
        raise OSError(f"{url}: {getattr(err, 'reason', err)}") from err


def _extract(archive: bytes, url: str, member: str) -> bytes:
    """The bytes of the zip member whose base name is `member`."""
    try:
        with zipfile.ZipFile(io.BytesIO(archive)) as zf:
            names = [n for n in zf.namelist() if n.rsplit("/", 1)[-1] == member]
            if not names:
                raise DataError(f"{url}: the archive has no member {member}")
            return zf.read(min(names, key=len))
    except zipfile.BadZipFile:
        raise DataError(f"{url}: not a valid zip archive") from None


def verify(spec: FileSpec, data: bytes, source: str) -> None:
    """Checks downloaded bytes against the expected sha256 (or pairs digest).

    Raises:
      DataError: naming the file and where it came from, on a mismatch.
    """
    digest = sha256_hex(data)
    if digest == spec.sha256:
        return
    if spec.pairs_sha256 and spec.pairs_reader:
        with contextlib.suppress(DataError):
            if pairs_digest(spec.pairs_reader, data, spec.name) == spec.pairs_sha256:
                return
    raise DataError(
        f"{spec.name}: checksum mismatch for the file from {source} (sha256 {digest}, "
        f"expected {spec.sha256}); nothing was written"
    )


def fetch_files(
    spec: DatasetSpec,
    files: Sequence[FileSpec],
    folder: Path,
    *,
    base_url: str | None = None,
    timeout: float = 60.0,
) -> None:
    """Downloads, verifies and writes `files` of `spec` into `folder`.

    Args:
      spec: the dataset.
      files: the files to fetch (usually the missing ones).
      folder: target folder `<data_dir>/<spec.name>`, created once all files verify.
      base_url: mirror with the data-directory layout; default `$DVR_DATA_URL`, else the
        upstream addresses of the specs.
      timeout: seconds per request.

    Raises:
      DataError: a checksum mismatch (naming the file) or a network failure (naming the
        files to put where); nothing is written in either case.
    """
    base = base_url or os.environ.get(DATA_URL_ENV)
    contents: dict[str, bytes] = {}
    archives: dict[str, bytes] = {}
    try:
        for f in files:
            if base:
                source = f"{base.rstrip('/')}/{spec.name}/{f.name}"
                contents[f.name] = _get(source, timeout)
            elif f.member:
                source = f.url
                if f.url not in archives:
                    archives[f.url] = _get(f.url, timeout)
                contents[f.name] = _extract(archives[f.url], f.url, f.member)
            else:
                source = f.url
                contents[f.name] = _get(f.url, timeout)
            verify(f, contents[f.name], source)
    except OSError as err:
        raise DataError(missing_message(spec, folder, files, f"download failed: {err}")) from None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for f in files:
            write_bytes_atomic(folder / f.name, contents[f.name])
    except OSError as err:
        raise DataError(missing_message(spec, folder, files, f"cannot write: {err}")) from None


def download_dataset(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    base_url: str | None = None,
    timeout: float = 60.0,
) -> Path:
    """Downloads the missing files of a registered dataset.

    Args:
      name: a key of `DATASETS`.
      data_dir: the data directory (see `resolve_data_dir`).
      base_url: mirror with the data-directory layout (default `$DVR_DATA_URL`).
      timeout: seconds per request.

    Returns:
      The dataset folder `<data_dir>/<name>`, now holding every file the dataset needs.

    Raises:
      DataError: unknown name, checksum mismatch or network failure.
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; downloadable: {', '.join(sorted(DATASETS))}")
    spec = DATASETS[name]
    folder = resolve_data_dir(data_dir) / spec.name
    missing = missing_files(spec, folder)
    if missing:
        fetch_files(spec, missing, folder, base_url=base_url, timeout=timeout)
    return folder
