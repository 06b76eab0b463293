"""The public valuator API, end to end.

Exactness per variant (float64), padding, jit == no-jit, compile-once, one optimizer
over the whole pytree, probability maps, targets, features, export. Compilation
dominates on the 2-core CPU, so valuators are built once per module and every device
call is jitted.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dvr_jax.backbones.mf import make_mf
from dvr_jax.losses import bpr_per_sample
from dvr_jax.state import standard_promotion
from dvr_jax.valuator import (
    EXPLANATION_DTYPE,
    explanation_rows,
    loss_target,
    make_slot_valuator,
    metric_target,
    parameter_labels,
    prediction_mse,
    sample_coalition,
    shapley_loss_cosine,
    shapley_to_probabilities,
    valuator_features,
)
from dvr_jax.valuator.children import children_count, children_logits_init
from dvr_jax.valuator.encoder import CodeEncoder, PaperEncoder
from tests.valuator.valuator_oracle import all_masks, brute_force_shapley

N_SLOTS, N_FEATS = 8, 7  # embedding dim 2: F = 3 * 2 + 1


def _key(seed: int) -> jax.Array:
    """RBG keys: XLA's RngBitGenerator compiles ~3x faster than threefry on this CPU."""
    return jax.random.key(seed, impl="rbg")


def _random_params(valuator, feats, seed: int, act_ratio: float):
    """Random float64 parameters of the valuator's shapes, without running `init`.

    `init` compiles a random program per shape; the exactness tests need *some* params.
    """
    rng = np.random.default_rng(seed)
    abstract = jax.eval_shape(valuator.init, _key(0), feats)

    def draw(path, leaf):
        name = jax.tree_util.keystr(path)
        if "children_logits" in name:
            chosen = rng.random(leaf.shape) < act_ratio
            chosen[
                np.arange(leaf.shape[0]),
                rng.integers(leaf.shape[1], size=leaf.shape[0]),
            ] = True
            return jnp.asarray(np.where(chosen, 1.0, -1.0))
        if "offset" in name or "bias" in name and "harsanyi" in name:
            return jnp.zeros(leaf.shape)
        fan_in = leaf.shape[0] if leaf.ndim == 2 and "encoder" in name else 1.0
        mean = 0.3 if "harsanyi" in name and "readout" not in name else 0.0
        return jnp.asarray(rng.normal(mean, 1.0, leaf.shape) / np.sqrt(fan_in))

    return jax.tree_util.tree_map_with_path(draw, abstract)


def _feats(seed: int, dtype=np.float32) -> jnp.ndarray:
    rng = np.random.default_rng(seed)
    feats = rng.normal(size=(N_SLOTS, N_FEATS))
    feats[:, -1] = rng.uniform(0.1, 2.0, N_SLOTS)  # BPR losses are positive
    return jnp.asarray(feats.astype(dtype))


@pytest.fixture(scope="module")
def small32():
    valuator = make_slot_valuator(width=8, act_ratio=0.3, encoder_hidden=(16,), h_dim=3, children_init="cover")
    params = jax.jit(valuator.init)(_key(0), _feats(0))
    return valuator, params


EXACT_CONFIGS = {
    "G": dict(variant="G", h_dim=3, act_ratio=0.25),
    "G-shared-bias": dict(variant="G", h_dim=2, act_ratio=0.25, shared_slot_weights=True, output_bias=True),
    "F": dict(variant="F", h_dim=2, act_ratio=0.15, children_init="cover"),
    "P": dict(variant="P", encoder="paper", act_ratio=0.3),
}


@pytest.mark.parametrize("name", sorted(EXACT_CONFIGS))
def test_valuator_shapley_matches_brute_force(name):
    """`shapley(params, feats)` == enumeration of `output(params, feats, mu_S)`."""
    with jax.enable_x64(True):
        valuator = make_slot_valuator(width=4, encoder_hidden=(8,), param_dtype=jnp.float64, **EXACT_CONFIGS[name])
        feats = _feats(1, np.float64)
        params = _random_params(valuator, feats, 3, EXACT_CONFIGS[name]["act_ratio"])
        if "bias" in params["harsanyi"]:
            params["harsanyi"]["bias"] = jnp.asarray(0.7)
        masks = jnp.asarray(all_masks(N_SLOTS), jnp.float64)

        @jax.jit
        def evaluate(params, feats, masks):
            table = jax.vmap(lambda m: valuator.output(params, feats, m))(masks)
            return table, valuator.forward(params, feats)

        table, out = evaluate(params, feats, masks)
        table, phi = np.asarray(table), np.asarray(out.shapley)
        bias = 0.7 if "bias" in name else 0.0
        tol = 1e-10 * max(1.0, abs(table[-1]))
        np.testing.assert_allclose(phi, brute_force_shapley(table, N_SLOTS), rtol=0, atol=tol)
        np.testing.assert_allclose(phi.sum(), float(out.prediction) - bias, atol=tol)
        np.testing.assert_allclose(table[0], bias, atol=1e-15)
        assert float(out.active_fraction) > 0 and np.abs(phi).max() > 1e-6
        null = ~np.any(np.asarray(params["harsanyi"]["block_0"]["children_logits"]) > 0, axis=0)
        if name.startswith("G"):
            np.testing.assert_allclose(float(out.null_fraction), null.mean())
            assert np.all(phi[null] == 0.0)
            assert float(out.zero_fraction) >= float(out.null_fraction)
        assert float(out.zero_fraction) == pytest.approx(np.mean(phi == 0.0))
        ties = [np.sum(phi == value) > 1 for value in phi]
        assert float(out.tied_fraction) == pytest.approx(np.mean(ties))


