"""docs/harsanyi.md §7, H1-H6 and H9, in float64: vectorised Shapley vs brute-force enumeration.

Every network here is built with hand-designed children (some deeper units have two
children with disjoint receptive fields), weights A ~ N(0.7, 1) so that units are alive,
and is checked against a NumPy loop forward and a 2^B coalition enumeration
(tests/valuator/valuator_oracle.py).
"""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dvr_jax.valuator.harsanyi import HarsanyiNet
from dvr_jax.valuator.shapley import (
    attribute,
    compat_shapley,
    feature_shapley,
    group_features,
    receptive_fields,
    sample_shapley,
)
from tests.valuator.valuator_oracle import (
    all_masks,
    attribution,
    brute_force_shapley,
    harsanyi_forward,
    receptive_sets,
    subset_game_shapley,
)


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def _random_children(rng, n_units, n_inputs, prob):
    """bool[M, D], every unit with at least one child."""
    children = rng.random((n_units, n_inputs)) < prob
    for m in range(n_units):
        if not children[m].any():
            children[m, rng.integers(n_inputs)] = True
    return children


def _design_children(rng, n_slots, width, widths, grouped):
    """Layer-1 units 0, 1 read disjoint player halves; deeper unit 0 reads both."""
    n_inputs = n_slots * (1 if grouped else width)
    owner = np.arange(n_inputs) if grouped else np.arange(n_inputs) // width
    first = _random_children(rng, widths[0], n_inputs, 0.35 if grouped else 0.35 / width)
    half = n_slots // 2
    for unit, allowed in ((0, owner < half), (1, owner >= half)):
        if unit < widths[0]:
            row = rng.random(n_inputs) < 0.5
            row &= allowed
            if not row.any():
                row[rng.choice(np.flatnonzero(allowed))] = True
            first[unit] = row
    children = [first]
    for prev, cur in zip(widths[:-1], widths[1:], strict=True):
        tau = _random_children(rng, cur, prev, 0.4)
        tau[0] = False
        tau[0, :2] = True
        children.append(tau)
    return children


def _build(rng, *, grouped, n_slots, h_dim, n_layers, width, gamma=1000.0, const=False):
    """A float64 HarsanyiNet with designed children, its params and a random input X."""
    widths = (width,) * n_layers
    slots = rng.normal(size=(n_slots, h_dim))
    if const:
        slots = np.concatenate([slots, np.ones((n_slots, 1))], axis=1)
    net = HarsanyiNet(widths, grouped=grouped, gamma_trig=gamma, param_dtype=jnp.float64)
    children = _design_children(rng, n_slots, slots.shape[1], widths, grouped)
    params = {}
    for layer in range(n_layers):
        if layer == 0 and grouped:  # stored feature-major: [H', M, B]
            weight_shape = (slots.shape[1], widths[0], n_slots)
        else:
            weight_shape = children[layer].shape
        params[f"block_{layer}"] = {
            "children_logits": np.where(children[layer], 1.0, -1.0),
            "weights": rng.normal(0.7, 1.0, size=weight_shape),
        }
        params[f"readout_{layer}"] = rng.normal(size=widths[layer])
    return net, params, slots, children


def _game_table(params, slots, *, grouped, gamma, n_layers):
    """v(S) for every coalition, by the NumPy loop forward on X * mu_S."""
    masks = all_masks(slots.shape[0])
    values, _ = harsanyi_forward(
        params,
        slots[None] * masks[:, :, None],
        grouped=grouped,
        gamma=gamma,
        n_layers=n_layers,
    )
    return values


def _grid():
    """(variant, B, h, L, M, gamma, const) for B 3..10, h 1/2/4, L 1/2/3, M 4/8."""
    cases = []
    for variant in ("G", "F", "P"):
        h_dims = (1,) if variant == "P" else (1, 2, 4)
        for n_slots, h_dim, n_layers, width in itertools.product(range(3, 11), h_dims, (1, 2, 3), (4, 8)):
            index = len(cases)
            gamma = 1000.0 if index % 3 else 2.0  # also exercise non-saturated triggers
            const = variant == "G" and index % 2 == 0
            cases.append((variant, n_slots, h_dim, n_layers, width, gamma, const))
    return cases


