"""The run configuration: a typed, frozen tree whose annotations drive its validation and its CLI.

`RunConfig` holds what every run has (data, backbone, budget, validation, run directory) and,
in `options`, the method's own options: a small frozen dataclass that the method's registry
entry owns (`MethodEntry.options`, e.g. `TCEOptions` next to TCE's builder in
`dvr_jax/builders.py`; docs/engineering.md §12). Every field, of RunConfig and of each options
class, declares its type (a `Literal` for a closed set of choices), a one-line help and, for
numbers, its bounds (`min`, `gt`, `max`, `lt`) in `dataclasses.field` metadata; RunConfig's
fields also declare their `--help` group. `RunConfig.__post_init__` checks every field of the
tree against its declaration in one loop, then the few cross-field rules that one field cannot
state (the method's own through its entry's `check`).

Flat names. On the command line, in `config.json`, in presets and in `make_config` /
`RunConfig.replace`, an option is spelled `<prefix>_<name>` with the entry's prefix (TCE's
`drop_rate` is `tce_drop_rate`, flag `--tce-drop-rate`); DVR's options have no prefix
(`reward_fraction`, `--estimator`). `experiments/run.py` generates its flags from the same
declarations, so a field, its flag, its help and its checks cannot drift apart. Only
`experiments/` builds a RunConfig and only `dvr_jax/loop.py` and the registry's builders read
it; library functions take plain typed arguments. `method` is checked against the method
registry: its choices are read when asked for, so a method registered at run time is valid.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import numbers
import operator
import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal


class ConfigError(ValueError):
    """An invalid configuration value or an unknown option."""


Reward = Literal["loss", "recall", "ndcg", "cc", "ild", "gini"]
REWARDS: tuple[str, ...] = typing.get_args(Reward)
# RunConfig's flag groups, in `--help` order; then one per options class
GROUPS = ("run", "data", "training", "processes")
WEIGHT_DECAY_BACKBONES = ("mf", "neumf")  # the backbones whose optimizer adds a coupled L2 (`weight_decay`)
BOUNDS = {"min": (operator.ge, ">="), "gt": (operator.gt, ">"), "max": (operator.le, "<="), "lt": (operator.lt, "<")}


def _field(group: str, default: Any, help: str, *, default_text: str | None = None,
           choices: Callable[[], tuple[str, ...]] | None = None, **bounds: float) -> Any:  # fmt: skip
    """A RunConfig field: its default, one line of help, its flag group and its bounds.

    `default_text` describes a None default that `__post_init__` or the loop resolves
    (shown by `--help` instead of "none"); `choices` returns the allowed values of a `str`
    field whose set is open (a registry), read at check and parser-build time; `bounds` are
    `BOUNDS` keys, checked per element for tuples.
    """
    if group not in GROUPS or not set(bounds) <= set(BOUNDS):
        raise ValueError(f"bad field declaration: group {group!r}, bounds {sorted(bounds)}")
    meta = {"group": group, "help": help, **bounds, **({"default_text": default_text} if default_text else {})}
    return dataclasses.field(default=default, metadata={**meta, **({"choices": choices} if choices else {})})


def option(default: Any, help: str, *, default_text: str | None = None, **bounds: float) -> Any:
    """A field of a method's options dataclass: its default, one line of help and its bounds.

    `default_text` describes a None default that the method's entry resolves (its `defaults`)
    or its builder reads as "derive from another field" (shown by `--help` instead of "none").
    """
    if not set(bounds) <= set(BOUNDS):
        raise ValueError(f"bad option declaration: bounds {sorted(bounds)}")
    meta = {"help": help, **bounds, **({"default_text": default_text} if default_text else {})}
    return dataclasses.field(default=default, metadata=meta)


def method_names() -> tuple[str, ...]:
    """The registered methods (`dvr_jax.registry`), read when asked for."""
    from dvr_jax import registry  # noqa: PLC0415  (config stays importable alone)

    return registry.method_names()


def __getattr__(name: str) -> Any:
    """`METHODS`: the registered methods at the time of asking (module attribute, PEP 562)."""
    if name == "METHODS":
        return method_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything a run needs; `dataclasses.asdict` of it is written to `config.json`.

    Every field is a CLI flag `--field-name`; its metadata holds the help, group and bounds.
    """

    dataset: str = _field("data", "lastfm", "lastfm, ml-100k, lastfm-lightgcn, gowalla, a RecBole atomic name, "
                          "or a .csv/.tsv file")  # fmt: skip
    data_dir: str | None = _field(
        "data",
        None,
        "folder holding one <dataset>/ folder per dataset",
        default_text="$DVR_DATA_DIR, else ~/.cache/dvr_jax/data",
    )
    method: str = _field(
        "run", "dvr", "DVR, plain BPR, most popular, a baseline, or a registered method", choices=method_names
    )
    backbone: str = _field("run", "mf", "recommender: mf, neumf, mgcf, lightgcn")
    reward: Reward = _field("run", "recall", "the metric DVR adapts to; part of every run's name")
    seed: int = _field("run", 0, "seed of initialisation and sampling", min=0)
    split_seed: int = _field("data", 2024, "seed of the train/valid/test split", min=0)
    kcore: int | None = _field(
        "data",
        None,
        "iterated k-core threshold; 0 or none: no filtering",
        min=0,
        default_text="the dataset's: 10, none for fixed splits",
    )
    epochs: int = _field("training", 2000, "training epochs (an upper bound under early stopping)", min=1)
    batch_size: int | None = _field(
        "training", None, "triplets per step", min=1, default_text="5000, or 1000 for DVR-Loss"
    )
    learning_rate: float = _field("training", 1e-3, "Adam step size of the recommender", gt=0)
    weight_decay: float | None = _field(
        "training", None, "coupled L2 weight decay of the recommender (mf, neumf); the warm start keeps the "
        "backbone's", min=0, default_text="the backbone's: 1e-3 for mf and neumf"
    )  # fmt: skip
    reduction: Literal["sum", "mean"] = _field("training", "sum", "reduction of the batch's BPR losses")
    embedding_dim: int = _field("training", 64, "embedding width D", min=1)
    valid_interval: int = _field("training", 10, "validate every N epochs", min=1)
    patience: int | None = _field("training", 10, "validation checks without improvement before stopping; "
                                  "none: never stop early", min=1)  # fmt: skip
    select_metric: str = _field("training", "recall@20", "validation metric selecting the checkpoint, "
                                "<metric>@K with K in --ks")  # fmt: skip
    select_split: Literal["valid", "test"] = _field("training", "valid", "the split whose metric selects the "
                                                    "checkpoint; test (the released code's maximum over epochs of "
                                                    "test Recall@20) makes the run test-leaky")  # fmt: skip
    ks: tuple[int, ...] = _field("training", (10, 20), "cut-offs K of the reported metrics", min=1)
    eval_chunk: int | None = _field(
        "training",
        None,
        "users per evaluation chunk",
        min=1,
        default_text="sized so a chunk's [C, I] scores fit the cache",
    )
    checkpoint_every: int = _field("run", 10, "epochs between checkpoints of the resumable state", min=1)
    devices: int | None = _field("run", None, "local devices the training step runs on: the batch is split over "
                                 "them (a data mesh; over several processes, over all their devices); the batch "
                                 "size must divide by the mesh's device count", min=1,
                                 default_text="all local devices")  # fmt: skip
    model_shards: int = _field("run", 1, "split the embedding tables and their Adam moments by rows over N of the "
                               "devices (a data x model mesh, --devices / N data shards); MF with dvr, bpr, pris, "
                               "tce, rce",
                               min=1)  # fmt: skip
    distributed: Literal["off", "auto"] = _field("processes", "off", "auto: one of several processes, their "
                                                 "coordinator, count and index read from the cluster's environment "
                                                 "(SLURM, Open MPI, a Cloud TPU slice, Kubernetes)")  # fmt: skip
    coordinator: str | None = _field("processes", None, "HOST:PORT of process 0's coordinator: this process is "
                                     "one of several, given their count and its index; the mesh spans the "
                                     "devices of all", default_text="one process")  # fmt: skip
    num_processes: int | None = _field("processes", None, "processes of the run (with a coordinator)", min=1)
    process_id: int | None = _field("processes", None, "this process's index, from 0 to the process count - 1 "
                                    "(with a coordinator); process 0 writes the run directory", min=0)  # fmt: skip
    out: str | None = _field(
        "run", None, "run directory", default_text="runs/<dataset>-<backbone>-<method>-<reward>-s<seed>"
    )
    export: bool = _field("run", False, "also write the splits and test top-K lists as TSV under <out>/export")
    resume: bool = _field("run", False, "continue the run in --out from its latest checkpoint")
    overwrite: bool = _field("run", False, "replace an existing run in --out")
    progress: bool = _field("run", True, "progress bars with an ETA on a terminal; one line per validation check")
    plots: bool = _field(
        "run", True, "draw <out>/plots/curves.png at the end (needs the plots extra; skipped without it)"
    )
    warm_start: str | None = _field("training", None, "auto: train (or reuse) a validation-selected BPR run "
                                    "under runs/pretrained/; none: from scratch; else a run directory",
                                    default_text="auto for dvr, none otherwise")  # fmt: skip
    pretrain_epochs: int | None = _field(
        "training", None, "epochs of the BPR warm-start run", min=1, default_text="--epochs"
    )
    options: Any = dataclasses.field(default=None, metadata={"group": "run", "nested": True, "help": (
        "the method's own options: an instance of its registry entry's `options` dataclass; "
        "none: its defaults")})  # fmt: skip

    def __post_init__(self):
        entry = _entry(self.method)
        options = self.options
        if options is None and entry.options is not None:
            options = entry.options()
        if type(options) is not (entry.options or type(None)):
            wanted = entry.options.__name__ if entry.options else "None"
            raise ConfigError(f"options of method {self.method} must be {wanted}, got {type(options).__name__}")
        object.__setattr__(self, "options", options)  # frozen: set once, here
        defaults = {"batch_size": 5000, "warm_start": "none", **(entry.defaults(self) if entry.defaults else {})}
        core = {name: value for name, value in defaults.items() if name in FIELDS}
        for name, value in core.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)  # resolve defaults once, stay frozen
        own = {name: value for name, value in defaults.items() if name not in FIELDS}
        if own:
            resolved = {name: value for name, value in own.items() if getattr(options, name) is None}
            object.__setattr__(self, "options", dataclasses.replace(options, **resolved))
        for owner in (self, self.options):
            for f in dataclasses.fields(owner) if owner is not None else ():
                if f.metadata.get("nested"):
                    continue
                problem = field_problem(f.name, getattr(owner, f.name), type(owner))
                if problem:
                    raise ConfigError(f"{flat_name(entry, f.name) if owner is self.options else f.name} {problem}")
        self._check_combinations(entry)

    def _check_combinations(self, entry: Any) -> None:
        """The rules no single field states: the backbone registry, the selection metric, the method's options."""
        from dvr_jax.backbones import BACKBONES  # noqa: PLC0415  (config stays importable alone)

        if self.backbone not in BACKBONES:
            raise ConfigError(f"unknown backbone {self.backbone!r}; known: {', '.join(sorted(BACKBONES))}")
        if self.weight_decay is not None and self.backbone not in WEIGHT_DECAY_BACKBONES:
            raise ConfigError(f"weight_decay applies to the backbones {', '.join(WEIGHT_DECAY_BACKBONES)}; "
                              f"{self.backbone} has its own batch L2 and no weight decay")  # fmt: skip
        match = re.fullmatch(r"[a-z_]+@(\d+)", self.select_metric)
        if not match or int(match.group(1)) not in self.ks:
            raise ConfigError(f"select_metric must be <metric>@K with K in ks {self.ks}, got {self.select_metric!r}")
        if self.model_shards > 1:
            self._check_model_shards(entry)
        self._check_processes()
        if entry.check is not None:
            try:
                entry.check(self)
            except ConfigError:
                raise
            except ValueError as err:
                raise ConfigError(str(err)) from err

    def _check_model_shards(self, entry: Any) -> None:
        """Tables split over devices: only for the methods and backbones that support them."""
        from dvr_jax import registry  # noqa: PLC0415
        from dvr_jax.sharding import TABLE_SHARDED_BACKBONES  # noqa: PLC0415

        if not entry.table_sharding:
            supported = ", ".join(m for m in registry.method_names() if registry.get_method(m).table_sharding)
            raise ConfigError(f"--model-shards {self.model_shards}: method {self.method} does not support embedding "
                              f"tables split over devices (supported: {supported})")  # fmt: skip
        if self.backbone not in TABLE_SHARDED_BACKBONES:
            known = ", ".join(TABLE_SHARDED_BACKBONES)
            raise ConfigError(f"--model-shards {self.model_shards}: backbone {self.backbone} does not support "
                              f"embedding tables split over devices (supported: {known})")  # fmt: skip

    def _check_processes(self) -> None:
        """--coordinator comes with --num-processes and --process-id (unless --distributed auto finds them)."""
        if self.coordinator is not None and not re.fullmatch(r"\S+:\d+", self.coordinator):
            raise ConfigError(f"--coordinator must be HOST:PORT, got {self.coordinator!r}")
        given = [name for name in ("num_processes", "process_id") if getattr(self, name) is not None]
        if self.distributed == "auto":
            pass
        elif self.coordinator is None and given:
            raise ConfigError(f"--{given[0].replace('_', '-')} needs --coordinator (or --distributed auto)")
        elif self.coordinator is not None and len(given) < 2:
            raise ConfigError("--coordinator needs --num-processes and --process-id (or --distributed auto)")
        if len(given) == 2 and self.process_id >= self.num_processes:
            raise ConfigError(f"--process-id {self.process_id} must be below --num-processes {self.num_processes}")

    @property
    def run_name(self) -> str:
        return f"{self.dataset}-{self.backbone}-{self.method}-{self.reward}-s{self.seed}"

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with fields changed, by flat name (`estimator=...`, `tce_drop_rate=...`).

        A change of `method` drops the old method's options (the new one starts from its
        defaults, plus the options given here); unknown names raise ConfigError.
        """
        fields = self.to_dict()
        if changes.get("method", self.method) != self.method or "options" in changes:
            fields = {name: value for name, value in fields.items() if name in FIELDS}  # options start afresh
        return make_config(**{**fields, **changes})

    def to_dict(self) -> dict[str, Any]:
        """The flat view written to `config.json`: RunConfig's fields, then the options by flat name."""
        flat = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if not f.metadata.get("nested")}
        if self.options is not None:
            entry = _entry(self.method)
            flat.update({flat_name(entry, f.name): getattr(self.options, f.name)
                         for f in dataclasses.fields(self.options)})  # fmt: skip
        return flat


