"""The sample-game valuator (default kind): exactness, equivariance, no null players.

Exact Shapley values against a 2^B coalition enumeration of `output` (float64, on
random and on trained parameters), the Harsanyi dividends of the enumerated game
(Mobius transform: non-additive, nothing above `max_order`), permutation equivariance,
batch-size freedom, padding semantics, the `value_statistics` helper against a loop
oracle, and the `make_valuator` dispatcher. Compilation dominates on the 2-core CPU:
small widths, one jitted program per valuator and batch shape.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dvr_jax.state import standard_promotion
from dvr_jax.valuator import (
    VALUATOR_KINDS,
    loss_target,
    make_sample_valuator,
    make_slot_valuator,
    make_valuator,
    parameter_labels,
    sample_coalition,
    value_statistics,
)
from dvr_jax.valuator.sample_game import SampleGame, interaction_scale
from tests.valuator.valuator_oracle import all_masks, brute_force_shapley

N_FEATS = 7  # embedding dim 2: F = 3 * 2 + 1
SMALL = {"encoder_hidden": (16,), "h_dim": 6, "interaction_rank": 3}


def _key(seed: int) -> jax.Array:
    """RBG keys: XLA's RngBitGenerator compiles faster than threefry on this CPU."""
    return jax.random.key(seed, impl="rbg")


def _feats(seed: int, n_slots: int, dtype=np.float64) -> jnp.ndarray:
    """Random per-sample features f[B, F] with a positive loss column."""
    rng = np.random.default_rng(seed)
    feats = rng.normal(size=(n_slots, N_FEATS))
    feats[:, -1] = rng.uniform(0.1, 2.0, n_slots)
    return jnp.asarray(feats.astype(dtype))


def _random_params(valuator, seed: int):
    """Random float64 parameters (interaction kernels large enough to matter)."""
    rng = np.random.default_rng(seed)
    abstract = jax.eval_shape(valuator.init, _key(0), _feats(0, 4))

    def draw(path, leaf):
        name = jax.tree_util.keystr(path)
        if "offset" in name:
            return jnp.zeros(leaf.shape, leaf.dtype)
        fan_in = leaf.shape[0] if leaf.ndim == 2 else 4.0
        scale = 2.0 if "order_" in name else 1.0
        draws = scale * rng.normal(size=leaf.shape) / np.sqrt(fan_in)
        return jnp.asarray(draws, leaf.dtype)

    return jax.tree_util.tree_map_with_path(draw, abstract)


def _trained_params(valuator, params, steps: int = 50):
    """`steps` Adam steps on the coalition MSE toward -sum of the present losses."""
    optimizer = standard_promotion(optax.adam(3e-2))

    @jax.jit
    def step(params, opt_state, key):
        k_feats, k_mask = jax.random.split(key)
        feats = jax.random.normal(k_feats, (8, N_FEATS), jnp.float64)
        feats = feats.at[:, -1].set(jnp.abs(feats[:, -1]) + 0.1)
        present = sample_coalition(k_mask, 8).astype(jnp.float64)
        target = loss_target(feats[:, -1], present)
        grads, _ = jax.grad(valuator.mse_loss, has_aux=True)(params, feats, target, present)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    opt_state = optimizer.init(params)
    for key in jax.random.split(_key(7), steps):
        params, opt_state = step(params, opt_state, key)
    return params


def _evaluator(valuator):
    """Jitted (v(S) for every mask row, forward on the full batch)."""

    @jax.jit
    def evaluate(params, feats, masks):
        table = jax.vmap(lambda m: valuator.output(params, feats, m))(masks)
        return table, valuator.forward(params, feats)

    return evaluate


def _full_and_empty(valuator):
    """Jitted (forward, v(N), v(empty), trace) of a full batch."""

    @jax.jit
    def evaluate(params, feats):
        ones = jnp.ones(feats.shape[0], feats.dtype)
        full = valuator.output(params, feats, ones)
        empty = valuator.output(params, feats, jnp.zeros_like(ones))
        trace = valuator.trace(params, feats)
        return valuator.forward(params, feats), full, empty, trace

    return evaluate


def _mobius(table: np.ndarray, n_players: int) -> np.ndarray:
    """Harsanyi dividends I(T) = sum_{S <= T} (-1)^{|T| - |S|} v(S), same coding."""
    dividends = np.array(table, dtype=np.float64)
    codes = np.arange(2**n_players)
    for bit in range(n_players):
        has = (codes >> bit & 1).astype(bool)
        dividends[has] -= dividends[codes[has] ^ (1 << bit)]
    return dividends


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


