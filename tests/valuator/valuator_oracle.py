"""Slow NumPy/loop oracles for the valuator tests: Harsanyi forward, brute-force
Shapley, RFs.

Nothing here imports dvr_jax; the oracles re-implement docs/harsanyi.md §1-5 with explicit
loops over units, children and coalitions, so the vectorised JAX code is checked against
an independent implementation of the same equations.
"""

from __future__ import annotations

import math

import numpy as np


def all_masks(n_players: int) -> np.ndarray:
    """bool[2^n, n]; row s is the coalition whose bit b is (s >> b) & 1."""
    codes = np.arange(2**n_players)
    return ((codes[:, None] >> np.arange(n_players)[None, :]) & 1).astype(bool)


def brute_force_shapley(values: np.ndarray, n_players: int) -> np.ndarray:
    """Shapley values from a game table (docs/harsanyi.md §1, paper eq. 5.2), by enumeration.

    Args:
      values: f64[2^n] with values[s] = v(S) for the coalition coded by s (see
        `all_masks`).
      n_players: n.

    Returns:
      f64[n].
    """
    phi = np.zeros(n_players)
    for player in range(n_players):
        for code in range(2**n_players):
            if code >> player & 1:
                continue
            size = bin(code).count("1")
            weight = math.factorial(size) * math.factorial(n_players - size - 1) / math.factorial(n_players)
            phi[player] += weight * (values[code | (1 << player)] - values[code])
    return phi


def harsanyi_forward(
    hparams: dict, inputs: np.ndarray, *, grouped: bool, gamma: float, n_layers: int
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Loop implementation of the Harsanyi network (docs/harsanyi.md §2, §5) over many
    inputs.

    Args:
      hparams: the "harsanyi" parameter dict as NumPy arrays (grouped layer-1 weights
        stored as [H', M, B]).
      inputs: f64[S, B, H'] masked slot representations, one row per coalition.
      grouped: Variant G (slot children) or flat (feature children over the sample-major
        vector).
      gamma: trigger sharpness.
      n_layers: L.

    Returns:
      (output f64[S], per-layer activations f64[S, M_l]).
    """
    n_rows = inputs.shape[0]
    if grouped:
        layer_in = inputs
        trig = np.tanh(gamma * np.abs(inputs).sum(axis=2))  # [S, B]
    else:
        layer_in = inputs.reshape(n_rows, -1)
        trig = np.tanh(gamma * np.abs(layer_in))
    activations = []
    for layer in range(n_layers):
        block = hparams[f"block_{layer}"]
        children = block["children_logits"] > 0
        weights = block["weights"]
        n_units = children.shape[0]
        z = np.zeros((n_rows, n_units))
        for m in range(n_units):
            g = np.zeros(n_rows)
            delta = np.ones(n_rows)
            for c in np.flatnonzero(children[m]):
                if layer == 0 and grouped:
                    g += (weights[:, m, c][None, :] * layer_in[:, c, :]).sum(axis=1)
                else:
                    g += weights[m, c] * layer_in[:, c]
                delta *= trig[:, c]
            z[:, m] = np.maximum(g, 0.0) * delta
        activations.append(z)
        layer_in = z
        trig = np.tanh(gamma * np.abs(z))
    output = sum(z @ hparams[f"readout_{layer}"] for layer, z in enumerate(activations))
    return output + float(hparams.get("bias", 0.0)), activations


def receptive_sets(children: list[np.ndarray], owner: np.ndarray | None, rule: str = "union") -> list[list[set[int]]]:
    """Receptive fields as Python sets, layer by layer.

    Args:
      children: per layer, bool[M_l, D_{l-1}] children masks.
      owner: int[D_0] player owning each layer-1 input (None: inputs are players).
      rule: "union" or "intersection" (the authors' code; childless units get
        everything).

    Returns:
      per layer, per unit, the set of players (or of layer-1 inputs when owner is None).
    """
    n_inputs = children[0].shape[1]
    own = np.arange(n_inputs) if owner is None else owner
    everything = set(int(p) for p in own)
    sets = [[{int(own[k]) for k in np.flatnonzero(row)} for row in children[0]]]
    for tau in children[1:]:
        layer = []
        for row in tau:
            kids = [sets[-1][c] for c in np.flatnonzero(row)]
            if rule == "union":
                layer.append(set().union(*kids))
            else:
                layer.append(set(everything).intersection(*kids) if kids else set(everything))
        sets.append(layer)
    return sets


def attribution(
    sets: list[list[set[int]]],
    activations: list[np.ndarray],
    readouts: list[np.ndarray],
    n_players: int,
) -> np.ndarray:
    """Shares each unit's v * z equally among its receptive-field players (loops)."""
    phi = np.zeros(n_players)
    for layer_sets, z, v in zip(sets, activations, readouts, strict=True):
        for m, players in enumerate(layer_sets):
            for p in players:
                phi[p] += v[m] * z[m] / len(players)
    return phi


def subset_game_shapley(players: int, value) -> np.ndarray:
    """Brute-force Shapley values of a game given as a function of a frozenset."""
    table = np.array(
        [value(frozenset(p for p in range(players) if code >> p & 1)) for code in range(2**players)],
        dtype=np.float64,
    )
    return brute_force_shapley(table, players)