# Where a run executes, not what it computes: a run may resume with other values of these.
PLACEMENT_FIELDS = ("devices", "distributed", "coordinator", "num_processes", "process_id")
# Fields that say how a run is carried out (where, resumed, shown, exported), never what comes out:
# a resumed or reused run may differ in them.
HOW_TO_RUN_FIELDS = ("resume", "progress", "overwrite", "export", *PLACEMENT_FIELDS)
# Fields added with a default that changed what runs do: the value every run written before the
# field existed had. Every other field was added with the earlier behaviour as its default.
VALUES_BEFORE_FIELD: Mapping[str, Any] = types.MappingProxyType({"loss_negatives": 1})

FIELDS: Mapping[str, dataclasses.Field] = types.MappingProxyType(
    {f.name: f for f in dataclasses.fields(RunConfig) if not f.metadata.get("nested")}
)
FIELD_TYPES: Mapping[str, Any] = types.MappingProxyType(typing.get_type_hints(RunConfig))  # strings resolved


def _entry(method: Any) -> Any:
    """The registry entry of `method`; a bad or unknown name raises ConfigError."""
    from dvr_jax import registry  # noqa: PLC0415  (config stays importable alone)

    problem = field_problem("method", method)
    if problem:
        raise ConfigError(f"method {problem}")
    return registry.get_method(method)