@pytest.mark.parametrize("max_order", [2, 3])
@pytest.mark.slow
def test_shapley_matches_brute_force(max_order):
    """phi == enumeration of `output` over all 2^B coalitions, B = 3..10, random and
    trained parameters; efficiency and v(empty) = 0."""
    valuator = make_sample_valuator(max_order=max_order, param_dtype=jnp.float64, **SMALL)
    random = _random_params(valuator, 10 + max_order)
    trained = _trained_params(valuator, random)
    moved = max(
        float(jnp.abs(a - b).max()) for a, b in zip(jax.tree.leaves(random), jax.tree.leaves(trained), strict=True)
    )
    assert moved > 1e-2
    evaluate = _evaluator(valuator)
    for n_slots in range(3, 11):
        masks = jnp.asarray(all_masks(n_slots), jnp.float64)
        feats = _feats(n_slots, n_slots)
        for params in (random, trained):
            table, out = evaluate(params, feats, masks)
            table, phi = np.asarray(table), np.asarray(out.shapley)
            tol = 1e-10 * max(1.0, abs(table[-1]))
            exact = brute_force_shapley(table, n_slots)
            np.testing.assert_allclose(phi, exact, rtol=0, atol=tol)
            assert table[0] == 0.0
            np.testing.assert_allclose(float(out.prediction), table[-1], atol=tol)
            np.testing.assert_allclose(phi.sum(), table[-1], atol=tol)


@pytest.mark.parametrize("max_order", [1, 2, 3])
def test_dividends_are_the_defined_game(max_order):
    """Mobius transform of the enumerated game: first-order dividends f_b, pairwise
    dividends s_2 <u_a, u_b> (non-zero: the game is not additive), nothing above
    `max_order`."""
    n_slots = 6
    valuator = make_sample_valuator(max_order=max_order, param_dtype=jnp.float64, **SMALL)
    params = _random_params(valuator, 3)
    feats = _feats(4, n_slots)
    masks = jnp.asarray(all_masks(n_slots), jnp.float64)
    table, _ = _evaluator(valuator)(params, feats, masks)
    dividends = _mobius(np.asarray(table), n_slots)
    sizes = np.asarray(all_masks(n_slots)).sum(axis=1)
    trace = valuator.trace(params, feats)
    first = np.asarray(trace.first_order)
    singles = [1 << b for b in range(n_slots)]
    np.testing.assert_allclose(dividends[singles], first, atol=1e-12)
    scale = max(1.0, np.abs(first).max())
    pairs = dividends[sizes == 2]
    if max_order >= 2:
        u = np.asarray(trace.interactions[0])
        codes = np.flatnonzero(sizes == 2)
        expected = [
            interaction_scale(n_slots, 2) * u[np.flatnonzero(all_masks(n_slots)[c])].prod(axis=0).sum() for c in codes
        ]
        np.testing.assert_allclose(pairs, expected, atol=1e-12 * scale)
        assert np.abs(pairs).max() > 1e-3 * scale
    else:
        assert np.abs(pairs).max() <= 1e-12 * scale
    if max_order >= 3:
        assert np.abs(dividends[sizes == 3]).max() > 1e-6 * scale
    assert np.abs(dividends[sizes > max_order]).max() <= 1e-12 * scale
    assert dividends[0] == 0.0


def test_permutation_equivariance():
    """phi(perm(batch)) == perm(phi(batch)): float64 to 1e-12, float32 to rounding."""
    perm = np.random.default_rng(0).permutation(10)
    valuator = make_sample_valuator(max_order=3, param_dtype=jnp.float64, **SMALL)
    params = _random_params(valuator, 5)
    feats = _feats(6, 10)
    shapley = jax.jit(valuator.shapley)
    phi = np.asarray(shapley(params, feats))
    permuted = np.asarray(shapley(params, feats[perm]))
    np.testing.assert_allclose(permuted, phi[perm], rtol=0, atol=1e-12 * np.abs(phi).max())
    with jax.enable_x64(False):
        default = make_valuator()  # float32, default widths
        feats32 = _feats(6, 32, np.float32)
        perm32 = np.random.default_rng(1).permutation(32)
        params32 = jax.jit(default.init)(_key(0), feats32)
        shapley32 = jax.jit(default.shapley)
        phi32 = np.asarray(shapley32(params32, feats32))
        permuted32 = np.asarray(shapley32(params32, feats32[perm32]))
        assert phi32.dtype == np.float32
        np.testing.assert_allclose(permuted32, phi32[perm32], rtol=0, atol=1e-5 * np.abs(phi32).max())


