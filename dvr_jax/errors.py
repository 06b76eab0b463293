"""Errors of a training run itself (bad inputs raise ConfigError, DataError or CheckpointError,
each from its own module)."""

from __future__ import annotations

import pathlib


class TrainingDiverged(RuntimeError):
    """A non-finite loss; the message names the step and the last good checkpoint."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run; `epoch` is the last epoch it completed."""

    def __init__(self, epoch: int, workdir: pathlib.Path):
        super().__init__(f"interrupted at epoch {epoch} in {workdir}")
        self.epoch, self.workdir = epoch, workdir