def flat_name(entry: Any, name: str) -> str:
    """The flat spelling of option `name` of `entry`: `<prefix>_<name>`, or `name` without a prefix."""
    return f"{entry.prefix}_{name}" if entry.prefix else name


def option_names(method: str) -> dict[str, str]:
    """{flat name: field name} of the options of `method` (empty for a method without options)."""
    entry = _entry(method)
    if entry.options is None:
        return {}
    return {flat_name(entry, f.name): f.name for f in dataclasses.fields(entry.options)}


def all_options() -> dict[str, tuple[type, dataclasses.Field, tuple[str, ...]]]:
    """Every registered option by flat name: (its options class, its field, the methods that take it)."""
    from dvr_jax import registry  # noqa: PLC0415

    found: dict[str, tuple[type, dataclasses.Field, tuple[str, ...]]] = {}
    for method in registry.method_names():
        entry = registry.get_method(method)
        for f in dataclasses.fields(entry.options) if entry.options is not None else ():
            name = flat_name(entry, f.name)
            cls, field, methods = found.get(name, (entry.options, f, ()))
            if cls is not entry.options:
                raise TypeError(f"option {name} is declared by {cls.__name__} and {entry.options.__name__}")
            found[name] = (cls, field, (*methods, method))
    return found


def make_config(**fields: Any) -> RunConfig:
    """A RunConfig from flat names: RunConfig's fields plus the method's options by flat name.

    Raises:
      ConfigError: an unknown name, an option of another method, or a bad value.
    """
    method = fields.get("method", FIELDS["method"].default)
    entry = _entry(method)
    own = option_names(method)
    options = {own[name]: fields.pop(name) for name in list(fields) if name in own}
    foreign = sorted(name for name in fields if name not in FIELDS and name != "options")
    if foreign:
        known = all_options()
        problems = [f"{name} is an option of method {'/'.join(known[name][2])}, not of {method}" if name in known
                    else f"unknown config option {name}" for name in foreign]  # fmt: skip
        raise ConfigError("; ".join(problems))
    if options:
        if fields.get("options") is not None:
            raise ConfigError("give the method's options either as an object or by name, not both")
        fields["options"] = entry.options(**options)
    return RunConfig(**fields)


