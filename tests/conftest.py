"""Shared fixtures: CPU platform, strict promotion, a persistent compile cache, the data dir."""

from __future__ import annotations

import os
import pathlib

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Strict dtype promotion: no implicit mixing of dtypes anywhere the tests reach (DVR_STRICT_DTYPES=0
# turns it off); set in the environment so that the tests' subprocesses run strict too.
if os.environ.get("DVR_STRICT_DTYPES", "1") == "1":
    os.environ["JAX_NUMPY_DTYPE_PROMOTION"] = "strict"
# A persistent compilation cache ($DVR_JAX_TEST_CACHE), set in the environment so that the tests' subprocesses
# (the CLI runs of test_run.py) share it too. It keeps every compiled program, not only those that took over 1 s
# to compile (JAX's default): most programs here are small, compile in 0.1-1 s and are recompiled by every test
# that builds them, so a warm cache roughly halves the suite on the 2-core CPU (a cold one costs a few percent).
os.environ["JAX_COMPILATION_CACHE_DIR"] = os.environ.get(
    "DVR_JAX_TEST_CACHE", str(pathlib.Path.home() / ".cache" / "dvr_jax_xla")
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
# Also in this process should jax have been imported before this file (the environment is read on import).
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update(
    "jax_persistent_cache_min_compile_time_secs", float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"])
)

REPO = pathlib.Path(__file__).resolve().parents[1]


def data_dir() -> pathlib.Path:
    """The real-data directory: $DVR_DATA_DIR, else ../shared/data beside the checkout."""
    env = os.environ.get("DVR_DATA_DIR")
    return pathlib.Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
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
