"""Fixtures for the data tests: a local HTTP server and a private cache directory."""

from __future__ import annotations

import functools
import http.server
import pathlib
import threading

import pytest


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a directory without logging every request to stderr."""

    def log_message(self, format, *args):  # noqa: A002 - signature of the base class
        del format, args


@pytest.fixture
def serve():
    """`serve(directory) -> base URL` of a thread-backed HTTP server on 127.0.0.1."""
    servers = []

    def start(directory: pathlib.Path) -> str:
        handler = functools.partial(_QuietHandler, directory=str(directory))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def cache_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    """A private processed-data cache, so tests never touch ~/.cache."""
    return tmp_path / "cache"


@pytest.fixture(autouse=True)
def _no_env_dirs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests pass directories explicitly; environment overrides must not leak in."""
    monkeypatch.delenv("DVR_DATA_URL", raising=False)
    monkeypatch.delenv("DVR_CACHE_DIR", raising=False)
