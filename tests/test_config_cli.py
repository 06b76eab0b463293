"""The config tree's declared fields and the CLI generated from them: every field a flag, checked up front.

The tree is RunConfig's own fields plus every registered method's options dataclass; a leaf is
(owner class, field, flat name, a method that takes it).
"""

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
from dvr_jax.builders import DVROptions, TCEOptions
from dvr_jax.config import GROUPS, METHODS, REWARDS, ConfigError, RunConfig, all_options, make_config
from dvr_jax.valuator import children, factory, sample_game, value_map
from experiments import run
from experiments.configs.presets import PRESETS
from tests.conftest import REPO


class Leaf(typing.NamedTuple):
    owner: type
    field: dataclasses.Field
    flat: str
    method: str  # a method that takes the field ("bpr" for RunConfig's own: no cross-field rules)

    @property
    def kind(self) -> Any:
        return typing.get_type_hints(self.owner)[self.field.name]

    def read(self, cfg: RunConfig) -> Any:
        return getattr(cfg if self.owner is RunConfig else cfg.options, self.field.name)


LEAVES = [Leaf(RunConfig, f, f.name, "bpr") for f in dataclasses.fields(RunConfig) if not f.metadata.get("nested")]
LEAVES += [Leaf(owner, f, flat, methods[0]) for flat, (owner, f, methods) in all_options().items()]
IDS = [leaf.flat for leaf in LEAVES]
STRINGS = {
    "backbone": "lightgcn",
    "select_metric": "ndcg@10",
    "method": "tce",
    "coordinator": "node-0:1234",
}  # strings the config checks against something
COMPANIONS = dict.fromkeys(("reward_interval", "weight_mode"), ["--estimator", "ema"])  # loo: every step, sampled masks
COMPANIONS.update(
    coordinator=["--num-processes", "2", "--process-id", "1"],  # the three come together
    num_processes=["--coordinator", "node-0:1234", "--process-id", "0"],
    process_id=["--coordinator", "node-0:1234", "--num-processes", "4"],
)


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def representative(leaf: Leaf) -> tuple[list[str], Any]:
    """Command-line words setting `leaf` to a valid non-default value, and that value."""
    kind, default, name = leaf.kind, leaf.field.default, leaf.flat
    scalar = next((a for a in typing.get_args(kind) if a is not type(None)), kind)
    if kind is bool:
        return [flag(name) if not default else "--no-" + flag(name)[2:]], not default
    if typing.get_origin(kind) is Literal:
        value = [c for c in typing.get_args(kind) if c != default][-1]
        return [flag(name), value], value
    if typing.get_origin(kind) is tuple:
        return [flag(name), "5", "20"], (5, 20)
    if scalar is int:
        value = (default or 1) + 2
        return [flag(name), str(value)], value
    if scalar is float:
        value = default / 2 if default else 0.5
        return [flag(name), repr(value)], value
    value = STRINGS.get(name, f"x-{name}")
    return [flag(name), value], value


def parse_error(argv: list[str], capsys) -> str:
    """The one-line stderr of a rejected command line (exit status 2)."""
    with pytest.raises(SystemExit) as exit_info:
        run.config_from_args(argv)
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1, err
    return err


def test_every_field_declares_help_and_group_and_has_a_flag():
    options = run.parser()._option_string_actions
    for leaf in LEAVES:
        assert leaf.field.metadata.get("help"), leaf.flat
        assert leaf.owner is not RunConfig or leaf.field.metadata.get("group") in GROUPS, leaf.flat
        assert options[flag(leaf.flat)].dest == leaf.flat
    assert options["--lr"].dest == "learning_rate"
    assert {"--no-progress", "--no-influence", "--no-wbpr-item-bias", "--wbpr-user-uniform", "--export"} <= set(options)
    assert {leaf.owner for leaf in LEAVES} >= {RunConfig, DVROptions, TCEOptions}
    assert sum(leaf.owner is not RunConfig for leaf in LEAVES) == len(all_options()) > 40  # the options are leaves


@pytest.mark.parametrize("leaf", LEAVES, ids=IDS)
def test_each_flag_round_trips_into_the_config(leaf):
    words, value = representative(leaf)
    method = [] if leaf.flat == "method" else ["--method", leaf.method]
    cfg = run.config_from_args(method + COMPANIONS.get(leaf.flat, []) + words)
    assert leaf.read(cfg) == value and value != leaf.field.default
    assert type(leaf.read(cfg)) is type(value)
    assert cfg.to_dict()[leaf.flat] == value and make_config(**cfg.to_dict()) == cfg  # the flat view round-trips


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
        assert make_config(**preset).replace(**preset), name  # every preset key is a valid field value