def test_no_structural_null_players_and_interactions():
    """Every sample gets a non-zero, untied value; own features move a sample's value,
    and (max_order >= 2) so do another sample's features; not with max_order = 1."""
    n_slots = 16
    feats = _feats(11, n_slots)
    moved = feats.at[0].add(0.5)
    for max_order in (1, 2):
        valuator = make_sample_valuator(max_order=max_order, param_dtype=jnp.float64, **SMALL)
        params = jax.jit(valuator.init)(_key(max_order), feats)  # the default init
        forward = jax.jit(valuator.forward)
        out = forward(params, feats)
        phi = np.asarray(out.shapley)
        assert np.all(np.abs(phi) > 1e-8)
        assert float(out.zero_fraction) == 0.0 and float(out.tied_fraction) == 0.0
        assert float(out.null_fraction) == 0.0 and float(out.active_fraction) == 1.0
        after = np.asarray(forward(params, moved).shapley)
        assert abs(after[0] - phi[0]) > 1e-6
        if max_order == 1:
            np.testing.assert_array_equal(after[1:], phi[1:])
        else:
            assert np.all(np.abs(after[1:] - phi[1:]) > 1e-12)
            assert np.abs(after[1:] - phi[1:]).max() > 1e-6


def test_batch_size_free():
    """Parameters from `init` on B = 8 evaluate B = 3, 10, 1000: efficiency
    sum(phi) = v(N) - v(empty); at B = 1000 also the closed form of the K = 2 game."""
    for max_order in (2, 3):
        valuator = make_sample_valuator(max_order=max_order, param_dtype=jnp.float64, **SMALL)
        params = jax.jit(valuator.init)(_key(3), _feats(0, 8))
        for leaf in jax.tree.leaves(params):
            assert 8 not in leaf.shape
        assert set(params) == {"encoder", "game", "offset"}
        evaluate = _full_and_empty(valuator)
        for n_slots in (3, 10, 1000):
            out, full, empty, trace = evaluate(params, _feats(n_slots, n_slots))
            phi = np.asarray(out.shapley)
            assert phi.shape == (n_slots,) and float(empty) == 0.0
            tol = 1e-10 * max(1.0, abs(float(full)))
            np.testing.assert_allclose(phi.sum(), float(full) - float(empty), atol=tol)
            np.testing.assert_allclose(float(out.prediction), float(full), atol=tol)
            assert float(out.zero_fraction) == 0.0
            if max_order == 2 and n_slots == 1000:
                f, u = np.asarray(trace.first_order), np.asarray(trace.interactions[0])
                others = u.sum(axis=0)[None, :] - u
                closed = f + np.sum(u * others, axis=1) / (2 * (n_slots - 1))
                np.testing.assert_allclose(phi, closed, rtol=0, atol=1e-12)


def test_float32_efficiency_at_large_batch():
    """The default float32 valuator stays efficient to rounding at B = 1000."""
    with jax.enable_x64(False):
        valuator = make_valuator("sample", max_order=3)
        feats = _feats(2, 1000, np.float32)
        params = jax.jit(valuator.init)(_key(0), feats[:8])
        out = jax.jit(valuator.forward)(params, feats)
        phi = np.asarray(out.shapley, np.float64)
        assert np.isfinite(phi).all()
        scale = np.abs(phi).sum()
        assert abs(phi.sum() - float(out.prediction)) <= 1e-5 * scale


def test_absent_samples_and_restricted_game():
    """Absent samples get phi = 0; present ones the Shapley values of the game on the
    present samples (with the scale of the B slots); statistics skip absent samples."""
    n_slots = 9
    valuator = make_sample_valuator(max_order=3, param_dtype=jnp.float64, **SMALL)
    params = _random_params(valuator, 8)
    feats = _feats(9, n_slots)
    present = np.array([1, 0, 1, 1, 0, 1, 1, 0, 1], bool)
    masks = all_masks(n_slots)
    inside = ~np.any(masks & ~present[None, :], axis=1)

    @jax.jit
    def evaluate(params, feats, masks, present):
        table = jax.vmap(lambda m: valuator.output(params, feats, m))(masks)
        return (
            table,
            valuator.forward(params, feats, present),
            valuator.output(params, feats, present),
        )

    table, out, value = evaluate(
        params,
        feats,
        jnp.asarray(masks[inside], jnp.float64),
        jnp.asarray(present, jnp.float64),
    )
    phi = np.asarray(out.shapley)
    assert np.all(phi[~present] == 0.0)
    sub = brute_force_shapley(np.asarray(table), int(present.sum()))
    np.testing.assert_allclose(phi[present], sub, atol=1e-12)
    np.testing.assert_allclose(phi.sum(), float(out.prediction), atol=1e-12)
    np.testing.assert_allclose(float(out.prediction), float(value), atol=1e-15)
    assert float(out.zero_fraction) == 0.0 and float(out.tied_fraction) == 0.0
    assert float(out.active_fraction) == 1.0


