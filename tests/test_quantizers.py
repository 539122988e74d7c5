"""Quantizers against closed forms, NumPy references and hand-checked examples."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from extremeq import quantizers as Q

RNG = np.random.default_rng(0)


def test_bwn_alpha_minimises_l2_error_on_a_dense_grid():
    w = RNG.standard_normal((64, 16)).astype(np.float32)
    alpha = float(Q.bwn_scale(jnp.asarray(w), per_channel=False))
    grid = np.linspace(0.0, 2.0, 20001)
    errs = [np.sum((w - a * np.where(w >= 0, 1, -1)) ** 2) for a in grid]
    assert abs(grid[int(np.argmin(errs))] - alpha) < 2e-4
    assert np.isclose(alpha, np.mean(np.abs(w)), rtol=1e-6)


def test_bwn_per_channel_scale_and_values():
    w = RNG.standard_normal((3, 3, 4, 8)).astype(np.float32)
    wq = np.asarray(Q.bwn(jnp.asarray(w)))
    alpha = np.mean(np.abs(w), axis=(0, 1, 2))
    np.testing.assert_allclose(wq, alpha * np.where(w >= 0, 1, -1), rtol=1e-6)


def test_bwn_gradient_is_alpha_path_plus_ste():
    # d/dW_i sum(c * alpha sign(W)) = (1/n) sign(W_i) sum_j c_j sign(W_j) + alpha c_i
    w = RNG.standard_normal(10).astype(np.float32)
    c = RNG.standard_normal(10).astype(np.float32)
    g = jax.grad(lambda v: jnp.sum(c * Q.bwn(v, per_channel=False)))(jnp.asarray(w))
    s = np.where(w >= 0, 1, -1)
    want = s * np.sum(c * s) / w.size + np.mean(np.abs(w)) * c
    np.testing.assert_allclose(np.asarray(g), want, rtol=1e-5)


def test_twn_threshold_scale_and_values():
    w = RNG.standard_normal((5, 5, 3, 6)).astype(np.float32)
    delta = 0.7 * np.mean(np.abs(w))
    alpha = np.mean(np.abs(w)[np.abs(w) > delta])
    wt = np.asarray(Q.twn(jnp.asarray(w)))
    assert np.isclose(float(Q.twn_threshold(jnp.asarray(w))), delta, rtol=1e-6)
    assert set(np.unique(np.round(wt / alpha, 5))) <= {-1.0, 0.0, 1.0}
    want = alpha * np.where(w > delta, 1, np.where(w < -delta, -1, 0))
    np.testing.assert_allclose(wt, want, rtol=1e-5)


def test_twn_per_channel():
    w = RNG.standard_normal((16, 4)).astype(np.float32) * np.array([0.1, 1, 2, 5], np.float32)
    wt = np.asarray(Q.twn(jnp.asarray(w), per_channel=True))
    for c in range(4):
        col = w[:, c]
        d = 0.7 * np.mean(np.abs(col))
        a = np.mean(np.abs(col)[np.abs(col) > d])
        np.testing.assert_allclose(wt[:, c], a * np.where(col > d, 1, np.where(col < -d, -1, 0)), rtol=1e-5)


def test_ttq_forward_and_gradients_hand_checked():
    w = jnp.array([0.9, -0.8, 0.01, 0.5, -0.02, -0.3])
    c = jnp.arange(1.0, 7.0)  # dL/dW_t
    # Delta = 0.1 * 0.9 = 0.09: I_p = {0, 3}, I_n = {1, 5}, I_z = {2, 4}
    wt = Q.ttq(w, 2.0, 3.0, t=0.1)
    np.testing.assert_allclose(np.asarray(wt), [2, -3, 0, 2, 0, -3])
    gw, gp, gn = jax.grad(lambda a, p, n: jnp.sum(c * Q.ttq(a, p, n, t=0.1)), (0, 1, 2))(w, 2.0, 3.0)
    assert float(gp) == 1 + 4  # sum over I_p
    assert float(gn) == -(2 + 6)  # value is -W_n on I_n
    np.testing.assert_allclose(np.asarray(gw), [2 * 1, 3 * 2, 3, 2 * 4, 5, 3 * 6])


def test_ttq_jit_and_init_scales():
    w = jnp.asarray(RNG.standard_normal(100).astype(np.float32))
    wp, wn = Q.ttq_init_scales(w)
    d = 0.05 * np.max(np.abs(np.asarray(w)))
    wn_np = np.asarray(w)
    assert np.isclose(float(wp), wn_np[wn_np > d].mean(), rtol=1e-5)
    assert np.isclose(float(wn), -wn_np[wn_np < -d].mean(), rtol=1e-5)
    np.testing.assert_allclose(jax.jit(Q.ttq)(w, wp, wn), Q.ttq(w, wp, wn))


def test_bitnet_absmean():
    w = RNG.standard_normal(200).astype(np.float32) * 0.1
    gamma = np.mean(np.abs(w)) + 1e-5
    want = gamma * np.clip(np.round(w / gamma), -1, 1)
    np.testing.assert_allclose(np.asarray(Q.bitnet(jnp.asarray(w))), want, rtol=1e-5)
    g = jax.grad(lambda v: jnp.sum(Q.bitnet(v)))(jnp.asarray(w))
    np.testing.assert_allclose(np.asarray(g), np.ones_like(w), rtol=1e-5)  # STE through round, gamma constant


def test_int8_weights_and_activations():
    w = RNG.standard_normal((10, 4)).astype(np.float32)
    s = np.max(np.abs(w), axis=0) / 127
    np.testing.assert_allclose(np.asarray(Q.int8(jnp.asarray(w))), s * np.round(w / s), rtol=1e-5, atol=1e-7)
    x = RNG.standard_normal((3, 5, 5, 2)).astype(np.float32)
    sx = np.max(np.abs(x), axis=(1, 2, 3), keepdims=True) / 127
    np.testing.assert_allclose(
        np.asarray(Q.int8_activation(jnp.asarray(x))), sx * np.round(x / sx), rtol=1e-5, atol=1e-7
    )
    # one example's result does not depend on the rest of the batch
    np.testing.assert_allclose(Q.int8_activation(jnp.asarray(x[:1])), Q.int8_activation(jnp.asarray(x))[:1])


def test_stochastic_binary_connect_probability_and_key_error():
    w = jnp.full((200000,), 0.5)  # P(+1) = hard_sigmoid(0.5) = 0.75
    wb = Q.binary_connect_stochastic(w, jax.random.key(0))
    assert set(np.unique(np.asarray(wb))) == {-1.0, 1.0}
    assert abs(float(jnp.mean(wb == 1)) - 0.75) < 0.005
    g = jax.grad(lambda v: jnp.sum(Q.binary_connect_stochastic(v, jax.random.key(1), "clipped")))(jnp.array([0.3, 2.0]))
    np.testing.assert_allclose(np.asarray(g), [1.0, 0.0])
    with pytest.raises(ValueError, match="PRNG key"):
        Q.binary_connect_stochastic(w, None)


def test_xnor_k_map_matches_numpy_reference():
    x = RNG.standard_normal((2, 7, 6, 3)).astype(np.float32)
    xb, k = Q.xnor_activation(jnp.asarray(x), kernel_size=(3, 3), strides=(2, 2), padding="SAME")
    np.testing.assert_array_equal(np.asarray(xb), np.where(x >= 0, 1.0, -1.0))
    a = np.mean(np.abs(x), axis=-1)
    # SAME padding, stride 2, 3x3: pad (1, 1) on H=7, (0, 1)... compute via lax's own rule
    pads = jax.lax.padtype_to_pads((7, 6), (3, 3), (2, 2), "SAME")
    ap = np.pad(a, [(0, 0), tuple(pads[0]), tuple(pads[1])])
    ho, wo = k.shape[1], k.shape[2]
    ref = np.zeros((2, ho, wo))
    for i in range(ho):
        for j in range(wo):
            ref[:, i, j] = ap[:, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3].mean(axis=(1, 2))
    np.testing.assert_allclose(np.asarray(k)[..., 0], ref, rtol=1e-5)
    # dense inputs: beta = mean over features of |x|
    _, beta = Q.xnor_activation(jnp.asarray(x[:, 0, 0, :]))
    np.testing.assert_allclose(np.asarray(beta)[:, 0], np.abs(x[:, 0, 0, :]).mean(-1), rtol=1e-6)


def test_quantizers_work_from_a_linen_module():
    import flax.linen as linen

    class LinenBWNDense(linen.Module):
        features: int

        @linen.compact
        def __call__(self, x):
            w = self.param("kernel", linen.initializers.lecun_normal(), (x.shape[-1], self.features))
            return x @ Q.bwn(w, "clipped")

    model = LinenBWNDense(3)
    x = jnp.asarray(RNG.standard_normal((4, 5)).astype(np.float32))
    params = model.init(jax.random.key(0), x)
    w = np.asarray(params["params"]["kernel"])
    want = np.asarray(x) @ (np.mean(np.abs(w), axis=0) * np.where(w >= 0, 1, -1))
    np.testing.assert_allclose(np.asarray(model.apply(params, x)), want, rtol=1e-5, atol=1e-6)
    grads = jax.grad(lambda p: jnp.sum(model.apply(p, x) ** 2))(params)
    assert grads["params"]["kernel"].shape == w.shape and bool(jnp.all(jnp.isfinite(grads["params"]["kernel"])))