GRID = _grid()
PAD_SLOTS, PAD_WIDTH, PAD_LAYERS = 10, 8, 3


def _active_share(params, slots, *, grouped, gamma, n_layers):
    """Share of units with z > 0 on the full batch (NumPy oracle)."""
    _, acts = harsanyi_forward(params, slots[None], grouped=grouped, gamma=gamma, n_layers=n_layers)
    return np.mean(np.concatenate([a[0] > 0 for a in acts]))


def _live_case(seed, *, grouped, n_slots, h_dim, n_layers, width, gamma, const):
    """Draws cases until >= 1/3 of the units are alive (no trivially-zero case)."""
    rng = np.random.default_rng(seed)
    for _ in range(50):
        net, params, slots, children = _build(
            rng,
            grouped=grouped,
            n_slots=n_slots,
            h_dim=h_dim,
            n_layers=n_layers,
            width=width,
            gamma=gamma,
            const=const,
        )
        share = _active_share(params, slots, grouped=grouped, gamma=gamma, n_layers=n_layers)
        if share >= 1 / 3:
            return params, slots, children, share
    raise AssertionError("could not draw a live network")


def _pad(params, slots, *, grouped, pad_features):
    """Embeds a case in the (10 slots, 8 units, 3 layers) network: extra slots are
    absent (zero rows, nobody's child), extra units have no children, extra layers read
    out 0. Layer-1 feature b*H' + k of a flat net moves to b*pad_features + k
    (sample-major kept)."""
    n_slots, width = slots.shape
    padded_slots = np.zeros((PAD_SLOTS, pad_features))
    padded_slots[:n_slots, :width] = slots
    out = {}
    for layer in range(PAD_LAYERS):
        n_in = (PAD_SLOTS if grouped else PAD_SLOTS * pad_features) if layer == 0 else PAD_WIDTH
        logits = -np.ones((PAD_WIDTH, n_in))
        weights = np.zeros((pad_features, PAD_WIDTH, PAD_SLOTS) if grouped and layer == 0 else (PAD_WIDTH, n_in))
        readout = np.zeros(PAD_WIDTH)
        if f"block_{layer}" in params:
            real_logits = params[f"block_{layer}"]["children_logits"]
            real_weights = params[f"block_{layer}"]["weights"]
            m, d = real_logits.shape
            if layer == 0 and not grouped:
                index = (np.arange(d) // width) * pad_features + np.arange(d) % width
                logits[:m, index] = real_logits
                weights[:m, index] = real_weights
            elif layer == 0:
                logits[:m, :d] = real_logits
                weights[:width, :m, :d] = real_weights
            else:
                logits[:m, :d] = real_logits
                weights[:m, :d] = real_weights
            readout[:m] = params[f"readout_{layer}"]
        out[f"block_{layer}"] = {"children_logits": logits, "weights": weights}
        out[f"readout_{layer}"] = readout
    return out, padded_slots


@pytest.mark.parametrize("variant", ["G", "F", "P"])
def test_h1_h2_exact_against_brute_force(variant):
    """H1 + H2 on the whole grid; a variant's cases run in one vmapped, jitted call."""
    cases = [case for case in GRID if case[0] == variant]
    assert len(cases) == (48 if variant == "P" else 144)
    grouped = variant == "G"
    pad_features = {"G": 5, "F": 4, "P": 1}[variant]
    real, padded = [], []
    for index, (_, n_slots, h_dim, n_layers, width, gamma, const) in enumerate(cases):
        params, slots, children, share = _live_case(
            100 * index + len(variant),
            grouped=grouped,
            n_slots=n_slots,
            h_dim=h_dim,
            n_layers=n_layers,
            width=width,
            gamma=gamma,
            const=const,
        )
        if n_layers >= 2:  # deeper unit 0 reads two children with disjoint receptive fields
            owner = None if grouped else np.arange(children[0].shape[1]) // slots.shape[1]
            first = receptive_sets(children[:1], owner)[0]
            assert children[1][0, :2].all() and not (first[0] & first[1])
        real.append((params, slots, gamma, n_layers, share))
        padded.append(_pad(params, slots, grouped=grouped, pad_features=pad_features))
    stacked = jax.tree.map(lambda *leaves: jnp.asarray(np.stack(leaves)), *padded)
    gammas = jnp.asarray([case[5] for case in cases])

    def run(params, slots, gamma):
        net = HarsanyiNet(
            (PAD_WIDTH,) * PAD_LAYERS,
            grouped=grouped,
            gamma_trig=gamma,
            param_dtype=jnp.float64,
        )
        trace = net.apply({"params": params}, slots)
        return trace.output, sample_shapley(trace, PAD_SLOTS, grouped=grouped)

    # gamma is a module field (static); vmap over the two gamma values separately.
    outputs = np.zeros(len(cases))
    phis = np.zeros((len(cases), PAD_SLOTS))
    for gamma in (2.0, 1000.0):
        rows = np.flatnonzero(np.asarray(gammas) == gamma)
        sub = jax.tree.map(lambda leaf, rows=rows: leaf[rows], stacked)
        out, phi = jax.jit(jax.vmap(functools.partial(run, gamma=gamma)))(*sub)
        outputs[rows], phis[rows] = np.asarray(out), np.asarray(phi)
    for index, (params, slots, gamma, n_layers, share) in enumerate(real):
        n_slots = slots.shape[0]
        table = _game_table(params, slots, grouped=grouped, gamma=gamma, n_layers=n_layers)
        phi_bf = brute_force_shapley(table, n_slots)
        tol = 1e-10 * max(1.0, abs(table[-1]))
        context = f"case {cases[index]}"
        np.testing.assert_allclose(outputs[index], table[-1], rtol=0, atol=tol, err_msg=context)
        np.testing.assert_allclose(phis[index, :n_slots], phi_bf, rtol=0, atol=tol, err_msg=context)
        np.testing.assert_array_equal(phis[index, n_slots:], 0.0)  # absent padding slots
        assert table[0] == 0.0  # no c0: the empty coalition is worth exactly 0
        np.testing.assert_allclose(phis[index].sum(), table[-1] - table[0], atol=tol, err_msg=context)
        assert share >= 1 / 3
    nontrivial = [np.abs(phis[i]).max() > 1e-3 for i in range(len(cases))]
    assert np.mean(nontrivial) >= 0.9


def test_h1_nontrivial_values():
    """The grid is not trivially passing: units are alive and Shapley values are far
    from 0."""
    rng = np.random.default_rng(7)
    net, params, slots, _ = _build(rng, grouped=True, n_slots=8, h_dim=2, n_layers=3, width=8)
    trace = net.apply({"params": params}, jnp.asarray(slots))
    phi = np.asarray(sample_shapley(trace, 8))
    assert np.mean(np.concatenate([np.asarray(z) > 0 for z in trace.activations])) >= 1 / 3
    assert np.abs(phi).max() > 1e-2
    assert np.count_nonzero(np.abs(phi) > 1e-6) >= 4


@pytest.mark.parametrize("grouped", [True, False])
def test_h3_null_player(grouped):
    """A slot in no receptive field has phi = 0 and never changes v(S)."""
    rng = np.random.default_rng(3)
    net, params, slots, _ = _build(rng, grouped=grouped, n_slots=6, h_dim=2, n_layers=2, width=6)
    null = 5
    logits = params["block_0"]["children_logits"]
    if grouped:
        logits[:, null] = -1.0
    else:
        logits[:, null * 2 : (null + 1) * 2] = -1.0
    trace = net.apply({"params": params}, jnp.asarray(slots))
    phi = np.asarray(sample_shapley(trace, 6, grouped=grouped))
    assert phi[null] == 0.0
    assert np.abs(phi).max() > 1e-3
    table = _game_table(params, slots, grouped=grouped, gamma=1000.0, n_layers=2)
    without = [code for code in range(2**6) if not code >> null & 1]
    np.testing.assert_array_equal(table[[c | 1 << null for c in without]], table[without])
    np.testing.assert_allclose(phi, brute_force_shapley(table, 6), atol=1e-12)


def test_h4_intersection_rf_fails_brute_force():
    """H4: the intersection RF (the released code's rule) breaks exactness and efficiency (2-child unit)."""
    rng = np.random.default_rng(4)
    net, params, slots, children = _build(rng, grouped=True, n_slots=8, h_dim=2, n_layers=2, width=4)
    params["block_1"]["children_logits"][0] = np.array([1.0, 1.0, -1.0, -1.0])
    params["block_0"]["weights"] = np.abs(params["block_0"]["weights"])
    slots = np.abs(slots) + 0.1  # every unit alive, so the disjoint-RF unit carries a dividend
    trace = net.apply({"params": params}, jnp.asarray(slots))
    assert float(trace.activations[1][0]) > 0
    table = _game_table(params, slots, grouped=True, gamma=1000.0, n_layers=2)
    phi_bf = brute_force_shapley(table, 8)
    union = np.asarray(attribute(trace, receptive_fields(trace.masks)))
    inter_fields = receptive_fields(trace.masks, rule="intersection")
    inter = np.asarray(attribute(trace, inter_fields))
    np.testing.assert_allclose(union, phi_bf, atol=1e-12)
    assert np.abs(inter - phi_bf).max() > 1e-3
    assert abs(inter.sum() - table[-1]) > 1e-3
    # The vectorised intersection rule is the authors' rule (loop oracle).
    hard = [np.asarray(m) > 0 for m in trace.masks]
    loop_sets = receptive_sets(hard, None, rule="intersection")
    zs = [np.asarray(z) for z in trace.activations]
    vs = [params[f"readout_{layer}"] for layer in range(2)]
    np.testing.assert_allclose(inter, attribution(loop_sets, zs, vs, 8), atol=1e-12)


def test_h5_documented_counterexample_game():
    """v(S) = [{a1, a2, c1} in S]: feature sums (2/3, 1/3), sample game (1/2, 1/2)."""
    features = {"a1": 0, "a2": 1, "c1": 2}
    owner = {0: 0, 1: 0, 2: 1}
    phi_feat = subset_game_shapley(3, lambda s: float({0, 1, 2} <= s))
    feature_sums = np.array([phi_feat[[k for k in features.values() if owner[k] == b]].sum() for b in (0, 1)])
    np.testing.assert_allclose(feature_sums, [2 / 3, 1 / 3], atol=1e-15)
    sample_phi = subset_game_shapley(2, lambda s: float({0, 1} <= s))
    np.testing.assert_allclose(sample_phi, [0.5, 0.5], atol=1e-15)


def test_h5_counterexample_in_a_network():
    """The same game in a flat Harsanyi net: per-sample feature sums are wrong."""
    slots = np.array([[0.5, 0.8], [0.9, 0.3]])  # sample 0 owns features 0, 1; sample 1: 2, 3
    net = HarsanyiNet((1,), grouped=False, param_dtype=jnp.float64)
    params = {
        "block_0": {
            "children_logits": np.array([[1.0, 1.0, 1.0, -1.0]]),
            "weights": np.ones((1, 4)),
        },
        "readout_0": np.array([1.0]),
    }
    trace = net.apply({"params": params}, jnp.asarray(slots))
    total = float(trace.output)
    assert total > 0
    per_feature = np.asarray(feature_shapley(trace))
    np.testing.assert_allclose(per_feature, total * np.array([1, 1, 1, 0]) / 3, atol=1e-15)
    sums = np.asarray(group_features(jnp.asarray(per_feature), 2))
    np.testing.assert_allclose(sums, total * np.array([2, 1]) / 3, atol=1e-15)
    phi = np.asarray(sample_shapley(trace, 2, grouped=False))
    np.testing.assert_allclose(phi, [total / 2, total / 2], atol=1e-15)
    table = _game_table(params, slots, grouped=False, gamma=1000.0, n_layers=1)
    np.testing.assert_allclose(phi, brute_force_shapley(table, 2), atol=1e-15)


def test_h5_feature_sums_differ_on_random_net():
    """B = 4, h = 3: feature phi is exact for the feature game, its sums are not."""
    params, slots, _, _ = _live_case(
        5,
        grouped=False,
        n_slots=4,
        h_dim=3,
        n_layers=2,
        width=6,
        gamma=1000.0,
        const=False,
    )
    net = HarsanyiNet((6, 6), grouped=False, param_dtype=jnp.float64)
    trace = net.apply({"params": params}, jnp.asarray(slots))
    per_feature = np.asarray(feature_shapley(trace))
    flat = slots.reshape(-1)
    masks = all_masks(12)
    values, _ = harsanyi_forward(
        params,
        (flat[None] * masks).reshape(-1, 4, 3),
        grouped=False,
        gamma=1000.0,
        n_layers=2,
    )
    np.testing.assert_allclose(per_feature, brute_force_shapley(values, 12), atol=1e-10)
    sample_bf = brute_force_shapley(_game_table(params, slots, grouped=False, gamma=1000.0, n_layers=2), 4)
    sums = np.asarray(group_features(jnp.asarray(per_feature), 4))
    np.testing.assert_allclose(sums.sum(), sample_bf.sum(), atol=1e-10)  # both efficient
    assert np.abs(sums - sample_bf).max() > 1e-3
    np.testing.assert_allclose(np.asarray(sample_shapley(trace, 4, grouped=False)), sample_bf, atol=1e-10)


def test_h6_sample_major_grouping():
    """Feature b*h + k is sample b's: reshape(B, h) groups, reshape(h, B) mixes."""
    n_slots, h_dim = 5, 3
    values = np.arange(n_slots * h_dim, dtype=np.float64) ** 1.5
    owner = np.arange(n_slots * h_dim) // h_dim
    by_loop = np.array([values[owner == b].sum() for b in range(n_slots)])
    np.testing.assert_allclose(np.asarray(group_features(jnp.asarray(values), n_slots)), by_loop)
    wrong = values.reshape(h_dim, n_slots).sum(axis=0)
    assert np.abs(wrong - by_loop).max() > 1.0


def test_h6_compat_values_are_misindexed():
    """`C_compat` reproduces the code's slot values, which are not brute force's."""
    rng = np.random.default_rng(6)
    net, params, slots, _ = _build(rng, grouped=False, n_slots=4, h_dim=3, n_layers=2, width=6)
    trace = net.apply({"params": params}, jnp.asarray(slots))
    compat = np.asarray(compat_shapley(trace, 4))
    hard = [np.asarray(m) > 0 for m in trace.masks]
    sets = receptive_sets(hard, None, rule="intersection")
    zs = [np.asarray(z) for z in trace.activations]
    vs = [params[f"readout_{layer}"] for layer in range(2)]
    per_feature = attribution(sets, zs, vs, 12)
    by_code = np.array([sum(per_feature[r * 4 + c] for r in range(3)) for c in range(4)])
    np.testing.assert_allclose(compat, by_code, atol=1e-12)
    phi_bf = brute_force_shapley(_game_table(params, slots, grouped=False, gamma=1000.0, n_layers=2), 4)
    assert np.abs(compat - phi_bf).max() > 1e-3


def test_h9_additive_game():
    """One child per layer-1 unit, z_b = 1, v = a: additive game, phi = a."""
    n_slots = 6
    a = np.linspace(-1.5, 2.0, n_slots)
    net = HarsanyiNet((n_slots,), grouped=True, param_dtype=jnp.float64)
    params = {
        "block_0": {
            "children_logits": np.where(np.eye(n_slots) > 0, 1.0, -1.0),
            "weights": np.ones((1, n_slots, n_slots)),
        },
        "readout_0": a,
    }
    slots = np.ones((n_slots, 1))
    trace = net.apply({"params": params}, jnp.asarray(slots))
    np.testing.assert_array_equal(np.asarray(trace.activations[0]), np.ones(n_slots))
    np.testing.assert_allclose(np.asarray(sample_shapley(trace, n_slots)), a, atol=1e-15)
    table = _game_table(params, slots, grouped=True, gamma=1000.0, n_layers=1)
    masks = all_masks(n_slots)
    np.testing.assert_allclose(table, masks @ a, atol=1e-14)
    np.testing.assert_allclose(brute_force_shapley(table, n_slots), a, atol=1e-13)
