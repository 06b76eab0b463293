"""The run configuration: one typed, frozen dataclass; unknown fields are errors.

Only `experiments/run.py` (flags and presets) builds it and only `dvr_jax/loop.py` reads it;
library functions take plain typed arguments.
"""

from __future__ import annotations

import dataclasses
from typing import Any


class ConfigError(ValueError):
    """An invalid configuration value or an unknown option."""


METHODS = ("dvr", "bpr", "pop", "aobpr", "wbpr", "pris", "tce", "rce", "til-ui", "til-mi")
REWARDS = ("loss", "recall", "ndcg", "cc", "ild", "gini")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything a run needs; `dataclasses.asdict` of it is written to `config.json`.

    Attributes mirror the CLI flags. ALGORITHMS.md Appendix A gives the paper's defaults.
    """

    dataset: str = "lastfm"
    data_dir: str | None = None
    method: str = "dvr"
    backbone: str = "mf"
    reward: str = "recall"
    seed: int = 0
    split_seed: int = 2024
    kcore: int | None = None  # None: the dataset's default (10, none for fixed splits)
    epochs: int = 2000
    batch_size: int | None = None  # None: 5000, or 1000 for DVR-Loss (the authors' configs)
    learning_rate: float = 1e-3
    reduction: str = "sum"
    embedding_dim: int = 64
    valid_interval: int = 10
    patience: int | None = 10
    select_metric: str = "recall@20"
    ks: tuple[int, ...] = (10, 20)
    eval_chunk: int | None = None  # None: sized so a [C, I] score block fits the cache
    checkpoint_every: int = 10
    out: str | None = None
    export: bool = False
    resume: bool = False
    overwrite: bool = False
    progress: bool = True
    # Warm start: "auto" trains (or reuses) a validation-selected BPR run of the same
    # dataset/backbone/seed under runs/pretrained/; "none" starts from scratch; else a run dir.
    warm_start: str | None = None  # None: "auto" for dvr, "none" otherwise
    pretrain_epochs: int | None = None  # None: same as epochs
    # DVR valuator and metric adapter (ALGORITHMS.md Appendix A).
    reward_fraction: float = 0.1
    reward_k: int = 20
    reward_interval: int = 1
    weight_mode: str = "sample"
    pg_mode: str = "reinforce"
    valuator: str = "sample"  # "sample" (the sample game, default) or "slot" (the paper's Variant G)
    estimator: str = "loo"  # ema | counterfactual | loo | delta | none
    num_masks: int = 4  # K masks of the loo estimator
    mse_target: str = "coalition"  # or "batch" (the paper: only the full batch)
    influence: bool = True  # compute the first-order validation influence of every triplet
    loss_game_weight: float = 1.0  # weight of the loss game (-sum of BPR losses) fitted on random coalitions
    loss_game_coalitions: int = 16  # random coalitions per step for the loss game
    interaction_rank: int = 8  # sample game: rank of the interaction dividends
    max_order: int = 2  # sample game: highest interaction order
    h_dim: int | None = None  # None: 32 for the sample game; 10 (50 for cc / ild) for the slot valuator
    harsanyi_width: int = 100
    harsanyi_layers: int = 2
    children_init: str = "random"
    value_map: str = "sigmoid"
    valuator_learning_rate: float = 1e-3
    valuator_weight_decay: float = 1e-3
    alpha_mse: float = 1.0
    alpha_pg: float = 1.0
    lambda_explore: float = 1000.0
    baseline_window: float = 20.0
    # Baselines (ALGORITHMS.md §5 defaults; checked in `_check_baselines`).
    aobpr_lambda: float = 0.05  # λ_rel: rank scale λ = λ_rel · I
    aobpr_refresh: int | None = None  # steps between ranking refreshes; None: ceil(I ln I / B)
    aobpr_pool: int = 100  # candidate pool of the NeuMF (non-dot-product) variant
    wbpr_exponent: float = 1.0  # P(j) ∝ pop(j) ** exponent
    wbpr_item_bias: bool = True
    wbpr_user_uniform: bool = False  # LibRec order: user uniform, then a positive
    pris_negatives: int = 5  # L
    pris_temperature: float = 1.0  # τ_w
    pris_proposal: str = "uniform"  # or "pop"
    tce_drop_rate: float = 0.2  # ε_max
    tce_num_gradual: int = 30000  # N_r steps
    tce_exponent: float = 1.0
    rce_beta: float = 0.2
    til_hidden: int | None = None  # generator width; None: embedding_dim
    til_output: str = "softplus"  # or "sigmoid"
    til_outer: str = "valid"  # or "train" (TIL's released code)
    til_mi_state: str = "centroid"  # or "user"
    til_clusters: int = 20
    til_cluster_every: int = 10  # epochs between k-means refreshes
    til_valid_batch: int | None = None  # validation pairs per outer loss; None: batch_size
    til_meta_learning_rate: float = 1e-3
    til_meta_weight_decay: float = 0.0

    def __post_init__(self):
        defaults = {
            "batch_size": 1000 if (self.method == "dvr" and self.reward == "loss") else 5000,
            "warm_start": "auto" if self.method == "dvr" else "none",
            "h_dim": 32 if self.valuator == "sample" else (50 if self.reward in ("cc", "ild") else 10),
        }
        for name, value in defaults.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)  # resolve defaults once, stay frozen
        from dvr_jax.backbones import BACKBONES  # noqa: PLC0415  (config stays importable alone)

        if self.backbone not in BACKBONES:
            raise ConfigError(f"unknown backbone {self.backbone!r}; known: {', '.join(sorted(BACKBONES))}")
        if self.weight_mode not in ("sample", "dot"):
            raise ConfigError(f"weight_mode must be 'sample' or 'dot', got {self.weight_mode!r}")
        choices = {"valuator": ("sample", "slot"), "estimator": ("ema", "counterfactual", "loo", "delta", "none"),
                   "mse_target": ("coalition", "batch")}  # fmt: skip
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if self.method == "dvr":
            from dvr_jax.dvr import DVRConfig, check_config  # noqa: PLC0415

            try:
                check_config(DVRConfig(estimator=self.estimator, num_masks=self.num_masks, mse_target=self.mse_target,
                                       reward_interval=self.reward_interval, weight_mode=self.weight_mode,
                                       pg_mode=self.pg_mode))  # fmt: skip
            except ValueError as err:
                raise ConfigError(str(err)) from err
        if not self.loss_game_weight >= 0:
            raise ConfigError(f"loss_game_weight must be >= 0, got {self.loss_game_weight}")
        if self.pg_mode not in ("reinforce", "code"):
            raise ConfigError(f"pg_mode must be 'reinforce' or 'code', got {self.pg_mode!r}")
        if not 0.0 < self.reward_fraction <= 1.0:
            raise ConfigError(f"reward_fraction must be in (0, 1], got {self.reward_fraction}")
        if self.method not in METHODS:
            raise ConfigError(f"unknown method {self.method!r}; known: {', '.join(METHODS)}")
        if self.reward not in REWARDS:
            raise ConfigError(f"unknown reward {self.reward!r}; known: {', '.join(REWARDS)}")
        if self.reduction not in ("sum", "mean"):
            raise ConfigError(f"reduction must be 'sum' or 'mean', got {self.reduction!r}")
        if self.eval_chunk is not None and self.eval_chunk < 1:
            raise ConfigError(f"eval_chunk must be >= 1, got {self.eval_chunk}")
        for name in ("epochs", "batch_size", "valid_interval", "checkpoint_every", "embedding_dim",
                     "reward_k", "reward_interval", "h_dim", "harsanyi_width", "harsanyi_layers",
                     "num_masks", "interaction_rank", "max_order", "loss_game_coalitions"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.patience is not None and self.patience < 1:
            raise ConfigError(f"patience must be >= 1 or None, got {self.patience}")
        self._check_baselines()

    def _check_baselines(self) -> None:
        """Validates the baseline hyper-parameters (ALGORITHMS.md §5)."""
        choices = {"pris_proposal": ("uniform", "pop"), "til_output": ("softplus", "sigmoid"),
                   "til_outer": ("valid", "train"), "til_mi_state": ("centroid", "user")}  # fmt: skip
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        for name in ("aobpr_refresh", "til_hidden", "til_valid_batch"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1 or None, got {getattr(self, name)}")
        for name in ("aobpr_pool", "pris_negatives", "tce_num_gradual", "til_clusters", "til_cluster_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("aobpr_lambda", "pris_temperature", "tce_exponent", "til_meta_learning_rate"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("wbpr_exponent", "rce_beta", "til_meta_weight_decay"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.tce_drop_rate < 1.0:
            raise ConfigError(f"tce_drop_rate must be in [0, 1), got {self.tce_drop_rate}")

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
