"""Backbone registry: name -> factory `make_<name>(n_users, n_items, **hp) -> Backbone`."""

from __future__ import annotations

from dvr_jax.backbones.base import Backbone
from dvr_jax.backbones.mf import make_mf

BACKBONES = {
    "mf": make_mf,
}


def make_backbone(name: str, n_users: int, n_items: int, **hyperparameters) -> Backbone:
    """Builds a backbone by registry name; unknown names raise ValueError listing known ones."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; known: {', '.join(sorted(BACKBONES))}")
    return BACKBONES[name](n_users, n_items, **hyperparameters)


__all__ = ["BACKBONES", "Backbone", "make_backbone", "make_mf"]