def test_absent_slots_get_zero_and_subgame_values():
    """Padding semantics: absent slots get phi = 0, present ones the Shapley value of
    the sub-game on the present slots (both read from one forward pass)."""
    with jax.enable_x64(True):
        valuator = make_slot_valuator(
            width=4,
            encoder_hidden=(8,),
            h_dim=3,
            act_ratio=0.25,
            param_dtype=jnp.float64,
        )
        feats = _feats(2, np.float64)
        params = _random_params(valuator, feats, 4, 0.25)
        present = np.array([1, 1, 0, 1, 1, 0, 1, 1], bool)
        masks = all_masks(N_SLOTS)
        inside = ~np.any(masks & ~present[None, :], axis=1)

        @jax.jit
        def evaluate(params, feats, masks, present):
            table = jax.vmap(lambda m: valuator.output(params, feats, m))(masks)
            return table, valuator.forward(params, feats, present)

        table, out = evaluate(
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
        kept = phi[present]
        assert float(out.zero_fraction) == pytest.approx(np.mean(kept == 0.0))
        ties = [np.sum(kept == value) > 1 for value in kept]
        assert float(out.tied_fraction) == pytest.approx(np.mean(ties))


def test_compat_variant_is_not_the_sample_shapley_value():
    with jax.enable_x64(True):
        valuator = make_slot_valuator(
            variant="C_compat",
            width=6,
            encoder_hidden=(8,),
            h_dim=3,
            act_ratio=0.2,
            param_dtype=jnp.float64,
        )
        feats = _feats(5, np.float64)
        params = _random_params(valuator, feats, 5, 0.2)
        masks = jnp.asarray(all_masks(N_SLOTS), jnp.float64)
        table = jax.jit(jax.vmap(lambda m: valuator.output(params, feats, m)))(masks)
        compat = np.asarray(jax.jit(valuator.shapley)(params, feats))
        exact = brute_force_shapley(np.asarray(table), N_SLOTS)
        assert np.abs(compat - exact).max() > 1e-3 * np.abs(exact).max()


def test_param_pytree(small32):
    valuator, params = small32
    assert set(params) == {"encoder", "harsanyi", "offset"}
    harsanyi = params["harsanyi"]
    assert harsanyi["block_0"]["weights"].shape == (4, 8, N_SLOTS)  # [H' = h + 1, M, B]
    assert harsanyi["block_0"]["children_logits"].shape == (8, N_SLOTS)
    assert harsanyi["block_1"]["weights"].shape == (8, 8)
    assert params["offset"].shape == ()
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(params))


def test_children_init_random_and_cover():
    """random: exactly k children per unit, ~(1 - k/B)^M null slots; cover: none."""
    n_units, n_slots, ratio = 100, 1000, 0.01
    k = children_count(ratio, n_slots)
    assert k == 10 and children_count(0.01, 100) == 1 and children_count(1e-5, 50) == 1
    key = _key(0)
    random = np.asarray(children_logits_init("random", ratio)(key, (n_units, n_slots))) > 0
    cover = np.asarray(children_logits_init("cover", ratio)(key, (n_units, n_slots))) > 0
    np.testing.assert_array_equal(random.sum(axis=1), k)
    null_random = np.mean(~random.any(axis=0))
    assert abs(null_random - (1 - k / n_slots) ** n_units) < 0.05
    assert cover.any(axis=0).all()
    assert (cover.sum(axis=1) >= k).all() and cover.sum() == n_units * k  # B = M * k: a partition
    with pytest.raises(ValueError):
        children_logits_init("everything")


