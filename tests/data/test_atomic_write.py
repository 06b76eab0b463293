"""`write_bytes_atomic`: whole-file replacement with the mode a plain `open()` gives."""

from __future__ import annotations

import os
import stat

import pytest

from dvr_jax.data import load_dataset
from dvr_jax.data.atomic import write_bytes_atomic
from tests.data.checks import write


@pytest.fixture
def umask():
    """`umask(mask)` sets the process umask for the test; the old one is restored."""
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o077, 0o600)])
def test_mode_follows_umask(tmp_path, umask, mask, mode):
    umask(mask)
    path = tmp_path / "sub" / "out.json"
    write_bytes_atomic(path, b"{}\n")
    plain = tmp_path / "plain.json"
    with open(plain, "wb"):
        pass
    assert path.read_bytes() == b"{}\n"
    assert _mode(path) == _mode(plain) == mode
    write_bytes_atomic(path, b"[]\n")  # replacing keeps the umask mode
    assert path.read_bytes() == b"[]\n" and _mode(path) == mode
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.json"]


def test_cache_file_readable_by_others(tmp_path, umask):
    umask(0o022)
    rows = "".join(f"{u},{i}\n" for u in range(3) for i in range(3))
    path = write(tmp_path / "r.csv", rows)
    load_dataset(str(path), cache_dir=tmp_path / "c", kcore=0)
    (cached,) = (tmp_path / "c").rglob("*.npz")
    assert _mode(cached) == 0o644


def test_failed_write_leaves_no_temporary_file(tmp_path):
    folder = tmp_path / "d"
    (folder / "out").mkdir(parents=True)  # a folder is in the way of os.replace
    with pytest.raises(OSError):
        write_bytes_atomic(folder / "out", b"x")
    assert sorted(p.name for p in folder.iterdir()) == ["out"]
