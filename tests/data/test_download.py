"""Download tests against a local `http.server` (no network): checksums, zips."""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import socket
import zipfile

import pytest

from dvr_jax.data import (
    DATASETS,
    DataError,
    DatasetSpec,
    FileSpec,
    download_dataset,
    formats,
    load_dataset,
    text,
)
from dvr_jax.data.download import fetch_files, pairs_digest
from tests.data.checks import write


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _leftovers(folder):
    return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.mark.realdata
def test_download_from_mirror_then_parse(real_data_dir, tmp_path, serve, cache_dir):
    url = serve(real_data_dir)
    data_dir = tmp_path / "data"
    ds = load_dataset("lastfm-lightgcn", data_dir, base_url=url, cache_dir=cache_dir)
    assert (ds.n_users, ds.n_items, len(ds.test)) == (1880, 4489, 10533)
    for f in DATASETS["lastfm-lightgcn"].files:
        assert _sha((data_dir / "lastfm-lightgcn" / f.name).read_bytes()) == f.sha256
    assert _leftovers(data_dir / "lastfm-lightgcn") == ["data1.txt", "test1.txt"]


@pytest.mark.realdata
def test_download_dataset_uses_env_mirror(real_data_dir, tmp_path, serve, monkeypatch):
    monkeypatch.setenv("DVR_DATA_URL", serve(real_data_dir))
    folder = download_dataset("ml-100k", tmp_path / "data")
    assert folder == tmp_path / "data" / "ml-100k"
    assert _leftovers(folder) == ["ml-100k.inter", "ml-100k.item", "ml-100k.user"]
    assert download_dataset("ml-100k", tmp_path / "data") == folder  # all present: no-op


@pytest.mark.realdata
def test_corrupted_download_is_rejected_and_nothing_left(real_data_dir, tmp_path, serve):
    mirror = tmp_path / "mirror" / "lastfm-lightgcn"
    shutil.copytree(real_data_dir / "lastfm-lightgcn", mirror)
    (mirror / "test1.txt").chmod(0o644)
    data = bytearray((mirror / "test1.txt").read_bytes())
    data[100] = ord("7") if data[100] != ord("7") else ord("8")
    (mirror / "test1.txt").write_bytes(bytes(data))
    target = tmp_path / "data"
    with pytest.raises(DataError) as info:
        download_dataset("lastfm-lightgcn", target, base_url=serve(tmp_path / "mirror"))
    message = str(info.value)
    assert message.startswith("test1.txt: checksum mismatch for the file from http://127.0.0.1")
    assert "nothing was written" in message and "\n" not in message
    assert _leftovers(target) == []  # data1.txt verified fine but was not written either


@pytest.mark.realdata
def test_zip_member_extracted_and_verified(real_data_dir, tmp_path, serve):
    served = tmp_path / "served"
    served.mkdir()
    good = (real_data_dir / "lastfm" / "user_artists.dat").read_bytes()
    with zipfile.ZipFile(served / "hetrec.zip", "w") as zf:
        zf.writestr("hetrec2011-lastfm-2k/readme.txt", "x")
        zf.writestr("hetrec2011-lastfm-2k/user_artists.dat", good)
    with zipfile.ZipFile(served / "bad.zip", "w") as zf:
        zf.writestr("user_artists.dat", good.replace(b"\n2\t51\t", b"\n2\t50\t", 1))
    url = serve(served)
    spec = DATASETS["lastfm"]
    (file_spec,) = spec.files
    good_spec = dataclasses.replace(spec, files=(dataclasses.replace(file_spec, url=f"{url}/hetrec.zip"),))
    fetch_files(good_spec, good_spec.files, tmp_path / "ok" / "lastfm")
    assert (tmp_path / "ok" / "lastfm" / "user_artists.dat").read_bytes() == good
    bad_spec = dataclasses.replace(spec, files=(dataclasses.replace(file_spec, url=f"{url}/bad.zip"),))
    with pytest.raises(
        DataError,
        match=r"^user_artists.dat: checksum mismatch for the file from .*bad.zip",
    ):
        fetch_files(bad_spec, bad_spec.files, tmp_path / "bad" / "lastfm")
    assert _leftovers(tmp_path / "bad") == []
    missing_spec = dataclasses.replace(
        spec,
        files=(dataclasses.replace(file_spec, url=f"{url}/hetrec.zip", member="nope.dat"),),
    )
    with pytest.raises(DataError, match="the archive has no member nope.dat"):
        fetch_files(missing_spec, missing_spec.files, tmp_path / "x")


def _toy_spec(reference: bytes) -> DatasetSpec:
    """A one-file dataset whose train file may differ byte-wise but not pair-wise."""
    return DatasetSpec(
        name="toy",
        files=(
            FileSpec(
                "train",
                "train.txt",
                _sha(reference),
                "http://invalid.example/train.txt",
                pairs_sha256=pairs_digest(text.parse_adjacency, reference, "train.txt"),
                pairs_reader=text.parse_adjacency,
            ),
        ),
        parse=formats.parse_adjacency_split,
        default_kcore=None,
        fixed_split=True,
        side_info="none",
    )


def test_pairs_digest_accepts_reordered_items_only(tmp_path, serve):
    spec = _toy_spec(b"0 1 2 3\n1 0 4\n")
    write(tmp_path / "m1" / "toy" / "train.txt", "0 3 2 1\n1 4 0\n")  # same pairs, other order
    fetch_files(spec, spec.files, tmp_path / "d1" / "toy", base_url=serve(tmp_path / "m1"))
    assert (tmp_path / "d1" / "toy" / "train.txt").read_text() == "0 3 2 1\n1 4 0\n"
    write(tmp_path / "m2" / "toy" / "train.txt", "0 3 2 1\n1 4 5\n")  # one pair differs
    with pytest.raises(DataError, match="train.txt: checksum mismatch"):
        fetch_files(spec, spec.files, tmp_path / "d2" / "toy", base_url=serve(tmp_path / "m2"))
    assert _leftovers(tmp_path / "d2") == []


def test_network_failure_says_what_to_put_where(tmp_path, cache_dir):
    with pytest.raises(DataError) as info:
        load_dataset(
            "gowalla",
            tmp_path / "data",
            base_url=_closed_port_url(),
            cache_dir=cache_dir,
        )
    message = str(info.value)
    folder = tmp_path / "data" / "gowalla"
    assert message.startswith(f"dataset 'gowalla': missing train.txt, test.txt in {folder}/")
    assert "download failed" in message and "\n" not in message
    assert "https://raw.githubusercontent.com/gusye1234/LightGCN-PyTorch" in message
    assert _leftovers(tmp_path / "data") == []


def test_file_absent_from_mirror(tmp_path, serve):
    write(tmp_path / "mirror" / "gowalla" / "test.txt", "0 1\n")  # train.txt absent
    with pytest.raises(DataError, match=r"missing train.txt, test.txt in .*download failed: .*404"):
        download_dataset("gowalla", tmp_path / "data", base_url=serve(tmp_path / "mirror"))
    assert _leftovers(tmp_path / "data") == []


def test_download_unknown_name(tmp_path):
    with pytest.raises(DataError, match="unknown dataset 'nope'; downloadable: gowalla, lastfm"):
        download_dataset("nope", tmp_path)
