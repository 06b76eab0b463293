"""Progress with an ETA on stderr, for training runs, their evaluations and grids of runs.

The bars draw with `rich` (a dependency of flax) only when stderr is a terminal; in a log
file or under a test they print nothing but the lines passed to `line`, so logs stay
readable. Nothing here reads device values: the step loop calls `update` with host
integers only, so the bar adds no device-to-host sync.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def _bar(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=console, transient=True,
    )  # fmt: skip


ChunkCallback = Callable[[int, int], None]  # (chunks done, chunks in all) of an evaluation


class _Bars:
    """The bars' lifetime: `close` removes them (idempotent); as a context manager, on exit.

    Every display also shows evaluations: `evaluation(label)` returns the callback that
    `dvr_jax.evaluation.evaluate` calls after each chunk of users (None when nothing is drawn,
    so the evaluation keeps its single sync at the end).
    """

    _progress: Progress | None = None
    _eval_task: object | None = None

    def evaluation(self, label: str) -> ChunkCallback | None:
        """A bar over the chunks of users of one evaluation (`label`: "valid", "test"), hidden when done."""
        if self._progress is None:
            return None
        progress = self._progress
        if self._eval_task is None:
            self._eval_task = progress.add_task("", total=None, status="", visible=False)
        task = self._eval_task
        progress.reset(task, total=None, description=f"  {label} users", status="", visible=True)

        def on_chunk(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total, visible=done < total)

        return on_chunk

    def close(self) -> None:
        """Removes the bars (idempotent)."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class TrainingProgress(_Bars):
    """Two bars: epochs of the run (ETA to the epoch budget) and steps of the current epoch.

    Attributes:
      enabled: whether bars are drawn (requested and stderr is a terminal).
      status: a short text shown beside the bars (e.g. the last loss).
    """

    def __init__(self, enabled: bool, epochs: int, *, label: str = "train", start_epoch: int = 0):
        self.enabled, self.status = enabled and sys.stderr.isatty(), ""
        self._console = Console(stderr=True)
        self._progress = None
        if self.enabled:
            self._progress = _bar(self._console)
            self._epochs = self._progress.add_task(f"{label} epochs", total=epochs, completed=start_epoch, status="")
            self._steps = self._progress.add_task("  steps", total=None, status="")
            self._progress.start()

    def update(self, epoch: int, done: int, total: int) -> None:
        """Step `done` of `total` of epoch `epoch` (0-based) has been dispatched."""
        if self._progress is None:
            return
        if done == 1:
            self._progress.reset(self._steps, total=total, status="")
        self._progress.update(self._steps, completed=done, status=self.status)
        if done == total:
            self._progress.update(self._epochs, completed=epoch + 1, status=self.status)

    def line(self, text: str) -> None:
        """Prints a line on stderr (above the bars while they are drawn)."""
        if self._progress is None:
            print(text, file=sys.stderr, flush=True)
        else:
            self._console.print(text, highlight=False, markup=False)


class EvaluationProgress(_Bars):
    """Bars for the evaluations after training (best model on validation, then test): `evaluation`."""

    def __init__(self, enabled: bool):
        self._progress = _bar(Console(stderr=True)) if enabled and sys.stderr.isatty() else None
        if self._progress is not None:
            self._progress.start()


class GridProgress(_Bars):
    """One bar over the cells of a grid of runs (tables, reproductions), with an ETA."""

    def __init__(self, total: int, *, label: str = "runs", enabled: bool = True):
        self._progress = _bar(Console(stderr=True)) if enabled and sys.stderr.isatty() else None
        if self._progress is not None:
            self._task = self._progress.add_task(label, total=total, status="")
            self._progress.start()

    def advance(self, status: str = "") -> None:
        """One more cell finished (or reused); `status` names it."""
        if self._progress is not None:
            self._progress.update(self._task, advance=1, status=status)