def _statistics_oracle(values: np.ndarray, present: np.ndarray) -> tuple[float, float]:
    """Loop oracle of `value_statistics`."""
    kept = [i for i in range(len(values)) if present[i]]
    if not kept:
        return 0.0, 0.0
    zeros = sum(values[i] == 0 for i in kept)
    tied = sum(any(values[i] == values[j] for j in kept if j != i) for i in kept)
    return zeros / len(kept), tied / len(kept)


def test_value_statistics_oracle():
    """Zeros and ties among present samples only, against loops; -0.0 ties with 0.0,
    NaN ties with nothing, an absent sample never makes a present one tied."""
    rng = np.random.default_rng(0)
    stats = jax.jit(value_statistics)
    cases = []
    for _ in range(40):
        n = 9
        values = rng.integers(-3, 4, n).astype(np.float64) / 2
        present = rng.random(n) < rng.uniform(0.0, 1.0)
        cases.append((values, present))
    cases += [
        (np.array([0.0, -0.0, 1.0, 2.0, 2.0, 3.0, 4.0, 5.0, 6.0]), np.ones(9, bool)),
        (
            np.array([1.0, 1.0, 2.0, 0.0, 3.0, 4.0, 5.0, 6.0, 7.0]),
            np.array([1, 0, 1, 0, 1, 1, 1, 1, 1], bool),
        ),
        (
            np.array([np.nan, np.nan, 1.0, 1.0, 2.0, 3.0, 0.0, 0.0, 9.0]),
            np.ones(9, bool),
        ),
        (np.zeros(9), np.zeros(9, bool)),
        (np.zeros(9), np.ones(9, bool)),
        (np.arange(9.0), np.ones(9, bool)),
    ]
    for values, present in cases:
        zero, tied = stats(jnp.asarray(values), jnp.asarray(present, jnp.float64))
        expected = _statistics_oracle(values, present)
        assert (float(zero), float(tied)) == pytest.approx(expected), (values, present)
    all_present = value_statistics(jnp.asarray([0.0, 1.0, 1.0, 2.0]))
    assert tuple(float(x) for x in all_present) == pytest.approx((0.25, 0.5))
    single = value_statistics(jnp.asarray([0.0]), jnp.asarray([1.0]))
    assert tuple(float(x) for x in single) == (1.0, 0.0)


def test_dispatcher_and_training_plumbing():
    """`make_valuator` kinds, option errors, parameter labels, one optimizer step over
    {"encoder", "game", "offset"}, probabilities."""
    assert VALUATOR_KINDS == ("sample", "slot")
    assert isinstance(make_valuator().module, SampleGame)
    assert isinstance(make_valuator("sample", **SMALL).module, SampleGame)
    assert not isinstance(make_valuator(kind="slot", width=4).module, SampleGame)
    assert not isinstance(make_slot_valuator(width=4).module, SampleGame)
    with pytest.raises(ValueError, match="sample.*slot"):
        make_valuator("slots")
    with pytest.raises(TypeError, match="width"):
        make_valuator(width=4)
    with pytest.raises(ValueError):
        make_sample_valuator(max_order=5)
    with pytest.raises(ValueError):
        make_sample_valuator(interaction_rank=0)
    with pytest.raises(ValueError):
        make_sample_valuator(value_map="softmax")

    valuator = make_sample_valuator(param_dtype=jnp.float64, **SMALL)
    feats = _feats(12, 8)
    params = jax.jit(valuator.init)(_key(0), feats)
    assert params["offset"].shape == ()
    assert params["game"]["order_2"]["kernel"].shape == (6, 3)
    assert params["game"]["first_order"]["kernel"].shape == (6, 1)
    labels = parameter_labels(params, freeze_encoder=True)
    assert set(jax.tree.leaves(labels["encoder"])) == {"freeze"}
    assert set(jax.tree.leaves(labels["game"])) == {"train"}
    assert labels["offset"] == "train"
    advantage = jnp.linspace(-1.0, 1.0, 8)

    @jax.jit
    def grads(params):
        def loss_fn(params):
            mse, out = valuator.mse_loss(params, feats, -3.0)
            probs = valuator.probabilities(params, out.shapley)
            return mse - jnp.mean(advantage * jnp.log(probs)), probs

        return jax.grad(loss_fn, has_aux=True)(params)

    g, probs = grads(params)
    probs = np.asarray(probs)
    assert probs.min() >= 1e-3 and probs.max() <= 1 - 1e-3
    for part in ("encoder", "game", "offset"):
        assert any(float(jnp.abs(x).max()) > 0 for x in jax.tree.leaves(g[part])), part
