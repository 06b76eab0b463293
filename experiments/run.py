"""Command-line entry point: `python experiments/run.py --dataset lastfm --reward recall`.

Flags set fields of `dvr_jax.config.RunConfig` (the main ones; the rest keep their
defaults); `--config PRESET` loads a preset from `experiments/configs/presets.py` and
explicit flags override it. Unknown flags are errors. Bad input (unknown dataset or
backbone, malformed files, a missing or corrupted checkpoint) ends with a one-line message
and exit status 2, and a diverged loss with exit status 3, not a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from dvr_jax.checkpoint import CheckpointError  # noqa: E402
from dvr_jax.config import METHODS, REWARDS, ConfigError, RunConfig  # noqa: E402
from dvr_jax.data import DataError  # noqa: E402
from experiments.configs.presets import PRESETS  # noqa: E402

USER_ERRORS = (ConfigError, CheckpointError, DataError)


def _optional_int(text: str) -> int | None:
    """An int, or None for "none"/"off" (e.g. no early stopping)."""
    return None if text.lower() in ("none", "off") else int(text)


def _kcore(text: str) -> int:
    """k-core threshold; "none"/"off"/"0" disable filtering (0)."""
    return 0 if text.lower() in ("none", "off") else int(text)


def parser() -> argparse.ArgumentParser:
    """The CLI flags (defaults are None so that presets and RunConfig defaults apply)."""
    p = argparse.ArgumentParser(description="Train and evaluate a recommender (BPR baselines and DVR).")
    p.add_argument("--config", choices=sorted(PRESETS), help="preset of hyper-parameters")
    p.add_argument("--dataset", help="lastfm, lastfm-lightgcn, gowalla, ml-100k, or a RecBole atomic name")
    p.add_argument("--data-dir", help="directory holding <dataset>/ folders (default $DVR_DATA_DIR)")
    p.add_argument("--method", choices=METHODS)
    p.add_argument("--backbone", help="mf, neumf, mgcf, lightgcn")
    p.add_argument("--reward", choices=REWARDS)
    p.add_argument("--seed", type=int)
    p.add_argument("--split-seed", type=int)
    p.add_argument("--kcore", type=_kcore, help="k-core threshold (0 or none disables; default: dataset's)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--learning-rate", "--lr", type=float)
    p.add_argument("--reduction", choices=("sum", "mean"))
    p.add_argument("--embedding-dim", type=int)
    p.add_argument("--valid-interval", type=int, help="validate every N epochs")
    p.add_argument("--patience", type=_optional_int, help="early-stopping checks (none to disable)")
    p.add_argument("--eval-chunk", type=int, help="users per evaluation chunk")
    p.add_argument("--checkpoint-every", type=int, help="epochs between checkpoints")
    p.add_argument("--out", help="run directory (default runs/<dataset>-<backbone>-<method>-<reward>-s<seed>)")
    p.add_argument("--export", action="store_true", default=None, help="write splits and test top-K lists as TSV")
    p.add_argument("--resume", action="store_true", default=None, help="continue the run in --out")
    p.add_argument("--overwrite", action="store_true", default=None, help="replace an existing run in --out")
    p.add_argument("--no-progress", dest="progress", action="store_false", default=None)
    dvr = p.add_argument_group("DVR (valuator and metric adapter)")
    dvr.add_argument("--warm-start", help="auto (train/reuse BPR under runs/pretrained), none, or a run dir")
    dvr.add_argument("--pretrain-epochs", type=int, help="epochs of the BPR warm-start run")
    dvr.add_argument("--reward-fraction", type=float, help="share of validation users in the reward")
    dvr.add_argument("--reward-k", type=int, help="cut-off K of ranking rewards")
    dvr.add_argument("--reward-interval", type=int, help="valuator update every N steps")
    dvr.add_argument("--weight-mode", choices=("sample", "dot"))
    dvr.add_argument("--pg-mode", choices=("reinforce", "code"))
    dvr.add_argument("--valuator", choices=("sample", "slot"),
                     help="sample: the sample game (default); slot: the paper's slot-indexed Harsanyi net")
    dvr.add_argument("--estimator", choices=("ema", "counterfactual", "loo", "delta", "none"),
                     help="REINFORCE advantage (default loo)")
    dvr.add_argument("--num-masks", type=int, help="masks K of the loo estimator (default 4)")
    dvr.add_argument("--mse-target", choices=("coalition", "batch"), help="valuator MSE on the trained coalitions "
                     "(default) or on the full batch only (the paper)")
    dvr.add_argument("--no-influence", dest="influence", action="store_false", default=None,
                     help="skip the per-triplet validation influence")
    dvr.add_argument("--loss-game-weight", type=float, help="weight of the loss game fitted on random coalitions "
                     "(default 1; 0 leaves the valuator to the reward alone)")
    dvr.add_argument("--loss-game-coalitions", type=int, help="random coalitions per step for the loss game (16)")
    dvr.add_argument("--interaction-rank", type=int, help="sample game: rank of the interactions (default 8)")
    dvr.add_argument("--max-order", type=int, help="sample game: highest interaction order (default 2)")
    dvr.add_argument("--h-dim", type=int, help="encoder output width (default 32; slot valuator 10, 50 for cc/ild)")
    dvr.add_argument("--harsanyi-width", type=int)
    dvr.add_argument("--harsanyi-layers", type=int)
    dvr.add_argument("--children-init", choices=("random", "cover"))
    dvr.add_argument("--value-map", choices=("sigmoid", "code"))
    dvr.add_argument("--valuator-learning-rate", type=float)
    dvr.add_argument("--alpha-mse", type=float)
    dvr.add_argument("--alpha-pg", type=float)
    dvr.add_argument("--lambda-explore", type=float)
    base = p.add_argument_group("baselines (ALGORITHMS.md §5)")
    base.add_argument("--aobpr-lambda", type=float, help="AOBPR λ_rel (rank scale λ = λ_rel · I; default 0.05)")
    base.add_argument("--aobpr-refresh", type=int, help="AOBPR steps between ranking refreshes (default I ln I / B)")
    base.add_argument("--wbpr-exponent", type=float, help="WBPR popularity exponent (default 1)")
    base.add_argument("--no-wbpr-item-bias", dest="wbpr_item_bias", action="store_false", default=None)
    base.add_argument("--wbpr-user-uniform", action="store_true", default=None, help="LibRec user-then-positive order")
    base.add_argument("--pris-negatives", type=int, help="PRIS negatives per positive L (default 5)")
    base.add_argument("--pris-temperature", type=float, help="PRIS τ_w (default 1)")
    base.add_argument("--pris-proposal", choices=("uniform", "pop"))
    base.add_argument("--tce-drop-rate", type=float, help="TCE ε_max (default 0.2)")
    base.add_argument("--tce-num-gradual", type=int, help="TCE ramp length N_r in steps (default 30000)")
    base.add_argument("--rce-beta", type=float, help="RCE β (default 0.2)")
    base.add_argument("--til-meta-learning-rate", type=float, help="TIL generator Adam step size (default 1e-3)")
    base.add_argument("--til-outer", choices=("valid", "train"), help="TIL outer loss (default valid)")
    base.add_argument("--til-output", choices=("softplus", "sigmoid"), help="TIL generator output (default softplus)")
    base.add_argument("--til-mi-state", choices=("centroid", "user"), help="TIL-MI state (default centroid)")
    base.add_argument("--til-clusters", type=int, help="TIL-MI item communities n_c (default 20)")
    base.add_argument("--til-cluster-every", type=int, help="TIL-MI epochs between k-means refreshes (default 10)")
    return p


def config_from_args(argv: list[str] | None = None) -> RunConfig:
    """Parses flags into a RunConfig: defaults <- preset <- explicit flags."""
    args = vars(parser().parse_args(argv))
    preset = PRESETS[args.pop("config")] if args.get("config") else {}
    args.pop("config", None)
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    chosen = {**preset, **{k: v for k, v in args.items() if v is not None and k in fields}}
    return RunConfig(**chosen)


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = config_from_args(argv)
        from dvr_jax.loop import TrainingDiverged, train_and_evaluate

        try:
            train_and_evaluate(cfg)
        except TrainingDiverged as err:
            print(f"error: {err}", file=sys.stderr)
            return 3
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
