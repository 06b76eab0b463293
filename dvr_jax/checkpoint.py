"""Orbax checkpoints of the training state plus JSON metadata, written atomically.

Each save is one orbax step directory holding two items: `state` (the array pytree,
bit-exact on restore) and `meta` (JSON: epoch, early-stopping bookkeeping). Orbax writes to
a temporary directory and renames it when complete, so a run killed during a save leaves
the previous checkpoint intact; the next manager over that directory deletes the temporary
one. A manager keeps one step, the one saved last (`max_to_keep=1`): the run loop saves
`latest` at every checkpoint and `best` only on improvement, so that step is the one wanted.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable
from typing import Any

import jax
import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
    """A missing or unreadable checkpoint."""


def open_manager(directory: str | pathlib.Path, *, max_to_keep: int = 1) -> ocp.CheckpointManager:
    """A synchronous checkpoint manager over `directory` (created if needed; unfinished saves removed)."""
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True, enable_async_checkpointing=False,
                                           cleanup_tmp_directories=True)  # fmt: skip
    return ocp.CheckpointManager(pathlib.Path(directory).absolute(), options=options)


def finished_steps(directory: str | pathlib.Path) -> list[int]:
    """The completed checkpoint steps in `directory` (none if it is missing); creates nothing."""
    directory = pathlib.Path(directory)
    return sorted(ocp.path.step.checkpoint_steps(directory)) if directory.is_dir() else []


def disk_bytes(directory: str | pathlib.Path) -> int:
    """Total size of the regular files under `directory` (0 if it is missing)."""
    return sum(p.stat().st_size for p in pathlib.Path(directory).rglob("*") if p.is_file() and not p.is_symlink())


def save(manager: ocp.CheckpointManager, step: int, state: Any, meta: dict[str, Any]) -> None:
    """Saves `state` and `meta` under `step` (replacing one left by a replayed epoch) and waits."""
    if step in manager.all_steps():  # a resumed run replays epochs after its last `latest` save
        manager.delete(step)
    manager.save(
        step,
        args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
        force=True,
    )
    manager.wait_until_finished()


BACKBONE_ONLY = "backbone_params"  # `meta["content"]` of a checkpoint that holds only the backbone's params


def save_backbone(manager: ocp.CheckpointManager, step: int, params: Any, meta: dict[str, Any]) -> None:
    """Saves only the backbone's params (what evaluation and a warm start read), not the method state."""
    save(manager, step, params, {**meta, "content": BACKBONE_ONLY})


def restore_backbone(
    manager: ocp.CheckpointManager, like: Any, backbone_params: Callable[[Any], Any], *, strict: bool = True
) -> Any:
    """The backbone params of the latest checkpoint in `manager`.

    Reads checkpoints written by `save_backbone` and, for runs written before it, ones that
    hold the method's whole state (`like` is that state; `backbone_params` extracts them).
    `strict=False`: see `restore`.
    """
    step = manager.latest_step()
    if step is None:
        raise CheckpointError(f"no checkpoint found in {manager.directory}")
    try:
        meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    except Exception as err:  # orbax raises many types for damaged files
        raise CheckpointError(f"checkpoint {manager.directory}/{step} is unreadable: {type(err).__name__}") from err
    if dict(meta).get("content") == BACKBONE_ONLY:
        return restore(manager, backbone_params(like), step, strict=strict)[0]
    return backbone_params(restore(manager, like, step, strict=strict)[0])


def saved_shapes(manager: ocp.CheckpointManager, step: int | None = None) -> Any:
    """The shapes of the arrays of the latest (or given) checkpoint's state, as saved (a pytree of tuples).

    Raises:
      CheckpointError: no checkpoint, or one whose metadata cannot be read.
    """
    step = manager.latest_step() if step is None else step
    if step is None:
        raise CheckpointError(f"no checkpoint found in {manager.directory}")
    path = pathlib.Path(manager.directory) / str(step) / "state"
    try:
        # The handler reads the item's own `_METADATA`; the checkpointer would also look for a
        # step-level `_CHECKPOINT_METADATA` inside the item folder and warn that it is missing.
        tree = ocp.StandardCheckpointHandler().metadata(path).tree
    except Exception as err:  # orbax raises many types for damaged files
        raise CheckpointError(f"checkpoint {manager.directory}/{step} is unreadable: {type(err).__name__}") from err
    return jax.tree.map(lambda leaf: tuple(leaf.shape), tree, is_leaf=lambda leaf: hasattr(leaf, "shape"))


def restore(
    manager: ocp.CheckpointManager, like: Any, step: int | None = None, *, strict: bool = True
) -> tuple[Any, dict[str, Any], int]:
    """Restores the latest (or given) checkpoint into the structure of `like`.

    Args:
      manager: the manager.
      like: a state pytree with the expected structure, shapes and dtypes (arrays or
        `jax.ShapeDtypeStruct`s); their shardings are the restored arrays' (a table split over
        devices is read into its shards).
      step: checkpoint step; None for the latest.
      strict: False: an array saved with another shape is cut or padded with zeros at its
        end to `like`'s (a table padded to another multiple of rows, `dvr_jax.sharding`);
        the caller checks that only pad rows change.

    Returns:
      (state, meta, step).

    Raises:
      CheckpointError: no checkpoint, or one that cannot be read.
    """
    step = manager.latest_step() if step is None else step
    if step is None:
        raise CheckpointError(f"no checkpoint found in {manager.directory}")
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    try:
        restored = manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract, strict=strict), meta=ocp.args.JsonRestore()
            ),
        )
    except Exception as err:  # orbax raises many types for damaged files
        raise CheckpointError(
            f"checkpoint {manager.directory}/{step} is unreadable: {type(err).__name__}: {err}".splitlines()[0]
        ) from err
    return restored["state"], dict(restored["meta"]), int(step)
