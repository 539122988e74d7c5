"""extremeq.optim: Bop against a NumPy transcription of Helwegen et al. (2019) Algorithm 1,
schedules against their closed forms, the weight-decay mask, latent clipping, multi_transform."""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from extremeq import optim


def bop_reference(w0, grads, tau, gamma):
    """Algorithm 1 of Helwegen et al. (2019), one weight array, loop over steps."""
    w = w0.astype(np.float64).copy()
    m = np.zeros_like(w)
    for g in grads:
        m = (1 - gamma) * m + gamma * g
        flip = (np.abs(m) > tau) & (np.sign(m) == np.sign(w))
        w = np.where(flip, -w, w)
    return w, m


def test_bop_matches_numpy_reference():
    rng = np.random.default_rng(0)
    w0 = np.where(rng.standard_normal((6, 7)) >= 0, 1.0, -1.0).astype(np.float32)
    grads = [rng.standard_normal((6, 7)).astype(np.float32) for _ in range(25)]
    tau, gamma = 0.05, 0.2
    tx = optim.bop(threshold=tau, gamma=gamma)
    params = {"k": jnp.asarray(w0)}
    state = tx.init(params)
    update = jax.jit(tx.update)
    for g in grads:
        u, state = update({"k": jnp.asarray(g)}, state, params)
        params = optax.apply_updates(params, u)
    w_ref, m_ref = bop_reference(w0, grads, tau, gamma)
    np.testing.assert_array_equal(np.asarray(params["k"]), w_ref)
    np.testing.assert_allclose(np.asarray(state.m["k"]), m_ref, rtol=1e-5, atol=1e-6)
    flipped = np.mean(np.asarray(params["k"]) != w0)
    assert 0.05 < flipped < 0.95  # the test exercises both flips and keeps
    assert set(np.unique(np.asarray(params["k"]))) <= {-1.0, 1.0}


def test_bop_flips_only_when_momentum_agrees_with_weight():
    tx = optim.bop(threshold=0.1, gamma=1.0)  # gamma = 1: m = g
    w = {"k": jnp.array([1.0, 1.0, -1.0, -1.0, 1.0])}
    g = {"k": jnp.array([0.5, -0.5, -0.5, 0.5, 0.05])}
    u, _ = tx.update(g, tx.init(w), w)
    # flip iff |g| > 0.1 and sign(g) == sign(w): w=+1,g>0 flips; w=-1,g<0 flips; |g| small keeps.
    np.testing.assert_array_equal(np.asarray(optax.apply_updates(w, u)["k"]), [-1.0, 1.0, 1.0, -1.0, 1.0])


def test_bop_rejects_bad_hyperparameters():
    with pytest.raises(ValueError, match="gamma"):
        optim.bop(gamma=0.0)
    with pytest.raises(ValueError, match="threshold"):
        optim.bop(threshold=-1.0)


def test_schedules_closed_forms():
    spe, epochs, lr = 10, 10, 0.1
    step = optim.learning_rate_schedule(lr, spe, epochs, "step", (3, 6), 0.1)
    for t, want in [(0, 0.1), (29, 0.1), (30, 0.01), (59, 0.01), (60, 0.001), (99, 0.001)]:
        assert math.isclose(float(step(t)), want, rel_tol=1e-5), t
    cos = optim.learning_rate_schedule(lr, spe, epochs, "cosine", warmup_epochs=2)
    w, total = 20, 100
    for t in [0, 5, 19]:
        assert math.isclose(float(cos(t)), lr * (t + 1) / w, rel_tol=1e-5)
    for t in [20, 45, 70, 99]:
        want = lr * 0.5 * (1 + math.cos(math.pi * (t - w) / (total - w)))
        assert math.isclose(float(cos(t)), want, rel_tol=1e-5, abs_tol=1e-8), t
    const = optim.learning_rate_schedule(lr, spe, epochs, "constant", warmup_epochs=1)
    assert math.isclose(float(const(4)), lr * 5 / 10, rel_tol=1e-6)
    assert math.isclose(float(const(50)), lr, rel_tol=1e-6)


