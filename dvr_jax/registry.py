"""The registries of methods and backbones: a name owns its builder (docs/engineering.md §12).

A `MethodEntry` turns a `RunConfig` into typed factory arguments and builds the method, the
backbone it evaluates with and its step data's `aux`; the loop (`dvr_jax.loop.build`) only
looks entries up, so it never names a method. Entries also own their configuration defaults
and checks (`RunConfig` asks the entry of its `method`), and whether a run trains at all
(the popularity floor does not) or is named by its reward (DVR, docs/algorithm.md §7).
`--method` choices come from `method_names()` when the CLI is built, so an entry registered
at run time (a test's toy method, a user's experiment) is a method like any other.

The built-in entries live in `dvr_jax.builders`, imported on the first look-up, so this
module (and `dvr_jax.config`) stays cheap to import. Backbones are registered in
`dvr_jax.backbones.BACKBONES`; `registered_backbone` adds one for the duration of a block.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

_METHODS: dict[str, MethodEntry] = {}
_BUILTINS_LOADED = [False]


class BuildContext(NamedTuple):
    """What a builder sees: the config, the dataset *without its test split*, the training
    arrays, the registry backbone and its graph, the warm start's params (or None), what the
    entry's `prepare` returned, the test pairs only when the entry's `leaks` says the run
    reads them (a leaky protocol; else None), and the data mesh of a run on several devices
    (None on one device; DVR's reward splits its users over it)."""

    cfg: Any
    dataset: Any
    train: Any
    backbone: Any
    graph: Any
    init_params: Any = None
    prepared: Any = None
    test: Any = None
    mesh: Any = None


class Built(NamedTuple):
    """A builder's result: the method, the backbone it evaluates with (WBPR wraps an item bias
    around the registry one) and the step data's `aux`."""

    method: Any
    backbone: Any
    aux: Any = None


@dataclasses.dataclass(frozen=True)
class MethodEntry:
    """A registered method.

    Attributes:
      name: the `--method` value.
      build: `build(ctx: BuildContext) -> Built`, after the warm start.
      prepare: `prepare(ctx) -> Any`, before the warm start: data checks (raise ValueError or
        ConfigError) and device arrays the build needs (DVR's reward data); its result is
        `ctx.prepared`. None: nothing to prepare.
      defaults: `defaults(cfg) -> dict` of values for the None fields (RunConfig's or its own
        options', by field name) this method resolves its own way (DVR: batch size, warm start,
        valuator width); `cfg.options` is already set when it is called.
      check: `check(cfg)`: option combinations of this method's fields (raise ValueError).
      make_backbone: `make_backbone(cfg, dataset) -> Backbone` replacing the registry backbone
        (the popularity ranking); None: `--backbone`.
      trains: False for a method without a train step (no batch-size check, no warm start).
      uses_reward: the run is named and reported by its `--reward` (DVR).
      options: the method's own options, a frozen dataclass whose fields are declared with
        `dvr_jax.config.option` (type, default, help, bounds); `RunConfig.options` holds an
        instance, and each field is a flag `--<prefix>-<field>`. None: no options of its own.
      prefix: the options' flat-name prefix (`tce` makes `drop_rate` the flag `--tce-drop-rate`
        and the `config.json` key `tce_drop_rate`); "" keeps the bare field names (DVR's).
        Entries sharing an options class (TIL-UI and TIL-MI) share its flags.
      table_sharding: the method trains and evaluates with its backbone's embedding tables split
        by rows over a "model" mesh axis (`--model-shards`, `dvr_jax.sharding`); False: the
        flag is refused for this method.
      leaks: `leaks(cfg) -> tuple[str, ...]`: what of this run reads the test split (DVR's
        `--reward-split test`: "reward on test users"); non-empty makes the run test-leaky
        (`config.leaky_ingredients`) and hands the test pairs to `prepare`/`build` as
        `ctx.test`. None: the method never reads test.
    """

    name: str
    build: Callable[[BuildContext], Built]
    prepare: Callable[[BuildContext], Any] | None = None
    defaults: Callable[[Any], dict[str, Any]] | None = None
    check: Callable[[Any], None] | None = None
    make_backbone: Callable[[Any, Any], Any] | None = None
    trains: bool = True
    uses_reward: bool = False
    options: type | None = None
    prefix: str = ""
    leaks: Callable[[Any], tuple[str, ...]] | None = None
    table_sharding: bool = False


def _load_builtins() -> None:
    if not _BUILTINS_LOADED[0]:
        _BUILTINS_LOADED[0] = True
        import dvr_jax.builders  # noqa: F401, PLC0415  (registers the built-in entries)


def register_method(entry: MethodEntry) -> MethodEntry:
    """Adds `entry`; a name already registered raises ValueError."""
    _load_builtins()
    if entry.name in _METHODS:
        raise ValueError(f"method {entry.name!r} is already registered")
    _METHODS[entry.name] = entry
    return entry


def unregister_method(name: str) -> None:
    """Removes the entry `name` (KeyError if absent)."""
    del _METHODS[name]


@contextlib.contextmanager
def registered_method(entry: MethodEntry) -> Iterator[MethodEntry]:
    """Registers `entry` for the duration of the block, and removes it afterwards."""
    register_method(entry)
    try:
        yield entry
    finally:
        unregister_method(entry.name)


def method_names() -> tuple[str, ...]:
    """Every registered method, in registration order (built-ins first)."""
    _load_builtins()
    return tuple(_METHODS)


def get_method(name: str) -> MethodEntry:
    """The entry of `name`; an unknown name raises ValueError listing the known ones."""
    _load_builtins()
    if name not in _METHODS:
        raise ValueError(f"method must be one of {', '.join(_METHODS)}, got {name!r}")
    return _METHODS[name]


@contextlib.contextmanager
def registered_backbone(name: str, factory: Callable[..., Any]) -> Iterator[None]:
    """Adds a backbone factory `make_<name>(n_users, n_items, **hp)` for the block's duration."""
    from dvr_jax import backbones  # noqa: PLC0415

    if name in backbones.BACKBONES:
        raise ValueError(f"backbone {name!r} is already registered")
    backbones.BACKBONES[name] = factory
    try:
        yield
    finally:
        del backbones.BACKBONES[name]
        backbones._cached_backbone.cache_clear()
