"""Runs over several processes (hosts) with JAX's own runtime: start-up, the main process, agreement.

A run over P processes starts JAX's distributed runtime in every process before any other JAX
call (`initialize`); `jax.devices()` then lists the devices of all processes and the data mesh
spans them. Every process runs the same program on the same data with the same keys, so each
computes the same batches of pair indices and the jitted step takes its own devices' slices
of them; the state is replicated, and XLA's collectives (gloo on CPU, NCCL on GPU, ICI on TPU)
join the processes inside the step and the sharded evaluation.

Two rules keep the processes in step (a process that runs one collective more than the others
waits for the others forever):

* every process runs every jitted computation, evaluation included, in the same order;
* decisions read from files (resume or start afresh, reuse a warm start) are taken by process
  0 alone and passed to the others (`agree`), so a file seen by one process and not yet by
  another cannot send them down different paths. Process 0 alone writes the run directory
  (`is_main`); what it does alone contains no collective.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Iterator
from typing import TypeVar

import jax
import numpy as np
from jax.experimental import multihost_utils

from dvr_jax.config import ConfigError

T = TypeVar("T", bound=int)
FAILED = -1  # what `agree` passes on when process 0's decision raised


class ProcessZeroFailed(RuntimeError):
    """Raised in processes other than 0 when the step that process 0 took alone failed there."""


def initialize(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    auto: bool = False,
) -> bool:
    """Starts JAX's distributed runtime; call it before any other JAX call of the process.

    With `auto` the missing values come from the cluster's environment (SLURM, Open MPI, a
    Cloud TPU slice, Kubernetes: `jax.distributed.initialize()`'s own detection). CPU
    collectives between processes use gloo.

    Args:
      coordinator: "host:port" of process 0's coordinator service.
      num_processes: the number of processes.
      process_id: this process's index in [0, num_processes).
      auto: detect what is not given from the cluster's environment.

    Returns:
      Whether the runtime was started (False: no coordinator and not `auto`, one process).

    Raises:
      ConfigError: the runtime could not start (`auto` outside a cluster it knows, a coordinator
        that did not answer in time).
    """
    if coordinator is None and not auto:
        return False
    if jax.distributed.is_initialized():  # a second run in the same process joins the same runtime
        return True
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    given = {"coordinator_address": coordinator, "num_processes": num_processes, "process_id": process_id}
    try:
        jax.distributed.initialize(**{name: value for name, value in given.items() if value is not None})
    except (ValueError, RuntimeError) as err:  # JAX's messages are long; the first line says what is missing
        raise ConfigError(f"cannot start JAX's distributed runtime: {str(err).strip().splitlines()[0]}") from err
    return True


def is_main() -> bool:
    """Whether this is process 0, the one that writes the run directory and prints."""
    return jax.process_index() == 0


def agree(decide: Callable[[], T]) -> T:
    """Process 0's `decide()` (a non-negative int), on every process.

    Only process 0 calls `decide`; the others receive its value (one broadcast, which every
    process must reach). If `decide` raises on process 0, it raises there and the others
    raise `ProcessZeroFailed`, so no process goes on to wait in a collective alone.
    """
    if jax.process_count() == 1:
        return decide()
    value, error = FAILED, None
    if is_main():
        try:
            value = decide()
        except BaseException as err:  # passed on below, after the others heard of it
            error = err
    agreed = int(multihost_utils.broadcast_one_to_all(np.int32(value)))
    if error is not None:
        raise error
    if agreed == FAILED:
        raise ProcessZeroFailed("process 0 failed (its output says why); stopping this process too")
    return agreed  # type: ignore[return-value]


def same_everywhere(text: str) -> bool:
    """Whether every process passed the same `text`; the same answer in all (one all-gather of a digest)."""
    if jax.process_count() == 1:
        return True
    digest = np.frombuffer(hashlib.sha256(text.encode()).digest(), np.uint8)
    gathered = np.asarray(multihost_utils.process_allgather(digest))  # [processes, 32], alike in all
    return bool((gathered == gathered[0]).all())


def on_main(work: Callable[[], object]) -> None:
    """Runs `work` (writing files, no collective) on process 0 while the others wait for it.

    A failure of `work` raises on process 0 and `ProcessZeroFailed` on the others (`agree`).
    """

    def run() -> int:
        work()
        return 0

    agree(run)


@contextlib.contextmanager
def silent_unless_main() -> Iterator[None]:
    """Sends stdout and stderr of processes other than 0 to the null device inside the block.

    An exception leaving the block is printed after it, so a process that fails still says why.
    """
    if is_main():
        yield
        return
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), contextlib.redirect_stderr(null):
        yield