def _params():
    return {
        "stem": {"kernel": jnp.ones((4, 3))},
        "stem_bn": {"scale": jnp.ones((3,)), "bias": jnp.zeros((3,))},
        "blocks": {
            0: {
                "dense": {
                    "kernel": jnp.ones((3, 3)),
                    "bias": jnp.zeros((3,)),
                    "ttq_wp": jnp.ones(()),
                    "ttq_wn": jnp.ones(()),
                }
            }
        },
        "head": {"kernel": jnp.ones((3, 2)), "bias": jnp.zeros((2,))},
    }


def test_weight_decay_mask_skips_bn_bias_and_ttq_scales():
    mask = optim.weight_decay_mask(_params())
    assert mask["stem"]["kernel"] and mask["head"]["kernel"] and mask["blocks"][0]["dense"]["kernel"]
    for leaf in (
        mask["stem_bn"]["scale"],
        mask["stem_bn"]["bias"],
        mask["head"]["bias"],
        mask["blocks"][0]["dense"]["bias"],
        mask["blocks"][0]["dense"]["ttq_wp"],
        mask["blocks"][0]["dense"]["ttq_wn"],
    ):
        assert not leaf


def _opt_config(**kw):
    base = dict(
        name="sgd",
        learning_rate=0.1,
        momentum=0.0,
        nesterov=False,
        weight_decay=0.5,
        schedule="constant",
        decay_epochs=[],
        decay_factor=0.1,
        warmup_epochs=0.0,
        bop_threshold=0.0,
        bop_gamma=1.0,
        bop_base="sgd",
    )
    base.update(kw)
    return ml_collections.ConfigDict(base)


def test_sgd_weight_decay_applies_to_kernels_only():
    params = _params()
    tx, labels = optim.create_optimizer(_opt_config(), 10, 1, params)
    grads = jax.tree_util.tree_map(jnp.zeros_like, params)
    u, _ = tx.update(grads, tx.init(params), params)
    # plain SGD on g + wd * w: update = -lr * wd * w on kernels, 0 elsewhere
    np.testing.assert_allclose(u["stem"]["kernel"], -0.1 * 0.5 * np.ones((4, 3)), rtol=1e-6)
    np.testing.assert_allclose(u["blocks"][0]["dense"]["kernel"], -0.05 * np.ones((3, 3)), rtol=1e-6)
    for leaf in (u["stem_bn"]["scale"], u["head"]["bias"], u["blocks"][0]["dense"]["ttq_wp"]):
        np.testing.assert_array_equal(leaf, 0.0)
    assert set(jax.tree_util.tree_leaves(labels)) == {"base"}


def test_nesterov_matches_optax_reference():
    params = {"w": {"kernel": jnp.arange(6.0).reshape(2, 3)}}
    cfg = _opt_config(momentum=0.9, nesterov=True, weight_decay=0.0)
    tx, _ = optim.create_optimizer(cfg, 10, 1, params)
    ref = optax.sgd(0.1, momentum=0.9, nesterov=True)
    s, r = tx.init(params), ref.init(params)
    p1, p2 = params, params
    for i in range(3):
        g = jax.tree_util.tree_map(lambda x: jnp.sin(x + i), p1)
        u, s = tx.update(g, s, p1)
        v, r = ref.update(g, r, p2)
        p1, p2 = optax.apply_updates(p1, u), optax.apply_updates(p2, v)
    np.testing.assert_allclose(p1["w"]["kernel"], p2["w"]["kernel"], rtol=1e-6)


