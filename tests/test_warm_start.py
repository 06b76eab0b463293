"""The warm-start stage: checked before it trains, sized for small data, quiet, and named in errors."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from dvr_jax import loop, warm_start
from dvr_jax.config import ConfigError, RunConfig, make_config
from experiments import run
from tests.helpers import tiny_dataset


def test_settings_the_data_cannot_serve_fail_before_the_warm_start_trains(real_data_dir, tmp_path, capsys):
    # LastFM has no item categories: the cc reward is refused before BPR trains or writes.
    argv = ["--dataset", "lastfm", "--data-dir", str(real_data_dir), "--reward", "cc", "--out", str(tmp_path / "r"),
            "--epochs", "1", "--no-progress"]  # fmt: skip
    assert run.main(argv) == 2
    err = capsys.readouterr().err
    assert "categories" in err and "warm start" not in err
    assert list(tmp_path.iterdir()) == []  # neither the run nor a pretrained BPR run


def _tiny_config(tmp_path, **changes) -> RunConfig:
    base = dict(dataset="tiny", method="dvr", reward="recall", epochs=2, batch_size=32, valid_interval=1,
                patience=None, out=str(tmp_path / "dvr"), progress=False, estimator="ema", influence=False,
                reward_fraction=1.0, eval_chunk=16)  # fmt: skip
    return make_config(**{**base, **changes})


@pytest.mark.slow
def test_default_warm_start_on_data_smaller_than_the_bpr_batch(tmp_path, capsys, caplog):
    caplog.set_level(logging.WARNING)
    dataset = tiny_dataset(np.random.default_rng(0))
    assert len(dataset.train) < 5000  # BPR's own batch size would exceed the data
    cfg = _tiny_config(tmp_path)
    assert cfg.warm_start == "auto"
    results = loop.train_and_evaluate(cfg, dataset)
    assert results["method"] == "dvr"
    (pretrained,) = (tmp_path / "pretrained").iterdir()
    assert (pretrained / "results.json").exists()
    out, err = capsys.readouterr()
    assert out.count("test: recall@20") == 1  # only DVR's result block, not the warm start's
    assert "warm start: training BPR into" in err and "warm start: BPR best epoch" in err
    # orbax (which logs through absl) warns about nothing while the checkpoint is read; its
    # checkpointer's metadata call would: a `_CHECKPOINT_METADATA` it looks for in the wrong folder
    assert not [r.getMessage() for r in caplog.records if r.name == "absl" and r.levelno >= logging.WARNING]


def test_a_failing_warm_start_says_it_was_the_warm_start(tmp_path, monkeypatch):
    original = loop.train_and_evaluate

    def failing(cfg, dataset=None, **kwargs):
        if cfg.method == "bpr":
            raise ConfigError("boom")
        return original(cfg, dataset, **kwargs)

    monkeypatch.setattr(loop, "train_and_evaluate", failing)
    with pytest.raises(ConfigError, match=r"^warm start \(BPR run into .*pretrained.*\): boom$"):
        loop.build(_tiny_config(tmp_path), tiny_dataset(np.random.default_rng(0)))


def test_pretrain_batch_is_bprs_own_capped_at_the_training_pairs(tmp_path):
    cfg = _tiny_config(tmp_path, reward="loss", batch_size=None)
    assert cfg.batch_size == 1000  # DVR-Loss's default ...
    assert warm_start.pretrain_config(cfg).batch_size == 5000  # ... the warm start keeps BPR's
    assert warm_start.pretrain_config(cfg, n_pairs=700).batch_size == 700
    assert warm_start.pretrain_config(cfg).reward == "recall"  # the default: a plain BPR run's config


def _tiny_bpr_config(tmp_path, name: str, **changes) -> RunConfig:
    base = dict(dataset="tiny", method="bpr", epochs=2, batch_size=32, valid_interval=1, patience=None,
                out=str(tmp_path / name), progress=False, eval_chunk=16)  # fmt: skip
    return make_config(**{**base, **changes})


def test_weight_decay_is_the_runs_and_the_warm_start_keeps_the_backbones(tmp_path):
    cfg = _tiny_bpr_config(tmp_path, "bpr-continued", warm_start="auto", weight_decay=2e-4)
    assert warm_start.pretrain_config(cfg).weight_decay is None  # the warm start is a plain BPR run ...
    assert warm_start.pretrained_dir(cfg) == warm_start.pretrained_dir(cfg.replace(weight_decay=None))  # ... shared
    dataset = tiny_dataset(np.random.default_rng(0))
    assert loop.build(cfg, dataset).backbone.weight_decay == 2e-4
    (pretrained,) = (tmp_path / "pretrained").iterdir()
    assert "weight_decay" in (saved := json.loads((pretrained / "config.json").read_text()))
    assert saved["weight_decay"] is None


def test_weight_decay_changes_training_and_its_default_is_the_backbones(tmp_path):
    dataset = tiny_dataset(np.random.default_rng(0))

    def valid_recall(name, **changes):
        cfg = _tiny_bpr_config(tmp_path, name, **changes)
        return loop.train_and_evaluate(cfg, dataset, report=False)["valid"]["recall@20"]

    default = valid_recall("default")
    assert valid_recall("explicit", weight_decay=1e-3) == default  # mf's own, bit for bit
    assert valid_recall("heavy", weight_decay=10.0) != default
    with pytest.raises(ConfigError, match="weight_decay applies to the backbones mf, neumf; lightgcn"):
        _tiny_bpr_config(tmp_path, "lightgcn", backbone="lightgcn", weight_decay=1e-4)
