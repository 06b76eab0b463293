"""RunConfig's declared fields and the CLI generated from them: every field a flag, checked up front."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import tomllib
import typing
from typing import Any, Literal

import pytest

from dvr_jax import adapter, dvr, registry
from dvr_jax.config import FIELD_TYPES, GROUPS, METHODS, REWARDS, ConfigError, RunConfig
from dvr_jax.valuator import children, factory, sample_game, value_map
from experiments import run
from experiments.configs.presets import PRESETS
from tests.conftest import REPO

FIELDS = dataclasses.fields(RunConfig)
STRINGS = {
    "backbone": "lightgcn",
    "select_metric": "ndcg@10",
    "method": "tce",
}  # strings the config checks against something
BASE = ["--method", "bpr"]  # keeps DVR's cross-field rules out of single-field round trips


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def representative(field: dataclasses.Field) -> tuple[list[str], Any]:
    """Command-line words setting `field` to a valid non-default value, and that value."""
    kind, default = FIELD_TYPES[field.name], field.default
    scalar = next((a for a in typing.get_args(kind) if a is not type(None)), kind)
    if kind is bool:
        return [flag(field.name) if not default else "--no-" + flag(field.name)[2:]], not default
    if typing.get_origin(kind) is Literal:
        value = [c for c in typing.get_args(kind) if c != default][-1]
        return [flag(field.name), value], value
    if typing.get_origin(kind) is tuple:
        return [flag(field.name), "5", "20"], (5, 20)
    if scalar is int:
        value = (default or 1) + 2
        return [flag(field.name), str(value)], value
    if scalar is float:
        value = default / 2 if default else 0.5
        return [flag(field.name), repr(value)], value
    value = STRINGS.get(field.name, f"x-{field.name}")
    return [flag(field.name), value], value


def parse_error(argv: list[str], capsys) -> str:
    """The one-line stderr of a rejected command line (exit status 2)."""
    with pytest.raises(SystemExit) as exit_info:
        run.config_from_args(argv)
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1, err
    return err


def test_every_field_declares_help_and_group_and_has_a_flag():
    options = run.parser()._option_string_actions
    for field in FIELDS:
        assert field.metadata.get("help") and field.metadata.get("group") in GROUPS, field.name
        assert options[flag(field.name)].dest == field.name
    assert options["--lr"].dest == "learning_rate"
    assert {"--no-progress", "--no-influence", "--no-wbpr-item-bias", "--wbpr-user-uniform", "--export"} <= set(options)


@pytest.mark.parametrize("field", FIELDS, ids=[f.name for f in FIELDS])
def test_each_flag_round_trips_into_the_config(field):
    words, value = representative(field)
    cfg = run.config_from_args(BASE + words)
    assert getattr(cfg, field.name) == value and value != field.default
    assert type(getattr(cfg, field.name)) is type(value)


def test_none_words_and_aliases():
    cfg = run.config_from_args(["--config", "paper", "--patience", "none", "--kcore", "none", "--batch-size", "off",
                                "--lr", "0.01", "--no-progress", "--warm-start", "none"])  # fmt: skip
    assert (cfg.patience, cfg.kcore, cfg.batch_size, cfg.learning_rate) == (None, 0, 5000, 0.01)
    assert (cfg.progress, cfg.warm_start) == (False, "none")  # a string field keeps the word


def test_preset_then_explicit_flags():
    smoke = run.config_from_args(["--config", "smoke"])
    assert (smoke.epochs, smoke.batch_size, smoke.patience) == (4, 1024, None)
    cfg = run.config_from_args(["--patience", "3", "--config", "smoke", "--epochs", "7"])
    assert (cfg.epochs, cfg.batch_size, cfg.patience, cfg.checkpoint_every) == (7, 1024, 3, 2)
    assert run.config_from_args([]) == RunConfig()
    for name, preset in PRESETS.items():
        assert RunConfig(**preset).replace(**preset), name  # every preset key is a valid field value


def test_help_shows_every_default_choices_and_groups(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    text = run.parser().format_help()
    for field in FIELDS:
        start = re.search(rf"^ +{re.escape(flag(field.name))}\b", text, re.MULTILINE)
        assert start, field.name
        entry = " ".join(text[start.start() : text.index(")\n", start.start()) + 1].split())
        shown = field.metadata.get("default_text") or run.show_default(field.default)
        assert entry.endswith(f"(default: {shown})"), entry
        if typing.get_origin(FIELD_TYPES[field.name]) is Literal:
            assert "{" + ",".join(typing.get_args(FIELD_TYPES[field.name])) + "}" in entry
    assert all(run.GROUP_TITLES[group] in text for group in GROUPS)


@pytest.mark.parametrize(
    "argv, named",
    [
        (["--lr", "nan"], "--learning-rate/--lr: must be a finite number"),
        (["--lr", "inf"], "--learning-rate/--lr: must be a finite number"),
        (["--lr", "-0.001"], "--learning-rate/--lr: must be > 0"),
        (["--learning-rate", "0"], "must be > 0"),
        (["--valuator-weight-decay", "-1"], "--valuator-weight-decay: must be >= 0"),
        (["--valuator-weight-decay", "nan"], "--valuator-weight-decay: must be a finite number"),
        (["--til-meta-weight-decay=-1e-3"], "--til-meta-weight-decay: must be >= 0"),
        (["--batch-size", "0"], "--batch-size: must be >= 1, got 0"),
        (["--epochs", "1.5"], "--epochs: expected int"),
        (["--reward-fraction", "1.5"], "--reward-fraction: must be > 0 and <= 1"),
        (["--ks", "10", "0"], "--ks: must be >= 1"),
        (["--kcore", "-1"], "--kcore: must be >= 0"),
    ],  # fmt: skip
)
def test_bad_values_are_one_line_errors_naming_the_flag(argv, named, capsys):
    assert named in parse_error(argv, capsys)


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(learning_rate=float("nan")), "learning_rate must be a finite number"),
        (dict(learning_rate=-1e-3), "learning_rate must be > 0"),
        (dict(alpha_mse=float("inf")), "alpha_mse"),
        (dict(valuator_weight_decay=-0.1), "valuator_weight_decay must be >= 0"),
        (dict(seed=1.5), "seed must be int"),
        (dict(export="yes"), "export must be bool"),
        (dict(ks=()), "ks must be a non-empty tuple"),
        (dict(ks=(10,)), "select_metric must be"),
        (dict(max_order=5), "max_order must be >= 1 and <= 4"),
    ],  # fmt: skip
)
def test_the_library_path_checks_the_same_declarations(changes, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        RunConfig(**changes)


@pytest.mark.parametrize("field", [f for f in FIELDS if typing.get_origin(FIELD_TYPES[f.name]) is Literal],
                         ids=lambda f: f.name)  # fmt: skip
def test_literal_choices_reject_other_values(field, capsys):
    assert f"{flag(field.name)}: invalid choice: 'bogus'" in parse_error([flag(field.name), "bogus"], capsys)
    with pytest.raises(ConfigError, match=f"{field.name} must be one of"):
        RunConfig(**{field.name: "bogus"})


def test_unknown_and_abbreviated_flags_are_errors(capsys):
    assert "unrecognized arguments: --datset" in parse_error(["--datset", "lastfm"], capsys)
    assert "unrecognized arguments: --learn" in parse_error(["--learn", "0.1"], capsys)


def test_choices_and_bounds_agree_with_the_library():
    choices = {name: typing.get_args(kind) for name, kind in FIELD_TYPES.items()}
    assert choices["estimator"] == adapter.ESTIMATORS and choices["mse_target"] == dvr.MSE_TARGETS
    assert choices["value_map"] == value_map.VALUE_MAPS and choices["children_init"] == children.CHILDREN_INITS
    assert choices["valuator"] == factory.VALUATOR_KINDS
    assert (registry.method_names(), choices["reward"]) == (METHODS, REWARDS)
    assert {a.dest: a.choices for a in run.parser()._actions}["method"] == METHODS
    assert RunConfig.__dataclass_fields__["max_order"].metadata["max"] == sample_game.MAX_ORDER


def test_script_and_console_entry_point():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, name = scripts["dvr-jax"].partition(":")
    assert (module, name) == ("experiments.run", "main") and callable(run.main)
    done = subprocess.run([sys.executable, "experiments/run.py", "--help"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0 and "--til-meta-weight-decay" in done.stdout, done.stderr[-2000:]
