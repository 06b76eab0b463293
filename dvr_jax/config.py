"""The run configuration: one typed, frozen dataclass; unknown fields are errors.

Only `experiments/run.py` (flags and presets) builds it and only `dvr_jax/loop.py` reads it;
library functions take plain typed arguments.
"""

from __future__ import annotations

import dataclasses
from typing import Any


class ConfigError(ValueError):
    """An invalid configuration value or an unknown option."""


METHODS = ("bpr", "pop")
REWARDS = ("loss", "recall", "ndcg", "cc", "ild", "gini")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything a run needs; `dataclasses.asdict` of it is written to `config.json`.

    Attributes mirror the CLI flags. ALGORITHMS.md Appendix A gives the paper's defaults.
    """

    dataset: str = "lastfm"
    data_dir: str | None = None
    method: str = "bpr"
    backbone: str = "mf"
    reward: str = "recall"
    seed: int = 0
    split_seed: int = 2024
    kcore: int | None = None  # None: the dataset's default (10, none for fixed splits)
    epochs: int = 2000
    batch_size: int = 5000
    learning_rate: float = 1e-3
    reduction: str = "sum"
    embedding_dim: int = 64
    valid_interval: int = 10
    patience: int | None = 10
    select_metric: str = "recall@20"
    ks: tuple[int, ...] = (10, 20)
    eval_chunk: int = 1000
    checkpoint_every: int = 10
    out: str | None = None
    export: bool = False
    resume: bool = False
    overwrite: bool = False
    progress: bool = True

    def __post_init__(self):
        if self.method not in METHODS:
            raise ConfigError(f"unknown method {self.method!r}; known: {', '.join(METHODS)}")
        if self.reward not in REWARDS:
            raise ConfigError(f"unknown reward {self.reward!r}; known: {', '.join(REWARDS)}")
        if self.reduction not in ("sum", "mean"):
            raise ConfigError(f"reduction must be 'sum' or 'mean', got {self.reduction!r}")
        for name in ("epochs", "batch_size", "valid_interval", "eval_chunk", "checkpoint_every", "embedding_dim"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.patience is not None and self.patience < 1:
            raise ConfigError(f"patience must be >= 1 or None, got {self.patience}")

    @property
    def run_name(self) -> str:
        return f"{self.dataset}-{self.backbone}-{self.method}-{self.reward}-s{self.seed}"

    def replace(self, **changes: Any) -> "RunConfig":
        """A copy with fields changed; unknown names raise ConfigError."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ConfigError(f"unknown config option(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
