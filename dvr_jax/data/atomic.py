"""Atomic file writes: a temporary file in the target folder, then `os.replace`.

A reader (or a killed writer) never sees a half-written file: the target either keeps its
old content or gets the new content whole. The file gets the mode a plain `open()` would
give it (`0o666` less the umask), so outputs stay readable to whoever the umask allows.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Writes `data` to `path` atomically, creating the parent folder if needed.

    Raises:
      OSError: the folder cannot be created or written (no temporary file is left).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temporary(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _create_temporary(path: Path) -> tuple[int, Path]:
    """Creates a new, empty `.<name>.<random>.part` file next to `path`.

    `os.open(..., 0o666)` lets the kernel apply the umask (and any default ACL of the
    folder) exactly as for a plain `open()`; `tempfile.mkstemp` would force `0o600`, and
    reading the umask with `os.umask` would race with other threads.

    Returns:
      The open file descriptor (write-only, binary) and the file's path.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name next to {path}")