def leaky_ingredients(cfg: RunConfig) -> tuple[str, ...]:
    """What of a run reads the test split before its final report; empty for an honest run.

    Model selection on test (`select_split="test"`) and whatever the method's entry reports
    (`MethodEntry.leaks`, e.g. DVR's reward on test users). A run with any of them is marked
    test-leaky in `config.json`, `results.json`, its printed summary and the tables.
    """
    entry = _entry(cfg.method)
    own = ("model selection on test",) if cfg.select_split == "test" else ()
    return own + (tuple(entry.leaks(cfg)) if entry.leaks is not None else ())


def config_from_saved(saved: Mapping[str, Any]) -> RunConfig:
    """The RunConfig of a run's `config.json` content (flat names; lists read back as tuples).

    Keys that are not settings of the run's method are left out: `dataset_summary`, and what
    runs written before the options moved into per-method classes kept for every method (the
    other methods' options, AOBPR's old `aobpr_lambda`).
    """
    method = saved.get("method", FIELDS["method"].default)
    wanted = set(FIELDS) | set(option_names(method))
    fields = {name: tuple(value) if isinstance(value, list) else value
              for name, value in saved.items() if name in wanted}  # fmt: skip
    return make_config(**fields)


@functools.cache
def _field_types(owner: type) -> Mapping[str, Any]:
    return typing.get_type_hints(owner)


