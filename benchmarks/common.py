"""Shared benchmark helpers: timing with block_until_ready, peak RSS, the JSON result line."""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time

import jax


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def timed(fn, *args):
    """(result, seconds) with block_until_ready before the clock is read."""
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return out, time.perf_counter() - start


def machine() -> dict:
    """Hardware and versions for RESULTS.md."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = "unknown"
    return {
        "cpu_count": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0],
        "jax": jax.__version__, "backend": jax.default_backend(), "devices": len(jax.devices()), "commit": commit,
    }  # fmt: skip


def emit(result: dict) -> None:
    """Prints the result as the last line, one JSON object."""
    print(json.dumps({**result, "machine": machine()}, sort_keys=True))
