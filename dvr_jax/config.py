"""The run configuration: one typed, frozen dataclass whose annotations drive its validation.

Each field declares its type (a `Literal` for a closed set of choices), a one-line help, a
group and, for numbers, its bounds (`min`, `gt`, `max`, `lt`) in `dataclasses.field`
metadata. `RunConfig.__post_init__` checks every field against that declaration in one loop,
then the few cross-field rules that one field cannot state. `experiments/run.py` generates
its flags from the same declarations, so a field, its flag, its help and its checks cannot
drift apart. Only `experiments/` builds a RunConfig and only `dvr_jax/loop.py` and the
registry's builders (`dvr_jax/builders.py`) read it; library functions take plain typed
arguments. `method` is checked against the method registry (`dvr_jax.registry`,
docs/engineering.md §12): its choices are read when asked for, so a method registered at run
time is valid, and the entry resolves its own defaults and checks its own option combinations.
"""

from __future__ import annotations

import dataclasses
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
GROUPS = ("run", "data", "training", "dvr", "baselines")  # flag groups, in `--help` order
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
    reduction: Literal["sum", "mean"] = _field("training", "sum", "reduction of the batch's BPR losses")
    embedding_dim: int = _field("training", 64, "embedding width D", min=1)
    valid_interval: int = _field("training", 10, "validate every N epochs", min=1)
    patience: int | None = _field("training", 10, "validation checks without improvement before stopping; "
                                  "none: never stop early", min=1)  # fmt: skip
    select_metric: str = _field("training", "recall@20", "validation metric selecting the checkpoint, "
                                "<metric>@K with K in --ks")  # fmt: skip
    ks: tuple[int, ...] = _field("training", (10, 20), "cut-offs K of the reported metrics", min=1)
    eval_chunk: int | None = _field(
        "training",
        None,
        "users per evaluation chunk",
        min=1,
        default_text="sized so a chunk's [C, I] scores fit the cache",
    )
    checkpoint_every: int = _field("run", 10, "epochs between checkpoints of the resumable state", min=1)
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
    reward_fraction: float = _field("dvr", 0.1, "share of validation users in the reward", gt=0, max=1)
    reward_k: int = _field("dvr", 20, "cut-off K of ranking rewards", min=1)
    reward_interval: int = _field("dvr", 1, "valuator update every N steps", min=1)
    weight_mode: Literal["sample", "dot"] = _field("dvr", "sample", "sample: Bernoulli masks from the selection "
                                                   "probabilities; dot: the probabilities as loss weights")  # fmt: skip
    pg_mode: Literal["reinforce", "code"] = _field("dvr", "reinforce", "reinforce: log-likelihood of the sampled "
                                                   "mask; code: the reference code's surrogate")  # fmt: skip
    valuator: Literal["sample", "slot"] = _field("dvr", "sample", "sample: the sample game; slot: the paper's "
                                                 "slot-indexed Harsanyi net")  # fmt: skip
    estimator: Literal["ema", "counterfactual", "loo", "delta", "none"] = _field(
        "dvr", "loo", "REINFORCE advantage estimator"
    )
    num_masks: int = _field("dvr", 4, "masks K of the loo estimator", min=1)
    mse_target: Literal["coalition", "batch"] = _field("dvr", "coalition", "valuator MSE on the trained coalitions, "
                                                       "or only on the full batch (the paper's)")  # fmt: skip
    influence: bool = _field("dvr", True, "compute every triplet's first-order influence on the validation loss")
    loss_game_weight: float = _field("dvr", 1.0, "weight of the loss game fitted on random coalitions; "
                                     "0: the reward alone trains the valuator", min=0)  # fmt: skip
    loss_game_coalitions: int = _field("dvr", 16, "random coalitions per step for the loss game", min=1)
    interaction_rank: int = _field("dvr", 8, "sample game: rank of the interaction dividends", min=1)
    max_order: int = _field("dvr", 2, "sample game: highest interaction order", min=1, max=4)
    h_dim: int | None = _field(
        "dvr", None, "valuator encoder output width", min=1, default_text="32; slot valuator 10, 50 for cc/ild"
    )
    harsanyi_width: int = _field("dvr", 100, "slot valuator: units per Harsanyi layer", min=1)
    harsanyi_layers: int = _field("dvr", 2, "slot valuator: Harsanyi layers", min=1)
    children_init: Literal["random", "cover"] = _field("dvr", "random", "slot valuator: initial children masks")
    value_map: Literal["sigmoid", "code"] = _field("dvr", "sigmoid", "map from data value to selection probability")
    selection_slope: float = _field("dvr", 1.0, "slope kappa of the sigmoid map on the batch-standardised value", gt=0)
    selection_floor: float = _field(
        "dvr", 1e-3, "probabilities of the sigmoid map stay in [floor, 1 - floor]", min=0, lt=0.5
    )
    valuator_learning_rate: float = _field("dvr", 1e-3, "Adam step size of the valuator", gt=0)
    valuator_weight_decay: float = _field("dvr", 1e-3, "coupled L2 weight decay of the valuator's Adam", min=0)
    alpha_mse: float = _field("dvr", 1.0, "weight of the valuator's MSE term", min=0)
    alpha_pg: float = _field("dvr", 1.0, "weight of the policy-gradient term", min=0)
    lambda_explore: float = _field("dvr", 1000.0, "weight of the exploration penalty", min=0)
    baseline_window: float = _field("dvr", 20.0, "EMA window of the reward baseline, in reward steps", min=1)
    aobpr_lambda: float = _field("baselines", 0.05, "AOBPR λ_rel; the rank scale is λ = λ_rel · I", gt=0)
    aobpr_refresh: int | None = _field(
        "baselines", None, "AOBPR steps between ranking refreshes", min=1, default_text="ceil(I ln I / B)"
    )
    aobpr_pool: int = _field("baselines", 100, "AOBPR candidate pool for NeuMF (no dot product)", min=1)
    wbpr_exponent: float = _field("baselines", 1.0, "WBPR popularity exponent: P(j) ∝ pop(j)^exponent", min=0)
    wbpr_item_bias: bool = _field("baselines", True, "WBPR: add a learned item bias to the scores")
    wbpr_user_uniform: bool = _field("baselines", False, "WBPR: LibRec order, a uniform user then a positive")
    pris_negatives: int = _field("baselines", 5, "PRIS negatives per positive L", min=1)
    pris_temperature: float = _field("baselines", 1.0, "PRIS temperature τ_w", gt=0)
    pris_proposal: Literal["uniform", "pop"] = _field("baselines", "uniform", "PRIS proposal of negatives")
    tce_drop_rate: float = _field("baselines", 0.2, "TCE maximum drop rate ε_max", min=0, lt=1)
    tce_num_gradual: int = _field("baselines", 30000, "TCE ramp length N_r in steps", min=1)
    tce_exponent: float = _field("baselines", 1.0, "TCE ramp exponent", gt=0)
    rce_beta: float = _field("baselines", 0.2, "RCE β", min=0)
    til_hidden: int | None = _field("baselines", None, "TIL generator width", min=1, default_text="--embedding-dim")
    til_output: Literal["softplus", "sigmoid"] = _field("baselines", "softplus", "TIL generator output")
    til_outer: Literal["valid", "train"] = _field("baselines", "valid", "TIL outer loss on validation pairs, or "
                                                  "on training pairs as TIL's released code does")  # fmt: skip
    til_mi_state: Literal["centroid", "user"] = _field("baselines", "centroid", "TIL-MI state of a triplet")
    til_clusters: int = _field("baselines", 20, "TIL-MI item communities n_c", min=1)
    til_cluster_every: int = _field("baselines", 10, "TIL-MI epochs between k-means refreshes", min=1)
    til_valid_batch: int | None = _field(
        "baselines", None, "TIL validation pairs per outer loss", min=1, default_text="--batch-size"
    )
    til_meta_learning_rate: float = _field("baselines", 1e-3, "TIL generator Adam step size", gt=0)
    til_meta_weight_decay: float = _field("baselines", 0.0, "coupled L2 weight decay of TIL's generator", min=0)

    def __post_init__(self):
        from dvr_jax import registry  # noqa: PLC0415  (config stays importable alone)

        problem = field_problem("method", self.method)
        if problem:
            raise ConfigError(f"method {problem}")
        entry = registry.get_method(self.method)
        defaults = {
            "batch_size": 5000,
            "warm_start": "none",
            "h_dim": 32 if self.valuator == "sample" else (50 if self.reward in ("cc", "ild") else 10),
            **(entry.defaults(self) if entry.defaults else {}),
        }
        for name, value in defaults.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)  # resolve defaults once, stay frozen
        for f in dataclasses.fields(self):
            problem = field_problem(f.name, getattr(self, f.name))
            if problem:
                raise ConfigError(f"{f.name} {problem}")
        self._check_combinations()

    def _check_combinations(self) -> None:
        """The rules no single field states: the backbone registry, the selection metric, the method's options."""
        from dvr_jax.backbones import BACKBONES  # noqa: PLC0415  (config stays importable alone)

        if self.backbone not in BACKBONES:
            raise ConfigError(f"unknown backbone {self.backbone!r}; known: {', '.join(sorted(BACKBONES))}")
        match = re.fullmatch(r"[a-z_]+@(\d+)", self.select_metric)
        if not match or int(match.group(1)) not in self.ks:
            raise ConfigError(f"select_metric must be <metric>@K with K in ks {self.ks}, got {self.select_metric!r}")
        from dvr_jax import registry  # noqa: PLC0415

        entry = registry.get_method(self.method)
        if entry.check is not None:
            try:
                entry.check(self)
            except ConfigError:
                raise
            except ValueError as err:
                raise ConfigError(str(err)) from err

    @property
    def run_name(self) -> str:
        return f"{self.dataset}-{self.backbone}-{self.method}-{self.reward}-s{self.seed}"

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with fields changed; unknown names raise ConfigError."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ConfigError(f"unknown config option(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FIELDS: Mapping[str, dataclasses.Field] = types.MappingProxyType({f.name: f for f in dataclasses.fields(RunConfig)})
FIELD_TYPES: Mapping[str, Any] = types.MappingProxyType(typing.get_type_hints(RunConfig))  # strings resolved


def field_problem(name: str, value: Any) -> str | None:
    """What is wrong with `value` for the RunConfig field `name` (type, then bounds), or None.

    Returns a phrase to follow the field's (or flag's) name, e.g. "must be > 0, got nan".
    """
    problem = _type_problem(FIELD_TYPES[name], value)
    if problem or value is None:
        return problem
    meta = FIELDS[name].metadata
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
        raise TypeError(f"RunConfig cannot check fields of type {kind}")  # a declaration error, not user input
    return None if checks[kind] else f"must be {kind.__name__}, got {value!r}"
