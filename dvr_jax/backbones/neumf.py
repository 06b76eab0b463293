"""NeuMF: a GMF tower and an MLP tower fused by a linear prediction layer (a Linen module).

Reference: He, Liao, Zhang, Nie, Hu, Chua, "Neural Collaborative Filtering", WWW 2017.
docs/algorithm.md §3.2 and docs/departures.md §15 (sizes read from DVR's argparse):

.. math::
    \\hat y_{ui} = h^\\top [\\, p^G_u \\odot q^G_i \\,;\\, a_L \\,] + b, \\qquad
    a_0 = [p^M_u ; q^M_i], \\quad a_l = \\mathrm{ReLU}(W_l\\, \\mathrm{drop}(a_{l-1}) + b_l)

with d_G = d_M = 64, MLP 128 → 64 → 32 → 16 → 8 and dropout 0.2 (so h ∈ R^{64+8}), no
pretraining, the logit used as the BPR score, coupled weight decay 1e-3 as for BPRMF.
Where the paper and DVR are silent we follow the common PyTorch NCF port (guoyang9/NCF,
`model.py`): dropout before every MLP Linear layer (the first one included), embeddings
N(0, 0.01²), Xavier-uniform MLP weights, zero biases. Dropout is active only when
`score_pairs` gets a key.

`score_all` scores C users against all I items without forming the C·I×128 concatenation:
the first MLP layer splits as `W_1 [p; q] = W_1ᵘ p + W_1ⁱ q`, so each side is projected
once (this removes 16k of the ~21k flops per (user, item) pair), and the remaining layers
run on equal item chunks of at most `rows_per_chunk / C` items (`jax.lax.map`), which bounds
the largest buffer to about `rows_per_chunk × 64` floats (256 MiB at the default 2^20 rows).
Measured on the shared 2-core CPU (C = 1000 users, jitted, steady state, load average 3-6
from other jobs; `python -m tests.backbones.test_neumf 1000 40981`):
  * 1,507 items (2 chunks): 0.43-0.74 s per call, peak RSS +0.33 GB;
  * 40,981 items (40 chunks of 1,025): 5.7-11.4 s per call (~40 GFLOP/s at best), peak RSS
    +0.62 GB. A full Gowalla evaluation (29,858 users) thus costs ~3 min on this CPU,
    against ~5 s for MF; C·I·64 floats unchunked would be 10.5 GB.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dvr_jax.backbones.base import Backbone
from dvr_jax.typing import Array, Params, PRNGKey

_EMBED_INIT = nn.initializers.normal(stddev=0.01)
_DENSE_INIT = nn.initializers.xavier_uniform()


class NeuMF(nn.Module):
    """NeuMF scores. Fields are the hyperparameters.

    Attributes:
      n_users: U.
      n_items: I.
      dim: the shared embedding size D of the registry interface; when given it sets
        d_G = d_M = D (GMF size and the MLP input 2D), our default d_G = d_M = 64.
      gmf_dim: d_G (when `dim` is None).
      mlp_layers: MLP widths; `mlp_layers[0]` is the width of `[p^M_u; q^M_i]`, so
        d_M = mlp_layers[0] // 2, and the remaining entries are the hidden layer widths.
      dropout_rate: dropout before each MLP Linear layer (training only).
    """

    n_users: int
    n_items: int
    gmf_dim: int = 64
    mlp_layers: Sequence[int] = (128, 64, 32, 16, 8)
    dropout_rate: float = 0.2

    def setup(self) -> None:
        mlp_dim = self.mlp_layers[0] // 2
        self.gmf_user = nn.Embed(self.n_users, self.gmf_dim, embedding_init=_EMBED_INIT)
        self.gmf_item = nn.Embed(self.n_items, self.gmf_dim, embedding_init=_EMBED_INIT)
        self.mlp_user = nn.Embed(self.n_users, mlp_dim, embedding_init=_EMBED_INIT)
        self.mlp_item = nn.Embed(self.n_items, mlp_dim, embedding_init=_EMBED_INIT)
        self.hidden = [
            nn.Dense(width, kernel_init=_DENSE_INIT, name=f"mlp_{layer}")
            for layer, width in enumerate(self.mlp_layers[1:])
        ]
        self.dropout = nn.Dropout(self.dropout_rate)
        self.predict = nn.Dense(1, kernel_init=_DENSE_INIT, name="predict")

    def __call__(self, users: Array, items: Array, deterministic: bool = True) -> Array:
        """Scores pairs.

        Args:
          users: int32[B] user ids.
          items: int32[B] item ids.
          deterministic: disables dropout (needs a "dropout" rng when False).

        Returns:
          f32[B] pre-sigmoid scores.
        """
        gmf = self.gmf_user(users) * self.gmf_item(items)
        act = jnp.concatenate([self.mlp_user(users), self.mlp_item(items)], axis=-1)
        for dense in self.hidden:
            act = nn.relu(dense(self.dropout(act, deterministic=deterministic)))
        return self.predict(jnp.concatenate([gmf, act], axis=-1))[..., 0]

    def features(self, users: Array, pos: Array, neg: Array) -> Array:
        """Ego features `[g_u; m_u; g_i; m_i; g_j; m_j]`, f32[B, 2·d_G + 4·d_M]."""
        parts = []
        for ids, gmf_table, mlp_table in (
            (users, self.gmf_user, self.mlp_user),
            (pos, self.gmf_item, self.mlp_item),
            (neg, self.gmf_item, self.mlp_item),
        ):
            parts += [gmf_table(ids), mlp_table(ids)]
        return jnp.concatenate(parts, axis=-1)

    def score_all(self, users: Array, rows_per_chunk: int) -> Array:
        """Deterministic scores of C users against every item, f32[C, I] (see module doc)."""
        n_users = users.shape[0]
        # As few chunks as the budget allows, then equal sizes to minimise padding.
        n_chunks = -(-self.n_items // max(1, rows_per_chunk // max(n_users, 1)))
        chunk = -(-self.n_items // n_chunks)
        first, rest = self.hidden[0], self.hidden[1:]
        kernel, bias = first.variables["params"]["kernel"], first.variables["params"]["bias"]
        mlp_dim = self.mlp_layers[0] // 2
        user_proj = self.mlp_user(users) @ kernel[:mlp_dim] + bias[None, :]  # [C, H1]
        item_proj = self.mlp_item.embedding @ kernel[mlp_dim:]  # [I, H1]
        gmf_user = self.gmf_user(users)  # [C, d_G]
        gmf_item = self.gmf_item.embedding  # [I, d_G]
        pred_kernel = self.predict.variables["params"]["kernel"][:, 0]
        pred_bias = self.predict.variables["params"]["bias"][0]
        gmf_w, mlp_w = pred_kernel[: self.gmf_dim], pred_kernel[self.gmf_dim :]
        pad = n_chunks * chunk - self.n_items
        item_proj = jnp.pad(item_proj, ((0, pad), (0, 0))).reshape(n_chunks, chunk, -1)
        gmf_item = jnp.pad(gmf_item, ((0, pad), (0, 0))).reshape(n_chunks, chunk, -1)
        # The GMF half of the prediction is bilinear: (g_u ⊙ w) · g_i.
        gmf_user_w = gmf_user * gmf_w[None, :]

        def one_chunk(args: tuple[Array, Array]) -> Array:
            proj, gmf_chunk = args
            act = nn.relu(user_proj[:, None, :] + proj[None, :, :])  # [C, chunk, H1]
            for dense in rest:
                act = nn.relu(dense(act))
            return gmf_user_w @ gmf_chunk.T + act @ mlp_w  # [C, chunk]

        scores = jax.lax.map(one_chunk, (item_proj, gmf_item))  # [n_chunks, C, chunk]
        scores = jnp.moveaxis(scores, 0, 1).reshape(n_users, n_chunks * chunk)
        return scores[:, : self.n_items] + pred_bias


def make_neumf(
    n_users: int,
    n_items: int,
    *,
    dim: int | None = None,
    gmf_dim: int = 64,
    mlp_layers: Sequence[int] = (128, 64, 32, 16, 8),
    dropout: float = 0.2,
    weight_decay: float = 1e-3,
    rows_per_chunk: int = 1 << 20,
) -> Backbone:
    """Builds the NeuMF backbone.

    Args:
      n_users: U.
      n_items: I.
      dim: the shared embedding size D of the registry interface; when given it sets
        d_G = d_M = D (GMF size and the MLP input 2D), our default d_G = d_M = 64.
      gmf_dim: d_G (when `dim` is None).
      mlp_layers: MLP widths, input width first (d_M = mlp_layers[0] // 2).
      dropout: dropout rate before each MLP Linear layer, used when a key is given.
      weight_decay: coupled L2 weight decay on all parameters.
      rows_per_chunk: memory bound of `score_all`, in (user, item) rows per item chunk.

    Returns:
      A `Backbone` whose params are the Linen variables `{"params": {...}}`.
    """
    if dim is not None:
        gmf_dim, mlp_layers = dim, (2 * dim, *tuple(mlp_layers)[1:])
    module = NeuMF(
        n_users=n_users,
        n_items=n_items,
        gmf_dim=gmf_dim,
        mlp_layers=tuple(mlp_layers),
        dropout_rate=dropout,
    )

    def init(key: PRNGKey) -> Params:
        ids = jnp.zeros((1,), jnp.int32)
        return module.init(key, ids, ids)

    def build_graph(train_pairs: np.ndarray) -> None:
        del train_pairs
        return None

    def encode(params: Params, graph: None, key: PRNGKey | None = None) -> Params:
        del graph, key
        return params

    def score_pairs(reps: Params, users: Array, items: Array, key: PRNGKey | None = None) -> Array:
        if key is None:
            return module.apply(reps, users, items, deterministic=True)
        return module.apply(reps, users, items, deterministic=False, rngs={"dropout": key})

    def score_all(reps: Params, users: Array) -> Array:
        return module.apply(reps, users, rows_per_chunk, method=NeuMF.score_all)

    def pair_features(params: Params, users: Array, pos: Array, neg: Array) -> Array:
        return module.apply(params, users, pos, neg, method=NeuMF.features)

    def regularizer(params, reps, users, pos, neg) -> Array:
        del params, reps, users, pos, neg
        return jnp.zeros((), jnp.float32)

    return Backbone(
        name="neumf",
        init=init,
        build_graph=build_graph,
        encode=encode,
        score_pairs=score_pairs,
        score_all=score_all,
        pair_features=pair_features,
        regularizer=regularizer,
        weight_decay=weight_decay,
    )
