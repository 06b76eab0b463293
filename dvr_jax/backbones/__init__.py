"""Backbone registry: name -> factory `make_<name>(n_users, n_items, **hp) -> Backbone`."""

from __future__ import annotations

import functools

from dvr_jax.backbones.base import Backbone
from dvr_jax.backbones.lightgcn import make_lightgcn
from dvr_jax.backbones.mf import make_mf
from dvr_jax.backbones.mgcf import make_mgcf
from dvr_jax.backbones.neumf import make_neumf

BACKBONES = {
    "mf": make_mf,
    "neumf": make_neumf,
    "mgcf": make_mgcf,
    "lightgcn": make_lightgcn,
}


def make_backbone(name: str, n_users: int, n_items: int, **hyperparameters) -> Backbone:
    """Builds a backbone by registry name; unknown names raise ValueError listing known ones.

    The same arguments return the same `Backbone` object. Its functions are the static
    arguments of the evaluation's jitted steps, so a grid of runs in one process (a table,
    a sweep) compiles each evaluation shape once instead of once per run.
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; known: {', '.join(sorted(BACKBONES))}")
    key = tuple(sorted(hyperparameters.items()))
    try:
        hash(key)
    except TypeError:  # e.g. a list-valued hyper-parameter: build, uncached
        return BACKBONES[name](n_users, n_items, **hyperparameters)
    return _cached_backbone(name, n_users, n_items, key)


@functools.lru_cache(maxsize=64)
def _cached_backbone(name: str, n_users: int, n_items: int, hyperparameters: tuple) -> Backbone:
    return BACKBONES[name](n_users, n_items, **dict(hyperparameters))


__all__ = [
    "BACKBONES",
    "Backbone",
    "make_backbone",
    "make_lightgcn",
    "make_mf",
    "make_mgcf",
    "make_neumf",
]
