"""The data pipeline's single exception type, with one-line, self-contained messages.

Every problem with a user's input (a malformed file, a missing file, an unknown dataset
name, a checksum mismatch) is raised as `DataError`. Its message names the file and,
where a line is at fault, the 1-based line number, e.g. ``ml-100k.inter line 17:
expected 4 columns, got 3``, so the CLI can print ``str(err)`` on one line and exit
non-zero.
"""

from __future__ import annotations


class DataError(ValueError):
    """Bad or missing input data; the message is one self-contained line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


def at_line(fname: str, line: int | None, message: str) -> DataError:
    """Builds a `DataError` located at `fname` (and `line`, 1-based, when given)."""
    where = fname if line is None else f"{fname} line {line}"
    return DataError(f"{where}: {message}")