def field_problem(name: str, value: Any, owner: type = RunConfig) -> str | None:
    """What is wrong with `value` for field `name` of `owner` (RunConfig or an options class), or None.

    Returns a phrase to follow the field's (or flag's) name, e.g. "must be > 0, got nan".
    """
    problem = _type_problem(_field_types(owner)[name], value)
    if problem or value is None:
        return problem
    meta = owner.__dataclass_fields__[name].metadata
    if "choices" in meta and value not in meta["choices"]():
        return f"must be one of {', '.join(meta['choices']())}, got {value!r}"
    bounds = [(key, meta[key]) for key in BOUNDS if key in meta]
    for item in value if isinstance(value, tuple) else (value,):
        if not all(BOUNDS[key][0](item, bound) for key, bound in bounds):
            allowed = " and ".join(f"{BOUNDS[key][1]} {bound}" for key, bound in bounds)
            return f"must be {allowed}, got {item}"
    return None


def _type_problem(kind: Any, value: Any) -> str | None:
    """Whether `value` is an instance of the annotation `kind`; floats must also be finite."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is Literal:
        return None if value in args else f"must be one of {', '.join(args)}, got {value!r}"
    if origin in (types.UnionType, typing.Union):  # `X | None`
        return None if value is None else _type_problem(next(a for a in args if a is not type(None)), value)
    if origin is tuple:  # `tuple[X, ...]`, non-empty
        if not isinstance(value, tuple) or not value:
            return f"must be a non-empty tuple, got {value!r}"
        return next(filter(None, (_type_problem(args[0], item) for item in value)), None)
    is_number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if kind is float and is_number and not math.isfinite(value):
        return f"must be a finite number, got {value}"
    checks = {bool: isinstance(value, bool), int: is_number and isinstance(value, numbers.Integral),
              float: is_number, str: isinstance(value, str)}  # fmt: skip
    if kind not in checks:
        raise TypeError(f"config fields cannot be of type {kind}")  # a declaration error, not user input
    return None if checks[kind] else f"must be {kind.__name__}, got {value!r}"


def _saved_default(name: str) -> Any:
    """The value a run written before field `name` existed had (a sentinel for an unknown name)."""
    if name in VALUES_BEFORE_FIELD:
        return VALUES_BEFORE_FIELD[name]
    known = all_options()
    field = FIELDS.get(name) or (known[name][1] if name in known else None)
    if field is None or field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
        return _UNKNOWN
    return field.default if field.default is not dataclasses.MISSING else field.default_factory()


_UNKNOWN = object()


def config_differences(mine: Mapping[str, Any], saved: Mapping[str, Any]) -> list[str]:
    """The fields of `mine` (a `RunConfig.to_dict()`) whose value a saved `config.json` does not share.

    HOW_TO_RUN_FIELDS never count. A field missing from `saved` was added after the run was
    written: the run had `VALUES_BEFORE_FIELD`'s value for it, else the field's default.
    """
    differ = []
    for name, value in mine.items():
        if name in HOW_TO_RUN_FIELDS:
            continue
        theirs = saved[name] if name in saved else _saved_default(name)
        if theirs is _UNKNOWN or json.dumps(theirs, default=str) != json.dumps(value, default=str):
            differ.append(name)
    return sorted(differ)
