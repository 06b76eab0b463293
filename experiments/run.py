"""Command-line entry point: `python experiments/run.py --dataset lastfm --reward recall`.

Installed, the same entry point is the `dvr-jax` command. Every field of the config tree is a
flag generated from its dataclass (its type, help, group and default: `--help` lists them):
`dvr_jax.config.RunConfig`'s fields as `--field-name`, and each registered method's options as
`--<prefix>-<field>` in a group of their own (`--tce-drop-rate`; DVR's without a prefix, e.g.
`--estimator`). An option of another method than `--method` is refused with one line.
`--config PRESET` loads a preset from
`experiments/configs/presets.py` and explicit flags override it. Unknown flags and bad
values (`--lr nan`, `--method nope`) end with a one-line argparse error naming the flag and
exit status 2. Bad input found later (unknown dataset or backbone, option combinations,
malformed files, a missing or corrupted checkpoint) ends with a one-line message and exit
status 2, and a diverged loss with exit status 3, not a traceback.

One run over several processes (one per host, or per accelerator) starts each of them with
`--coordinator HOST:PORT --num-processes N --process-id I` (or `--distributed auto` under
SLURM, Open MPI, on a Cloud TPU slice); process 0 writes the run directory and prints.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from typing import Any, Literal, NoReturn

from dvr_jax import distributed
from dvr_jax.checkpoint import CheckpointError  # noqa: E402
from dvr_jax.config import FIELDS, GROUPS, ConfigError, RunConfig, all_options, field_problem, make_config  # noqa: E402
from dvr_jax.data import DataError  # noqa: E402
from experiments.configs.presets import PRESETS  # noqa: E402

# ProcessZeroFailed: process 0 of a run over several processes stopped (its own message says why).
USER_ERRORS = (ConfigError, CheckpointError, DataError, distributed.ProcessZeroFailed)
ALIASES = {"learning_rate": ("--lr",)}  # extra spellings of a field's flag
NONE_WORDS = ("none", "off")  # spell None for an `int | None` field
NONE_MEANS = {"kcore": 0}  # `--kcore none` disables filtering; leaving the flag out keeps the dataset's k-core
GROUP_TITLES = {"run": "run: what to train and where it goes", "data": "data: dataset, filtering, split",
                "training": "training: budget, optimiser, validation, warm start",
                "processes": "processes: one run over several processes (hosts) with JAX's runtime"}  # fmt: skip
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


def _converter(name: str, owner: type, flat: str, kind: Any, optional: bool, element: bool):
    """The argparse `type` of field `name` of `owner` (flag `flat`): text -> `kind`, then the field's checks.

    Raises argparse.ArgumentTypeError, so a bad value is a one-line error naming the flag.
    """

    def convert(text: str) -> Any:
        if optional and text.lower() in NONE_WORDS:
            value = NONE_MEANS.get(flat)
        else:
            try:
                value = kind(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"expected {METAVARS[kind].lower()}, got {text!r}") from None
        problem = field_problem(name, (value,) if element else value, owner)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value

    convert.__name__ = METAVARS[kind].lower()
    return convert


def _add_flag(group: argparse._ArgumentGroup, field: dataclasses.Field, owner: type, flat: str) -> None:
    """Adds `--flat-name` (and its ALIASES) for `field` of `owner`: typed, checked, with help, default, choices.

    A field with a `choices` callable in its metadata (`--method`, from the method registry)
    gets the choices registered when the parser is built.
    """
    kind = typing.get_type_hints(owner)[field.name]
    flags = ["--" + flat.replace("_", "-"), *ALIASES.get(flat, ())]
    shown = field.metadata.get("default_text") or show_default(field.default)
    text = f"{field.metadata.get('help', '')} (default: {shown})".replace("%", "%%")
    if kind is bool:  # --x / --no-x
        group.add_argument(*flags, dest=flat, action=argparse.BooleanOptionalAction, help=text)
        return
    if typing.get_origin(kind) is Literal:
        group.add_argument(*flags, dest=flat, choices=typing.get_args(kind), help=text)
        return
    if "choices" in field.metadata:  # an open set (a registry): read now, when the parser is built
        group.add_argument(*flags, dest=flat, choices=field.metadata["choices"](), help=text)
        return
    args = typing.get_args(kind)
    optional, element = type(None) in args, typing.get_origin(kind) is tuple
    scalar = args[0] if (optional or element) else kind
    extra = {"nargs": "+"} if element else {}
    metavar = METAVARS[scalar] + ("|none" if optional and scalar is not str else "")
    convert = _converter(field.name, owner, flat, scalar, optional and scalar is not str, element)
    group.add_argument(*flags, dest=flat, type=convert, metavar=metavar, help=text, **extra)


def parser() -> argparse.ArgumentParser:
    """The CLI, generated from the config tree: RunConfig's fields, then each method's options.

    A generator over `dataclasses.fields` rather than a library (tyro, ml_collections) or a
    hand-written list: it adds no dependency, it covers every field shape the tree uses (str,
    int, float, bool, Literal, `X | None`, `tuple[int, ...]`) in ~70 lines, it reads the method
    registry when called (so a method registered at run time brings its options' flags), and a
    new field gets its flag, help, default and checks with nothing else to edit, where the
    hand-written list had drifted (fields without flags, defaults copied into help text).
    Every default is argparse.SUPPRESS: the namespace holds only the flags given, so a
    preset and the dataclasses' defaults fill the rest, and `--patience none` overrides a preset.
    """
    p = _Parser(description="Train and evaluate a recommender (BPR baselines and DVR).", allow_abbrev=False,
                usage="%(prog)s [--config PRESET] [--FLAG VALUE ...]", argument_default=argparse.SUPPRESS)  # fmt: skip
    p.add_argument("--config", choices=sorted(PRESETS), help="preset of fields; the flags given override it")
    groups = {name: p.add_argument_group(GROUP_TITLES[name]) for name in GROUPS}
    for name, field in FIELDS.items():
        _add_flag(groups[field.metadata["group"]], field, RunConfig, name)
    option_groups: dict[type, argparse._ArgumentGroup] = {}
    for flat, (owner, field, _) in all_options().items():
        if owner not in option_groups:
            title = (owner.__doc__ or owner.__name__).strip().splitlines()[0].rstrip(".")
            option_groups[owner] = p.add_argument_group(title)
        _add_flag(option_groups[owner], field, owner, flat)
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
    return make_config(**{**preset, **flags})


def main(argv: list[str] | None = None) -> int:
    """Runs the CLI; returns the exit status: 0, 2 bad input, 3 diverged, 130 interrupted (Ctrl-C).

    A run over several processes starts JAX's distributed runtime before any other JAX call
    (parsing the flags makes none).
    """
    try:
        cfg = config_from_args(argv)
        distributed.initialize(cfg.coordinator, cfg.num_processes, cfg.process_id, auto=cfg.distributed == "auto")
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