def test_help_shows_every_default_choices_and_groups(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    text = run.parser().format_help()
    for leaf in LEAVES:
        start = re.search(rf"^ +{re.escape(flag(leaf.flat))}\b", text, re.MULTILINE)
        assert start, leaf.flat
        entry = " ".join(text[start.start() : text.index(")\n", start.start()) + 1].split())
        shown = leaf.field.metadata.get("default_text") or run.show_default(leaf.field.default)
        assert entry.endswith(f"(default: {shown})"), entry
        if typing.get_origin(leaf.kind) is Literal:
            assert "{" + ",".join(typing.get_args(leaf.kind)) + "}" in entry
    assert all(run.GROUP_TITLES[group] in text for group in GROUPS)
    assert "DVR: the data valuator and the metric adapter" in text and "TCE: truncated loss" in text


def test_the_options_of_another_method_are_refused(capsys):
    assert run.main(["--method", "bpr", "--tce-drop-rate", "0.1"]) == 2
    assert capsys.readouterr().err == "error: tce_drop_rate is an option of method tce, not of bpr\n"
    with pytest.raises(ConfigError, match="estimator is an option of method dvr, not of tce"):
        make_config(method="tce", estimator="ema")
    with pytest.raises(ConfigError, match="unknown config option bogus"):
        make_config(bogus=1)
    with pytest.raises(ConfigError, match="options of method tce must be TCEOptions, got DVROptions"):
        RunConfig(method="tce", options=DVROptions())
    with pytest.raises(ConfigError, match="options of method bpr must be None"):
        RunConfig(method="bpr", options=TCEOptions())


def test_options_as_an_object_or_by_flat_name():
    by_name = make_config(method="tce", tce_drop_rate=0.1)
    assert by_name == RunConfig(method="tce", options=TCEOptions(drop_rate=0.1))
    assert by_name.options.drop_rate == 0.1 and by_name.to_dict()["tce_drop_rate"] == 0.1
    assert by_name.replace(tce_exponent=2.0).options == TCEOptions(drop_rate=0.1, exponent=2.0)
    switched = by_name.replace(method="bpr")
    assert switched.options is None and "tce_drop_rate" not in switched.to_dict()
    dvr_cfg = by_name.replace(method="dvr", estimator="ema")
    assert dvr_cfg.options.estimator == "ema" and dvr_cfg.options.h_dim == 32  # the entry's defaults resolve
    assert make_config(valuator="slot", reward="cc").options.h_dim == 50
    with pytest.raises(ConfigError, match="either as an object or by name"):
        make_config(method="tce", options=TCEOptions(), tce_drop_rate=0.1)


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
        make_config(**changes)


@pytest.mark.parametrize("leaf", [leaf for leaf in LEAVES if typing.get_origin(leaf.kind) is Literal],
                         ids=lambda leaf: leaf.flat)  # fmt: skip
def test_literal_choices_reject_other_values(leaf, capsys):
    argv = ["--method", leaf.method, flag(leaf.flat), "bogus"]
    assert f"{flag(leaf.flat)}: invalid choice: 'bogus'" in parse_error(argv, capsys)
    with pytest.raises(ConfigError, match=f"{leaf.flat} must be one of"):
        make_config(method=leaf.method, **{leaf.flat: "bogus"})


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--coordinator", "node-0"], "--coordinator must be HOST:PORT, got 'node-0'"),
        (
            ["--coordinator", "node-0:1234", "--num-processes", "2"],
            "--coordinator needs --num-processes and --process-id",
        ),
        (["--num-processes", "2", "--process-id", "0"], "--num-processes needs --coordinator (or --distributed auto)"),
        (["--coordinator", "h:1", "--num-processes", "2", "--process-id", "2"], "--process-id 2 must be below"),
        (["--process-id", "0"], "--process-id needs --coordinator"),
    ],  # fmt: skip
)
def test_the_process_flags_come_together(argv, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        run.config_from_args(argv)


def test_distributed_auto_leaves_the_rest_to_the_cluster():
    cfg = run.config_from_args(["--distributed", "auto", "--process-id", "3"])  # the others from the environment
    assert (cfg.distributed, cfg.coordinator, cfg.num_processes, cfg.process_id) == ("auto", None, None, 3)


def test_unknown_and_abbreviated_flags_are_errors(capsys):
    assert "unrecognized arguments: --datset" in parse_error(["--datset", "lastfm"], capsys)
    assert "unrecognized arguments: --learn" in parse_error(["--learn", "0.1"], capsys)


def test_choices_and_bounds_agree_with_the_library():
    choices = {leaf.flat: typing.get_args(leaf.kind) for leaf in LEAVES}
    assert choices["estimator"] == adapter.ESTIMATORS and choices["mse_target"] == dvr.MSE_TARGETS
    assert choices["value_map"] == value_map.VALUE_MAPS and choices["children_init"] == children.CHILDREN_INITS
    assert choices["valuator"] == factory.VALUATOR_KINDS
    assert (registry.method_names(), choices["reward"]) == (METHODS, REWARDS)
    assert {a.dest: a.choices for a in run.parser()._actions}["method"] == METHODS
    assert DVROptions.__dataclass_fields__["max_order"].metadata["max"] == sample_game.MAX_ORDER


def test_script_and_console_entry_point():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, name = scripts["dvr-jax"].partition(":")
    assert (module, name) == ("experiments.run", "main") and callable(run.main)
    done = subprocess.run([sys.executable, "experiments/run.py", "--help"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0 and "--til-meta-weight-decay" in done.stdout, done.stderr[-2000:]
