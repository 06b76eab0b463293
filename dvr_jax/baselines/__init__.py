"""Baseline methods (docs/baselines.md): the popularity floor and the BPR variants of Table 2.

Each factory returns a `dvr_jax.methods.Method` running on any backbone through the shared
jitted step machinery; `dvr_jax.loop.build` selects them by `RunConfig.method`.
"""

from dvr_jax.baselines.aobpr import DOT_PRODUCT_BACKBONES, make_aobpr_method
from dvr_jax.baselines.common import BaselineData
from dvr_jax.baselines.popularity import make_popularity
from dvr_jax.baselines.pris import make_pris_method
from dvr_jax.baselines.reweighting import make_rce_method, make_tce_method
from dvr_jax.baselines.til import make_til_method
from dvr_jax.baselines.wbpr import item_popularity, make_wbpr_method, with_item_bias

__all__ = [
    "DOT_PRODUCT_BACKBONES",
    "BaselineData",
    "item_popularity",
    "make_aobpr_method",
    "make_popularity",
    "make_pris_method",
    "make_rce_method",
    "make_tce_method",
    "make_til_method",
    "make_wbpr_method",
    "with_item_bias",
]
