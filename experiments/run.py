"""Command-line entry point: `python experiments/run.py --dataset lastfm --reward recall`.

Installed, the same entry point is the `dvr-jax` command. Every field of
`dvr_jax.config.RunConfig` is a flag `--field-name`, generated from the dataclass (its type,
help, group and default: `--help` lists them); `--config PRESET` loads a preset from
`experiments/configs/presets.py` and explicit flags override it. Unknown flags and bad
values (`--lr nan`, `--method nope`) end with a one-line argparse error naming the flag and
exit status 2. Bad input found later (unknown dataset or backbone, option combinations,
malformed files, a missing or corrupted checkpoint) ends with a one-line message and exit
status 2, and a diverged loss with exit status 3, not a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from typing import Any, Literal, NoReturn

from dvr_jax.checkpoint import CheckpointError  # noqa: E402
from dvr_jax.config import FIELD_TYPES, GROUPS, ConfigError, RunConfig, field_problem  # noqa: E402
from dvr_jax.data import DataError  # noqa: E402
from experiments.configs.presets import PRESETS  # noqa: E402

USER_ERRORS = (ConfigError, CheckpointError, DataError)
ALIASES = {"learning_rate": ("--lr",)}  # extra spellings of a field's flag
NONE_WORDS = ("none", "off")  # spell None for an `int | None` field
NONE_MEANS = {"kcore": 0}  # `--kcore none` disables filtering; leaving the flag out keeps the dataset's k-core
GROUP_TITLES = {"run": "run: what to train and where it goes", "data": "data: dataset, filtering, split",
                "training": "training: budget, optimiser, validation, warm start",
                "dvr": "DVR: valuator and metric adapter (--method dvr)",
                "baselines": "baselines: AOBPR, WBPR, PRIS, TCE, RCE, TIL"}  # fmt: skip
METAVARS = {int: "INT", float: "FLOAT", str: "TEXT"}


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (its usage line would not help: there are ~70 flags)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def show_default(value: Any) -> str:
    """A default as `--help` shows it: none, or the value as typed on the command line."""
    if value is None:
        return "none"
    return " ".join(map(str, value)) if isinstance(value, tuple) else str(value)


def _converter(name: str, kind: Any, optional: bool, element: bool):
    """The argparse `type` of field `name`: text -> `kind`, then the field's own checks.

    Raises argparse.ArgumentTypeError, so a bad value is a one-line error naming the flag.
    """

    def convert(text: str) -> Any:
        if optional and text.lower() in NONE_WORDS:
            value = NONE_MEANS.get(name)
        else:
            try:
                value = kind(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"expected {METAVARS[kind].lower()}, got {text!r}") from None
        problem = field_problem(name, (value,) if element else value)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value

    convert.__name__ = METAVARS[kind].lower()
    return convert


def _add_flag(group: argparse._ArgumentGroup, field: dataclasses.Field) -> None:
    """Adds `--field-name` (and its ALIASES): typed, checked, with help, default and choices.

    A field with a `choices` callable in its metadata (`--method`, from the method registry)
    gets the choices registered when the parser is built.
    """
    kind = FIELD_TYPES[field.name]
    flags = ["--" + field.name.replace("_", "-"), *ALIASES.get(field.name, ())]
    shown = field.metadata.get("default_text") or show_default(field.default)
    text = f"{field.metadata.get('help', '')} (default: {shown})".replace("%", "%%")
    if kind is bool:  # --x / --no-x
        group.add_argument(*flags, action=argparse.BooleanOptionalAction, help=text)
        return
    if typing.get_origin(kind) is Literal:
        group.add_argument(*flags, choices=typing.get_args(kind), help=text)
        return
    if "choices" in field.metadata:  # an open set (a registry): read now, when the parser is built
        group.add_argument(*flags, choices=field.metadata["choices"](), help=text)
        return
    args = typing.get_args(kind)
    optional, element = type(None) in args, typing.get_origin(kind) is tuple
    scalar = args[0] if (optional or element) else kind
    extra = {"nargs": "+"} if element else {}
    metavar = METAVARS[scalar] + ("|none" if optional and scalar is not str else "")
    group.add_argument(*flags, type=_converter(field.name, scalar, optional and scalar is not str, element),
                       metavar=metavar, help=text, **extra)  # fmt: skip


def parser() -> argparse.ArgumentParser:
    """The CLI, generated from `RunConfig`'s fields: one flag per field, in the field's group.

    A generator over `dataclasses.fields` rather than a library (tyro, ml_collections) or a
    hand-written list: it adds no dependency, it covers every field shape RunConfig uses
    (str, int, float, bool, Literal, `X | None`, `tuple[int, ...]`) in ~60 lines, and a new
    field gets its flag, help, default and checks with nothing else to edit, where the
    hand-written list had drifted (fields without flags, defaults copied into help text).
    Every default is argparse.SUPPRESS: the namespace holds only the flags given, so a
    preset and RunConfig's defaults fill the rest, and `--patience none` overrides a preset.
    """
    p = _Parser(description="Train and evaluate a recommender (BPR baselines and DVR).", allow_abbrev=False,
                usage="%(prog)s [--config PRESET] [--FLAG VALUE ...]", argument_default=argparse.SUPPRESS)  # fmt: skip
    p.add_argument("--config", choices=sorted(PRESETS), help="preset of fields; the flags given override it")
    groups = {name: p.add_argument_group(GROUP_TITLES[name]) for name in GROUPS}
    for field in dataclasses.fields(RunConfig):
        _add_flag(groups[field.metadata.get("group", "run")], field)
    return p


def config_from_args(argv: list[str] | None = None) -> RunConfig:
    """Parses flags into a RunConfig: defaults <- preset <- explicit flags.

    Raises:
      SystemExit: status 2 on an unknown flag or a bad value (one line on stderr).
      ConfigError: on a combination of values no single flag rules out (e.g. an unknown backbone).
    """
    args = vars(parser().parse_args(argv))
    preset = PRESETS[args.pop("config")] if "config" in args else {}
    flags = {name: tuple(value) if isinstance(value, list) else value for name, value in args.items()}
    return RunConfig(**{**preset, **flags})


def main(argv: list[str] | None = None) -> int:
    """Runs the CLI; returns the exit status: 0, 2 bad input, 3 diverged, 130 interrupted (Ctrl-C)."""
    try:
        cfg = config_from_args(argv)
        from dvr_jax.loop import TrainingDiverged, train_and_evaluate

        try:
            train_and_evaluate(cfg)
        except TrainingDiverged as err:
            print(f"error: {err}", file=sys.stderr)
            return 3
    except USER_ERRORS as err:  # a RunDirError (--out unusable or in use) is a ConfigError
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:  # loop.RunInterrupted carries the last completed epoch
        print(f"interrupted at epoch {getattr(err, 'epoch', 0)}; resume with --resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