def test_jit_equals_no_jit(small32):
    """Op-by-op execution equals the jitted program (forward, probabilities, MSE)."""
    valuator, params = small32
    feats = _feats(6)

    def step(params, feats):
        loss, out = valuator.mse_loss(params, feats, 1.5)
        return loss, out, valuator.probabilities(params, out.shapley)

    eager = step(params, feats)
    jitted = jax.jit(step)(params, feats)
    for a, b in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_compiles_once(small32):
    valuator, params = small32

    @jax.jit
    def step(params, feats, target):
        (loss, out), grads = jax.value_and_grad(valuator.mse_loss, has_aux=True)(params, feats, target)
        return loss, out.shapley, valuator.probabilities(params, out.shapley), grads

    shapley = jax.jit(valuator.shapley)
    for seed in range(3):
        feats = _feats(10 + seed)
        step(params, feats, jnp.asarray(-float(seed)))
        shapley(params, feats)
    assert step._cache_size() == 1
    assert shapley._cache_size() == 1


def test_one_optimizer_trains_encoder_harsanyi_and_offset(small32):
    """One optax state over the whole pytree; MSE reaches the encoder (which the released
    code never trains), the probability term reaches the offset."""
    valuator, params = small32
    feats = _feats(7)
    advantage = jnp.linspace(-1.0, 1.0, N_SLOTS)

    def loss_fn(params):
        mse, out = valuator.mse_loss(params, feats, -3.0)
        probs = valuator.probabilities(params, out.shapley)
        return mse - jnp.mean(advantage * jnp.log(probs)), mse

    @jax.jit
    def update(params, opt_state):
        grads, _ = jax.grad(loss_fn, has_aux=True)(params)
        mse_grads = jax.grad(lambda p: loss_fn(p)[1])(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, mse_grads

    optimizer = standard_promotion(optax.adam(1e-2))
    new, _, mse_grads = update(params, optimizer.init(params))
    for leaf in jax.tree.leaves(new):
        assert np.isfinite(np.asarray(leaf)).all()
    for part in ("encoder", "harsanyi", "offset"):
        changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), params[part], new[part])
        assert any(jax.tree.leaves(changed)), part
    assert any(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(mse_grads["encoder"]))
    assert float(mse_grads["offset"]) == 0.0


def test_freeze_encoder_compat_and_coalition_target(small32):
    """`freeze_encoder` (compat: the released code never trains the encoder) keeps the
    encoder fixed; coalition MSE step."""
    valuator, params = small32
    feats = _feats(9)
    labels = parameter_labels(params, freeze_encoder=True)
    assert set(jax.tree.leaves(labels["encoder"])) == {"freeze"}
    assert set(jax.tree.leaves(labels["harsanyi"])) == {"train"}
    assert set(jax.tree.leaves(parameter_labels(params))) == {"train"}
    optimizer = optax.multi_transform(
        {"train": standard_promotion(optax.adam(1e-2)), "freeze": optax.set_to_zero()}, labels
    )
    present = sample_coalition(_key(1), N_SLOTS)
    assert set(np.unique(np.asarray(present))) <= {0.0, 1.0}
    target = loss_target(feats[:, -1], present)

    @jax.jit
    def update(params, opt_state):
        grads, _ = jax.grad(valuator.mse_loss, has_aux=True)(params, feats, target, present)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates)

    new = update(params, optimizer.init(params))
    for a, b in zip(jax.tree.leaves(params["encoder"]), jax.tree.leaves(new["encoder"]), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), params["harsanyi"], new["harsanyi"])
    assert any(jax.tree.leaves(changed))


def test_probability_maps():
    phi = jnp.asarray([-0.3, 0.1, 0.0, 0.7, 0.2])
    probs = shapley_to_probabilities(phi, jnp.asarray(0.0))
    assert float(probs.min()) >= 1e-3 and float(probs.max()) <= 1 - 1e-3
    order = np.argsort(np.asarray(phi))
    assert np.all(np.diff(np.asarray(probs)[order]) > 0)
    scaled = shapley_to_probabilities(100.0 * phi + 5.0, jnp.asarray(0.0))
    np.testing.assert_allclose(np.asarray(scaled), np.asarray(probs), rtol=1e-5)
    shifted = shapley_to_probabilities(phi, jnp.asarray(1.0))
    assert np.all(np.asarray(shifted) > np.asarray(probs))
    z = (np.asarray(phi) - np.mean(phi)) / (np.std(np.asarray(phi)) + 1e-8)
    expected = 1e-3 + (1 - 2e-3) / (1 + np.exp(-(z + 1.0)))
    np.testing.assert_allclose(np.asarray(shifted), expected, rtol=1e-5)
    code = shapley_to_probabilities(phi, jnp.asarray(0.0), value_map="code")
    np.testing.assert_allclose(np.asarray(code), np.clip(100 * (np.asarray(phi) + 0.3), 0, 1))
    assert float(code[0]) == 0.0  # the arg-min sample always gets 0, as in the released code
    constant = shapley_to_probabilities(jnp.zeros(4), jnp.asarray(0.0))
    np.testing.assert_allclose(np.asarray(constant), 0.5, rtol=1e-6)


