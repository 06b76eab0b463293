"""docs/harsanyi.md §7: H7 (straight-through estimator) and H8 (finite gradients at zeros).

Also the custom VJPs of `and_product` / `slot_contributions` against plain autodiff.
All in float64.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from dvr_jax.valuator.gates import and_product, and_units, slot_contributions, ste_mask
from dvr_jax.valuator.harsanyi import HarsanyiNet

BETA, GAMMA = 10.0, 2.0


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def _two_layer_params(rng, n_slots=5, width=2, units=(3, 3)):
    """A live grouped 2-layer net: positive inputs and weights, designed children."""
    logits0 = np.where(rng.random((units[0], n_slots)) < 0.5, 1.3, -0.7)
    logits0[:, 0] = 0.4  # every unit reads slot 0
    logits1 = np.array([[0.9, 1.1, -0.5], [-1.2, 0.3, 0.8], [0.6, -0.9, 1.4]])
    params = {
        "block_0": {
            "children_logits": logits0,
            "weights": rng.uniform(0.2, 1.0, (width, units[0], n_slots)),
        },
        "block_1": {
            "children_logits": logits1,
            "weights": rng.uniform(0.2, 1.0, (units[1], units[0])),
        },
        "readout_0": rng.normal(size=units[0]),
        "readout_1": rng.normal(size=units[1]),
    }
    slots = rng.uniform(0.1, 0.5, (n_slots, width))  # small: triggers are not saturated
    return jax.tree.map(jnp.asarray, params), jnp.asarray(slots)


def _output_given_masks(params, slots, tau0, tau1):
    """y as a function of *continuous* masks (the relaxation the STE differentiates)."""
    trig0 = jnp.tanh(GAMMA * jnp.sum(jnp.abs(slots), axis=1))
    z1 = and_units(tau0, slot_contributions(params["block_0"]["weights"], slots), trig0)
    trig1 = jnp.tanh(GAMMA * jnp.abs(z1))
    z2 = and_units(tau1, params["block_1"]["weights"] * z1[None, :], trig1)
    return jnp.dot(params["readout_0"], z1) + jnp.dot(params["readout_1"], z2)


def test_h7_forward_mask_is_hard():
    logits = jnp.asarray([[-2.0, -1e-12, 0.0, 1e-12, 3.0]])
    mask = ste_mask(logits, BETA)
    np.testing.assert_array_equal(np.asarray(mask), [[0, 0, 0, 1, 1]])
    params, slots = _two_layer_params(np.random.default_rng(0))
    net = HarsanyiNet((3, 3), gamma_trig=GAMMA, beta=BETA, param_dtype=jnp.float64)
    for tau in jax.jit(net.apply)({"params": params}, slots).masks:
        assert set(np.unique(np.asarray(tau))) <= {0.0, 1.0}


def test_h7_ste_gradient_is_beta_sigmoid_prime_times_mask_gradient():
    """dy/dtau' == beta s(tau')(1 - s(tau')) dy/dtau, dy/dtau by finite differences."""
    params, slots = _two_layer_params(np.random.default_rng(1))
    net = HarsanyiNet((3, 3), gamma_trig=GAMMA, beta=BETA, param_dtype=jnp.float64)
    output = jax.jit(lambda p: net.apply({"params": p}, slots).output)
    grads = jax.jit(jax.grad(output))(params)
    assert float(output(params)) != 0.0
    relaxed = jax.jit(_output_given_masks)
    taus = [(params[f"block_{i}"]["children_logits"] > 0).astype(jnp.float64) for i in (0, 1)]
    step = 1e-6
    for layer in (0, 1):
        logits = np.asarray(params[f"block_{layer}"]["children_logits"])
        fd = np.zeros_like(logits)
        for index in np.ndindex(*logits.shape):
            shifted = []
            for sign in (1.0, -1.0):
                masks = list(taus)
                masks[layer] = masks[layer].at[index].add(sign * step)
                shifted.append(float(relaxed(params, slots, *masks)))
            fd[index] = (shifted[0] - shifted[1]) / (2 * step)
        sig = 1.0 / (1.0 + np.exp(-logits))
        expected = BETA * sig * (1.0 - sig) * fd
        got = np.asarray(grads[f"block_{layer}"]["children_logits"])
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-9)
        assert np.abs(got).max() > 1e-3  # both paths (A * tau and the trigger) carry gradient


def test_h8_finite_gradients_at_exact_zeros():
    """A dead child (z_c = 0) and an absent slot give exact zero factors; gradients stay
    finite and equal plain autodiff through jnp.prod."""
    rng = np.random.default_rng(2)
    params, slots = _two_layer_params(rng)
    params["block_0"]["weights"] = params["block_0"]["weights"].at[:, 1, :].multiply(-1.0)
    present = jnp.asarray([1.0, 1.0, 0.0, 1.0, 1.0])  # slot 2 absent: trigger exactly 0
    net = HarsanyiNet((3, 3), gamma_trig=GAMMA, beta=BETA, param_dtype=jnp.float64)

    def output(p, x):
        return net.apply({"params": p}, x * present[:, None]).output

    trace = jax.jit(net.apply)({"params": params}, slots * present[:, None])
    assert float(trace.activations[0][1]) == 0.0  # dead layer-1 unit 1 ...
    assert float(trace.masks[1][0, 1]) == 1.0  # ... is a child of layer-2 unit 0
    grads = jax.jit(jax.grad(lambda p, x: (output(p, x) - 3.0) ** 2, argnums=(0, 1)))(params, slots)
    for leaf in jax.tree.leaves(grads):
        assert np.isfinite(np.asarray(leaf)).all()
    # A dead child still tells the STE whether dropping it would help (ReLU(g) * delta).
    assert float(grads[0]["block_1"]["children_logits"][0, 1]) != 0.0

    def plain_prod_units(tau, contributions, triggers):
        factors = tau * triggers[None, :] + (1.0 - tau)
        return jax.nn.relu(jnp.sum(tau * contributions, axis=1)) * jnp.prod(factors, axis=1)

    def plain_contrib(weights, inputs):
        return jnp.einsum("kmb,bk->mb", weights, inputs)

    def reference(p, x):
        x = x * present[:, None]
        tau0 = ste_mask(p["block_0"]["children_logits"], BETA)
        tau1 = ste_mask(p["block_1"]["children_logits"], BETA)
        z1 = plain_prod_units(
            tau0,
            plain_contrib(p["block_0"]["weights"], x),
            jnp.tanh(GAMMA * jnp.sum(jnp.abs(x), axis=1)),
        )
        z2 = plain_prod_units(tau1, p["block_1"]["weights"] * z1[None, :], jnp.tanh(GAMMA * jnp.abs(z1)))
        y = jnp.dot(p["readout_0"], z1) + jnp.dot(p["readout_1"], z2)
        return (y - 3.0) ** 2

    expected = jax.jit(jax.grad(reference, argnums=(0, 1)))(params, slots)
    chex.assert_trees_all_close(grads, expected, rtol=1e-12, atol=1e-12)


def test_and_product_gradient_matches_autodiff_with_zeros():
    factors = jnp.asarray(
        [
            [0.5, 0.9, 0.3, 0.7],  # no zero
            [
                0.5,
                0.0,
                0.3,
                0.7,
            ],  # one zero: gradient at the zero is the product of the others
            [0.0, 0.9, 0.0, 0.7],  # two zeros: gradient 0 everywhere
            [1.0, 1e-300, 0.2, 1.0],  # tiny factor
        ]
    )
    np.testing.assert_array_equal(np.asarray(jax.jit(and_product)(factors)), np.asarray(jnp.prod(factors, axis=1)))
    weights = jnp.asarray([1.0, -2.0, 0.5, 3.0])
    got = jax.jit(jax.grad(lambda f: jnp.dot(weights, and_product(f))))(factors)
    want = jax.jit(jax.grad(lambda f: jnp.dot(weights, jnp.prod(f, axis=1))))(factors)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-14, atol=0)


def test_slot_contributions_matches_einsum():
    rng = np.random.default_rng(4)
    weights = jnp.asarray(rng.normal(size=(3, 4, 6)))
    inputs = jnp.asarray(rng.normal(size=(6, 3)))
    np.testing.assert_allclose(
        np.asarray(jax.jit(slot_contributions)(weights, inputs)),
        np.asarray(jnp.einsum("kmb,bk->mb", weights, inputs)),
        rtol=1e-14,
    )
    cot = jnp.asarray(rng.normal(size=(4, 6)))
    got = jax.jit(jax.grad(lambda w, x: jnp.sum(cot * slot_contributions(w, x)), argnums=(0, 1)))
    want = jax.jit(jax.grad(lambda w, x: jnp.sum(cot * jnp.einsum("kmb,bk->mb", w, x)), argnums=(0, 1)))
    for a, b in zip(got(weights, inputs), want(weights, inputs), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-13, atol=1e-15)
    check_grads(jax.jit(slot_contributions), (weights, inputs), order=1, modes=["rev"])
