"""The run directory: its default name, creation, an exclusive lock, and cleanup.

A run takes `<dir>/run.lock` (created with O_CREAT | O_EXCL, holding its pid) before it
looks at anything else there, so two runs started into one folder cannot both pass the
"already holds a run" check. A lock whose pid is no longer alive (a killed run) is taken
over. A directory that cannot be created or written is a `RunDirError`, a one-line CLI
error like any other bad option.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import re
import shutil
import sys
import time
from collections.abc import Iterator

from dvr_jax import checkpoint
from dvr_jax.config import ConfigError, RunConfig, config_differences

LOCK_NAME = "run.lock"
# Everything a run writes besides its lock; a fresh start removes these, nothing else.
RUN_OUTPUTS = ("checkpoints", "config.json", "metrics.jsonl", "train_log.jsonl", "results.json",
               "data_values.tsv", "pair_values.npz", "pair_values.tsv", "export", "plots")  # fmt: skip
_FRESH_LOCK_SECONDS = 10.0  # a lock without a pid yet is being written, not stale


class RunDirError(ConfigError):
    """A run directory that cannot be created or written, or that another run is using."""


def dataset_label(dataset: str) -> str:
    """A file-name-safe name for `dataset`: the stem of a `.csv`/`.tsv` path, else the name.

    Characters other than letters, digits, `.`, `_` and `-` become `_`, so the label never
    holds a path separator.
    """
    name = pathlib.PurePath(dataset).name
    if pathlib.PurePath(name).suffix.lower() in (".csv", ".tsv"):
        name = pathlib.PurePath(name).stem
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "dataset"


def default_run_dir(cfg: RunConfig) -> pathlib.Path:
    """`runs/<dataset label>-<backbone>-<method>-<reward>-s<seed>`, the run dir without --out."""
    return pathlib.Path("runs") / cfg.replace(dataset=dataset_label(cfg.dataset)).run_name


@contextlib.contextmanager
def writing(workdir: pathlib.Path) -> Iterator[None]:
    """Turns an OSError inside the block into a one-line RunDirError naming the file."""
    try:
        yield
    except OSError as err:
        where = err.filename or workdir
        raise RunDirError(f"cannot write {where}: {err.strerror or err}") from err


def create(workdir: pathlib.Path) -> pathlib.Path | None:
    """Creates `workdir` and its missing parents.

    Returns:
      The topmost directory this call created (for `discard`), or None if `workdir` existed.

    Raises:
      RunDirError: it cannot be created (a regular file in the way, no permission, ...).
    """
    missing = [path for path in (workdir, *workdir.parents) if not path.exists()]
    if workdir.exists() and not workdir.is_dir():
        raise RunDirError(f"cannot create run directory {workdir}: a file of that name exists")
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RunDirError(f"cannot create run directory {workdir}: {err.strerror or err}") from err
    return missing[-1] if missing else None


def continues_interrupted(cfg: RunConfig, source_hash: str) -> RunConfig:
    """`cfg` set to resume the run in `cfg.out` when that is an interrupted run of `cfg` itself.

    That run has no `results.json`, a finished step in `checkpoints/latest`, and a
    `config.json` with the same settings (`config_differences`) whose `dataset_summary`
    names the same data (`source_hash`, the hash of the processed dataset the caller trains
    on). Drivers that otherwise start their runs over (the noise harness, the warm start's
    BPR run) pass their config through this, so a killed study continues where it stopped,
    to the same result; anything else (another config, other data, a config.json written
    before the hash was recorded) returns `cfg` unchanged.
    """
    workdir = pathlib.Path(cfg.out)
    if (workdir / "results.json").exists() or not checkpoint.finished_steps(workdir / "checkpoints" / "latest"):
        return cfg
    try:
        saved = json.loads((workdir / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return cfg
    if saved.get("dataset_summary", {}).get("source_hash") != source_hash or config_differences(cfg.to_dict(), saved):
        return cfg
    print(f"{workdir}: continuing its interrupted run", file=sys.stderr, flush=True)
    return cfg.replace(resume=True)


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def _lock_owner(path: pathlib.Path) -> int | None:
    """The pid in a lock file; None while its writer has not written it yet.

    Raises:
      FileNotFoundError: the lock went away meanwhile.
    """
    try:
        return int(path.read_text().strip())
    except ValueError:
        if time.time() - path.stat().st_mtime < _FRESH_LOCK_SECONDS:
            return None
        return 0  # garbled and old: stale


def acquire_lock(workdir: pathlib.Path) -> pathlib.Path:
    """Takes `workdir/run.lock` for this process (taking over a stale one).

    Returns:
      The lock path, for `release_lock`.

    Raises:
      RunDirError: another live process holds the lock, or the lock cannot be written.
    """
    path = workdir / LOCK_NAME
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                pid = _lock_owner(path)
            except FileNotFoundError:  # released meanwhile: try again
                continue
            if pid is None or _pid_alive(pid):
                raise RunDirError(f"{workdir} is in use by another run (pid {pid or 'unknown'})") from None
            print(f"{workdir}: taking over the lock of pid {pid}, which is not running", file=sys.stderr, flush=True)
            path.unlink(missing_ok=True)
            continue
        except OSError as err:
            raise RunDirError(f"cannot write to {workdir}: {err.strerror or err}") from err
        with os.fdopen(fd, "w") as file:
            file.write(f"{os.getpid()}\n")
        return path
    raise RunDirError(f"{workdir} is in use by another run (its lock keeps changing)")


def claim(workdir: pathlib.Path) -> tuple[pathlib.Path | None, pathlib.Path]:
    """`create` and `acquire_lock`; a directory created here is removed again if the lock is refused.

    Returns:
      (the topmost directory created or None, as `create` returns it; the lock path).
    """
    created = create(workdir)
    try:
        return created, acquire_lock(workdir)
    except BaseException:
        remove_empty(workdir, created)
        raise


def release_lock(path: pathlib.Path) -> None:
    """Removes the lock if this process still holds it."""
    with contextlib.suppress(OSError, ValueError):
        if int(path.read_text().strip()) == os.getpid():
            path.unlink()


def clear(workdir: pathlib.Path, everything: bool) -> None:
    """Removes a previous run's outputs (all entries but the lock if `everything`)."""
    names = [p.name for p in workdir.iterdir()] if everything else RUN_OUTPUTS
    for name in names:
        path = workdir / name
        if name == LOCK_NAME or not (path.exists() or path.is_symlink()):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def leftovers(workdir: pathlib.Path) -> list[str]:
    """Names of run outputs present in `workdir`."""
    return [name for name in RUN_OUTPUTS if (workdir / name).exists()]


def remove_empty(workdir: pathlib.Path, created: pathlib.Path | None) -> None:
    """Removes `workdir` and the parents up to `created` (those this run made) while empty."""
    if created is None:
        return
    for path in (workdir, *workdir.parents):
        if not path.is_relative_to(created):
            break
        with contextlib.suppress(OSError):
            path.rmdir()  # only if empty: another run may have made a sibling meanwhile


def discard(workdir: pathlib.Path, created: pathlib.Path | None, keep: bool) -> None:
    """Cleans up after a run that did not finish; call it while holding the lock.

    A directory this run created is removed whole unless `keep` (it holds something worth
    resuming); otherwise only empty checkpoint folders go, so no empty `checkpoints/` is
    left behind.
    """
    if created is not None and not keep:
        shutil.rmtree(workdir, ignore_errors=True)
        remove_empty(workdir.parent, created)
        return
    for sub in ("latest", "best", ""):
        with contextlib.suppress(OSError):
            (workdir / "checkpoints" / sub).rmdir()