def test_targets_and_mse():
    losses = jnp.asarray([0.5, 1.0, 2.0, 0.25])
    assert float(loss_target(losses)) == -3.75
    assert float(loss_target(losses, scale="mean")) == pytest.approx(-3.75 / 4)
    present = jnp.asarray([True, False, True, False])
    assert float(loss_target(losses, present)) == -2.5
    assert float(metric_target(jnp.asarray(0.123))) == pytest.approx(12.3)
    grad_target = jax.grad(lambda t: prediction_mse(jnp.asarray(1.0), t))(jnp.asarray(3.0))
    assert float(grad_target) == 0.0
    assert float(jax.grad(lambda y: prediction_mse(y, jnp.asarray(3.0)))(jnp.asarray(1.0))) == -4.0
    with pytest.raises(ValueError):
        loss_target(losses, scale="median")


def test_features_from_backbone_are_stop_gradient():
    backbone = make_mf(5, 7, dim=2)
    bparams = backbone.init(jax.random.key(0))
    users, pos, neg = (
        jnp.asarray([0, 1, 4]),
        jnp.asarray([1, 2, 3]),
        jnp.asarray([6, 0, 5]),
    )

    def features(bparams):
        losses = bpr_per_sample(
            backbone.score_pairs(bparams, users, pos),
            backbone.score_pairs(bparams, users, neg),
        )
        return valuator_features(backbone.pair_features(bparams, users, pos, neg), losses)

    feats = features(bparams)
    assert feats.shape == (3, 7) and feats.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(feats[:, :2]), np.asarray(bparams["user"][users]))
    grads = jax.grad(lambda p: jnp.sum(features(p)))(bparams)
    assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(grads))


def test_explanation_export_and_cosine():
    phi = np.array([0.5, -0.25, 0.0])
    losses = np.array([0.1, 0.9, 0.4])
    rows = explanation_rows(
        jnp.asarray(phi),
        np.array([3, 1, 2]),
        np.array([10, 11, 12]),
        np.array([20, 21, 22]),
        losses,
    )
    assert rows.dtype == EXPLANATION_DTYPE and len(rows) == 3
    np.testing.assert_array_equal(rows["user"], [3, 1, 2])
    np.testing.assert_array_equal(rows["neg_item"], [20, 21, 22])
    np.testing.assert_allclose(rows["shapley"], phi)
    assert np.isnan(explanation_rows(phi, [0, 1, 2], [0, 1, 2], [0, 1, 2])["loss"]).all()
    expected = -(phi @ losses) / (np.linalg.norm(phi) * np.linalg.norm(losses))
    got = float(shapley_loss_cosine(jnp.asarray(phi, jnp.float32), jnp.asarray(losses)))
    assert got == pytest.approx(expected, rel=1e-5)
    assert float(shapley_loss_cosine(-jnp.asarray(losses), jnp.asarray(losses))) == (pytest.approx(1.0))
    assert float(shapley_loss_cosine(jnp.zeros(3), jnp.asarray(losses))) == 0.0


def test_encoders_are_row_wise():
    """E7 (docs/harsanyi.md §3): sample 0 changes only row 0; the paper encoder ignores the loss column."""
    feats = _feats(8)
    batch = jnp.concatenate([feats, feats.at[0].add(1.0), feats.at[:, -1].set(9.0)])
    for encoder in (
        CodeEncoder(3, (16,)),
        CodeEncoder(3, (16,), use_loss_feature=False),
        PaperEncoder(),
    ):
        params = jax.jit(encoder.init)(_key(0), feats)
        out = np.asarray(jax.jit(encoder.apply)(params, batch))
        base, moved, new_loss = np.split(out, 3)
        assert base.shape == (N_SLOTS, 1 if isinstance(encoder, PaperEncoder) else 3)
        assert np.abs(base[0] - moved[0]).max() > 0
        np.testing.assert_array_equal(base[1:], moved[1:])
        reads_loss = isinstance(encoder, CodeEncoder) and encoder.use_loss_feature
        assert (np.abs(new_loss - base).max() > 0) == reads_loss
    paper = PaperEncoder()
    kernel = jax.eval_shape(paper.init, _key(0), feats)["params"]["dense_0"]["kernel"]
    assert kernel.shape == (6, 2)  # W1 in R^{d x 3d}, stored transposed


def test_invalid_options():
    with pytest.raises(ValueError):
        make_slot_valuator(variant="Z")
    with pytest.raises(ValueError):
        make_slot_valuator(encoder="paper", h_dim=4)
    with pytest.raises(ValueError):
        make_slot_valuator(variant="P", h_dim=1, const_column=True)
    with pytest.raises(ValueError):
        make_slot_valuator(value_map="softmax")
    with pytest.raises(ValueError):
        make_slot_valuator(num_layers=3, width=(4, 4))
