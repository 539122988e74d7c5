"""BitLinear against NumPy: per-token 8-bit activation codes, absmean ternary / centred-sign weights,
the forward product and its straight-through gradients in closed form."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from extremeq import quantizers as Q
from extremeq.nn.bitlinear import (
    BitLinear,
    activation_codes,
    to_bitlinear,
    weight_codes,
)

RNG = np.random.default_rng(0)


def np_activation_codes(x):
    s = np.maximum(np.abs(x).max(axis=-1, keepdims=True), 1e-8) / 127.0
    return np.clip(np.round(x / s), -127, 127), s


def np_rmsnorm(x, scale, eps=1e-6):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * scale


def np_weight(w, method):
    if method == "bitnet":
        gamma = np.abs(w).mean() + 1e-5
        return np.clip(np.round(w / gamma), -1, 1), gamma
    return np.where(w - w.mean() >= 0, 1.0, -1.0), np.abs(w).mean()


def test_activation_codes_per_token_against_numpy():
    x = RNG.standard_normal((3, 5, 16)).astype(np.float32) * RNG.uniform(0.1, 10, (3, 5, 1)).astype(np.float32)
    c, s = activation_codes(jnp.asarray(x))
    c_ref, s_ref = np_activation_codes(x)
    assert s.shape == (3, 5, 1)  # one scale per token, over the feature axis
    np.testing.assert_allclose(s, s_ref, rtol=1e-6)
    np.testing.assert_array_equal(c, c_ref)
    assert np.all(np.abs(c).max(axis=-1) == 127)  # the absmax element of every token hits the bound
    assert np.all(np.asarray(c) == np.round(np.asarray(c)))


def test_activation_codes_do_not_mix_tokens():
    x = RNG.standard_normal((2, 4, 8)).astype(np.float32)
    y = x.copy()
    y[1, 2] *= 100.0  # a loud token changes only its own scale
    cx, sx = activation_codes(jnp.asarray(x))
    cy, sy = activation_codes(jnp.asarray(y))
    keep = np.ones((2, 4), bool)
    keep[1, 2] = False
    np.testing.assert_array_equal(np.asarray(cx)[keep], np.asarray(cy)[keep])
    np.testing.assert_array_equal(np.asarray(sx)[keep], np.asarray(sy)[keep])


@pytest.mark.parametrize("method", ["bitnet", "bitnet_1bit"])
def test_weight_codes_against_numpy(method):
    w = (RNG.standard_normal((24, 10)) * 0.05 + 0.01).astype(np.float32)
    c, g = weight_codes(jnp.asarray(w), method)
    c_ref, g_ref = np_weight(w, method)
    np.testing.assert_array_equal(c, c_ref)
    np.testing.assert_allclose(g, g_ref, rtol=1e-6)
    if method == "bitnet":  # gamma * codes is the quantizers' BitNet b1.58 absmean ternary
        np.testing.assert_allclose(np.asarray(c) * float(g), Q.bitnet(jnp.asarray(w)), rtol=1e-6)


@pytest.mark.parametrize("method", ["bitnet", "bitnet_1bit"])
def test_forward_and_ste_gradients_closed_form(method):
    k, n = 16, 6
    layer = BitLinear(k, n, method=method, rngs=nnx.Rngs(1))
    scale = RNG.uniform(0.5, 1.5, k).astype(np.float32)
    layer.norm.scale[...] = jnp.asarray(scale)
    x = RNG.standard_normal((2, 3, k)).astype(np.float32)
    g = RNG.standard_normal((2, 3, n)).astype(np.float32)
    w = np.asarray(layer.kernel[...])

    xn = np_rmsnorm(x, scale)
    c_x, s = np_activation_codes(xn)
    c_w, gamma = np_weight(w, method)
    xq, wq = c_x * s, c_w * gamma
    np.testing.assert_allclose(layer(jnp.asarray(x)), xq @ wq, rtol=1e-5, atol=1e-6)

    def loss(model, x):
        return jnp.sum(model(x) * g)

    grads, gx = nnx.grad(loss, argnums=(0, 1))(layer, jnp.asarray(x))
    # dL/dW = Q_8(x_n)^T g: rounding and sign pass the gradient, the scales are constants
    gw_ref = xq.reshape(-1, k).T @ g.reshape(-1, n)
    np.testing.assert_allclose(grads.kernel[...], gw_ref, rtol=1e-4, atol=1e-5)
    # dL/dx_n = g Q_w(W)^T, then the RMSNorm Jacobian: dx = (a - x_hat mean(a x_hat)) / rms, a = scale * gn
    gn = g @ wq.T
    rms = np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + 1e-6)
    a, x_hat = gn * scale, x / rms
    gx_ref = (a - x_hat * np.mean(a * x_hat, axis=-1, keepdims=True)) / rms
    np.testing.assert_allclose(gx, gx_ref, rtol=1e-4, atol=1e-5)


def test_to_bitlinear_keeps_kernels_and_refuses_biases():
    class Net(nnx.Module):
        def __init__(self):
            self.a = nnx.Linear(8, 8, use_bias=False, rngs=nnx.Rngs(0))
            self.head = nnx.Linear(8, 3, use_bias=False, rngs=nnx.Rngs(1))

    net = Net()
    kernel = np.asarray(net.a.kernel[...])
    assert to_bitlinear(net, exclude="head") == ["a"]
    assert isinstance(net.a, BitLinear) and isinstance(net.head, nnx.Linear)
    np.testing.assert_array_equal(net.a.kernel[...], kernel)
    biased = Net()
    biased.a = nnx.Linear(8, 8, rngs=nnx.Rngs(0))
    biased.a.bias[...] = jnp.ones(8)
    with pytest.raises(ValueError, match="nonzero bias"):
        to_bitlinear(biased)
    with pytest.raises(ValueError, match="unknown"):
        BitLinear(4, 4, method="bitnet2", rngs=nnx.Rngs(0))


def test_codes_are_exact_integers_under_jit():
    """The packed decoder relies on c_x @ c_W being a product of integers (exact in float32)."""
    w = jnp.asarray(RNG.standard_normal((128, 64)).astype(np.float32) * 0.02)
    x = jnp.asarray(RNG.standard_normal((4, 128)).astype(np.float32))
    c_w, _ = jax.jit(weight_codes)(w)
    c_x, _ = jax.jit(activation_codes)(x)
    for c in (c_w, c_x):
        np.testing.assert_array_equal(c, np.round(np.asarray(c)))


def test_quantize_model_rules_turn_a_float_gpt_into_bitnet():
    """quantize_model's {"bitlinear": method} rule converts the linear layers of an existing float
    transformer: the result computes what a BitNet GPT with the same weights computes."""
    from extremeq.inference.lm import export_lm
    from extremeq.nn import quantize_model
    from extremeq.nn.gpt import GPT

    kw = {"block_size": 8, "num_layers": 2, "num_heads": 2, "width": 16}
    fp = GPT(11, **kw, linear="fp", rngs=nnx.Rngs(0))
    bn = GPT(11, **kw, linear="bitnet", rngs=nnx.Rngs(1))
    bitlinears = {p: m for p, m in nnx.iter_modules(bn) if isinstance(m, BitLinear)}
    for p, a in nnx.iter_modules(fp):
        if isinstance(a, nnx.Linear):
            bitlinears[p].kernel[...] = a.kernel[...]
    bn.wte.embedding[...] = fp.wte.embedding[...]
    paths = quantize_model(fp, [(".*", {"bitlinear": "bitnet"})])
    assert len(paths) == 8 and all(isinstance(m, BitLinear) for m in (fp.blocks[0].fc, fp.blocks[1].attn.qkv))
    tokens = jnp.asarray(RNG.integers(0, 11, (2, 8)), jnp.int32)
    np.testing.assert_array_equal(np.asarray(fp(tokens)), np.asarray(bn(tokens)))
    np.testing.assert_array_equal(np.asarray(export_lm(fp)(tokens)), np.asarray(fp(tokens)))
    with pytest.raises(ValueError, match="only 'ste'"):
        quantize_model(GPT(11, **kw, rngs=nnx.Rngs(0)), [(".*", {"bitlinear": "bitnet", "kernel": "twn"})])
    conv = nnx.Sequential(nnx.Conv(3, 4, (3, 3), rngs=nnx.Rngs(0)))
    with pytest.raises(TypeError, match="nnx.Linear layers only"):
        quantize_model(conv, [(".*", {"bitlinear": "bitnet"})])
