"""One process of a run over several: `python tests/multiprocess/run_process.py REPORT [--interrupt-at E] -- FLAGS`.

Runs `experiments/run.py FLAGS` in this process and writes REPORT (JSON): its exit status and every
file or folder it created, wrote, moved or removed under `--out` outside `checkpoints/` (Python's
audit events; the checkpoints are written by all processes together through orbax).
`--interrupt-at E` stops the run with a Ctrl-C at the start of epoch E (0-based), as a user would.
"""

from __future__ import annotations

import json
import pathlib
import sys

WRITE_EVENTS = ("os.mkdir", "os.remove", "os.rename", "os.rmdir", "shutil.rmtree", "os.truncate")


def _record(out: pathlib.Path, seen: list[str]):
    """An audit hook adding to `seen` the paths under `out` (outside checkpoints/) that this process changes."""

    def hook(event: str, args: tuple) -> None:
        if event == "open":
            paths, mode, flags = args[:1], args[1], args[2]
            if not ((mode is not None and any(c in mode for c in "wax+")) or (flags or 0) & 0o3):
                return
        elif event in WRITE_EVENTS:
            paths = args[:2] if event == "os.rename" else args[:1]  # a rename: both names
        else:
            return
        for path in paths:
            if not isinstance(path, (str, pathlib.PurePath)):
                continue
            resolved = pathlib.Path(path).absolute()
            if resolved.is_relative_to(out) and not resolved.is_relative_to(out / "checkpoints"):
                seen.append(str(resolved.relative_to(out)))

    return hook


def main(report: str, *rest: str) -> int:
    interrupt_at = None
    if rest[0] == "--interrupt-at":
        interrupt_at, rest = int(rest[1]), rest[2:]
    flags = list(rest[1:])  # after "--"
    out = pathlib.Path(flags[flags.index("--out") + 1]).absolute()
    seen: list[str] = []
    sys.addaudithook(_record(out, seen))
    from dvr_jax import loop
    from experiments import run

    if interrupt_at is not None:
        train_epoch = loop._train_epoch

        def interrupted(components, step_fn, state, keys, epoch, *args):
            if epoch == interrupt_at:
                raise KeyboardInterrupt
            return train_epoch(components, step_fn, state, keys, epoch, *args)

        loop._train_epoch = interrupted
    status = run.main(flags)
    pathlib.Path(report).write_text(json.dumps({"status": status, "writes": sorted(set(seen))}))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