def test_bop_multi_transform_binary_kernels_by_bop_rest_by_base():
    params = _params()
    bop_paths = ["blocks/0/dense/kernel"]
    cfg = _opt_config(name="bop", bop_threshold=0.0, bop_gamma=1.0, bop_base="sgd", weight_decay=0.0)
    tx, labels = optim.create_optimizer(cfg, 10, 1, params, bop_paths=bop_paths)
    assert labels["blocks"][0]["dense"]["kernel"] == "bop" and labels["stem"]["kernel"] == "base"
    params = optim.binarize_for_bop(params, labels)
    grads = jax.tree_util.tree_map(jnp.ones_like, params)
    u, _ = tx.update(grads, tx.init(params), params)
    new = optax.apply_updates(params, u)
    # Bop with tau=0, gamma=1: m = g = 1 > 0 = sign(w = +1) -> every +1 flips to -1
    np.testing.assert_array_equal(new["blocks"][0]["dense"]["kernel"], -np.ones((3, 3)))
    # SGD without momentum on the rest: w - lr * g
    np.testing.assert_allclose(new["stem"]["kernel"], np.ones((4, 3)) - 0.1, rtol=1e-6)
    with pytest.raises(ValueError, match="no binary kernels"):
        optim.create_optimizer(cfg, 10, 1, params, bop_paths=[])


def test_clip_latent_only_where_masked():
    params = {"a": {"kernel": jnp.array([-3.0, 0.5, 2.0])}, "b": {"kernel": jnp.array([-3.0, 2.0])}}
    mask = optim.path_mask(params, ["a/kernel"])
    out = optim.clip_latent(params, mask)
    np.testing.assert_array_equal(out["a"]["kernel"], [-1.0, 0.5, 1.0])
    np.testing.assert_array_equal(out["b"]["kernel"], [-3.0, 2.0])


def test_glorot_lr_scale_closed_form():
    """1/H with H = sqrt(1.5 / (fan_in + fan_out)), fans times the receptive field for convs."""
    assert math.isclose(optim.glorot_lr_scale((784, 1024)), 1.0 / math.sqrt(1.5 / (784 + 1024)))
    assert math.isclose(optim.glorot_lr_scale((3, 3, 16, 32)), 1.0 / math.sqrt(1.5 / (9 * 16 + 9 * 32)))
    with pytest.raises(ValueError, match="kernel"):
        optim.glorot_lr_scale((10,))


def test_binary_lr_scale_glorot_scales_only_binary_kernels():
    """Adam's update times 1/H on the listed binary kernels, unchanged elsewhere."""
    rng = np.random.default_rng(1)
    params = {
        "a": {"kernel": jnp.asarray(rng.normal(size=(20, 30)), jnp.float32), "bias": jnp.zeros((30,), jnp.float32)},
        "b": {"kernel": jnp.asarray(rng.normal(size=(30, 5)), jnp.float32)},
    }
    grads = jax.tree_util.tree_map(lambda x: jnp.asarray(rng.normal(size=x.shape), jnp.float32), params)
    base = ml_collections.ConfigDict(
        dict(
            name="adam",
            learning_rate=1e-3,
            momentum=0.9,
            nesterov=False,
            weight_decay=0.0,
            schedule="constant",
            decay_epochs=[],
            decay_factor=0.1,
            warmup_epochs=0.0,
            binary_lr_scale="none",
        )
    )
    scaled = ml_collections.ConfigDict(dict(base.to_dict(), binary_lr_scale="glorot"))
    u_ref = optim.create_optimizer(base, 10, 1, params)[0]
    u_ref = u_ref.update(grads, u_ref.init(params), params)[0]
    tx = optim.create_optimizer(scaled, 10, 1, params, binary_paths=["a/kernel"])[0]
    u = tx.update(grads, tx.init(params), params)[0]
    s = 1.0 / math.sqrt(1.5 / 50)
    np.testing.assert_allclose(np.asarray(u["a"]["kernel"]), s * np.asarray(u_ref["a"]["kernel"]), rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(u["a"]["bias"]), np.asarray(u_ref["a"]["bias"]))
    np.testing.assert_array_equal(np.asarray(u["b"]["kernel"]), np.asarray(u_ref["b"]["kernel"]))
    with pytest.raises(ValueError, match="no binary kernels"):
        optim.create_optimizer(scaled, 10, 1, params, binary_paths=[])
