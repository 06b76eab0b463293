"""Shared fixtures: CPU platform, strict promotion, a persistent compile cache, the data dir."""

from __future__ import annotations

import os
import pathlib

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Strict dtype promotion: no implicit mixing of dtypes anywhere the tests reach (DVR_STRICT_DTYPES=0
# turns it off); set in the environment so that the tests' subprocesses run strict too.
if os.environ.get("DVR_STRICT_DTYPES", "1") == "1":
    os.environ["JAX_NUMPY_DTYPE_PROMOTION"] = "strict"

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update(
    "jax_compilation_cache_dir",
    os.environ.get("DVR_JAX_TEST_CACHE", str(pathlib.Path.home() / ".cache" / "dvr_jax_xla")),
)

REPO = pathlib.Path(__file__).resolve().parents[1]


def data_dir() -> pathlib.Path:
    """The real-data directory: $DVR_DATA_DIR, else ../shared/data beside the checkout."""
    env = os.environ.get("DVR_DATA_DIR")
    return pathlib.Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture
def real_data_dir() -> pathlib.Path:
    """Real datasets; skips only when absent (CI fails on such a skip, see .ci/run)."""
    path = data_dir()
    if not (path / "lastfm" / "user_artists.dat").exists():
        message = f"real data not found at {path} (set DVR_DATA_DIR)"
        if os.environ.get("DVR_REQUIRE_DATA") == "1":  # CI: a real-data test must never skip
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def key() -> jax.Array:
    return jax.random.key(0)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def pytest_collection_modifyitems(config, items):
    """Every test that reads the real datasets carries the `realdata` marker (`-m "not realdata"`)."""
    del config
    for item in items:
        if "real_data_dir" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.realdata)
