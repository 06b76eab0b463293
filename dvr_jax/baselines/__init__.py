"""Baseline methods: popularity floor (more baselines plug in through `dvr_jax.methods`)."""

from dvr_jax.baselines.popularity import make_popularity

__all__ = ["make_popularity"]
