"""A quantized layer's forward equals the float layer applied to the quantized weights."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from extremeq import quantizers as Q
from extremeq.nn import QuantConv, QuantLinear, as_spec, clip_latent_weights

X_DENSE = jnp.asarray(np.random.default_rng(1).standard_normal((4, 12)).astype(np.float32))
X_IMG = jnp.asarray(np.random.default_rng(2).standard_normal((2, 9, 9, 5)).astype(np.float32))


@pytest.mark.parametrize("kernel", ["fp", "bc", "bwn", "twn", "ttq", "bitnet", "int8"])
def test_linear_equals_float_layer_on_quantized_weights(kernel):
    layer = QuantLinear(12, 7, kernel_quantizer=kernel, rngs=nnx.Rngs(0))
    layer.bias[...] = jnp.arange(7.0) / 10
    ref = nnx.Linear(12, 7, rngs=nnx.Rngs(0))
    ref.kernel[...] = layer.quantized_kernel()
    ref.bias[...] = layer.bias[...]
    np.testing.assert_allclose(layer(X_DENSE), ref(X_DENSE), rtol=1e-5, atol=1e-6)


def test_linear_quantized_kernel_values():
    layer = QuantLinear(12, 7, kernel_quantizer="bwn", rngs=nnx.Rngs(0))
    w = np.asarray(layer.kernel[...])
    np.testing.assert_allclose(layer.quantized_kernel(), np.abs(w).mean(0) * np.where(w >= 0, 1, -1), rtol=1e-6)


@pytest.mark.parametrize("kernel", ["bwn", "twn", "int8"])
@pytest.mark.parametrize("strides,padding", [(1, "SAME"), (2, "VALID"), (2, "SAME")])
def test_conv_equals_float_conv_on_quantized_weights(kernel, strides, padding):
    layer = QuantConv(5, 6, (3, 3), strides, padding=padding, kernel_quantizer=kernel, rngs=nnx.Rngs(0))
    ref = nnx.Conv(5, 6, (3, 3), strides, padding=padding, rngs=nnx.Rngs(0))
    ref.kernel[...] = layer.quantized_kernel()
    np.testing.assert_allclose(layer(X_IMG), ref(X_IMG), rtol=1e-5, atol=1e-5)


def test_xnor_conv_equals_sign_conv_times_k_map():
    layer = QuantConv(
        5,
        6,
        (3, 3),
        1,
        padding="SAME",
        kernel_quantizer="bwn",
        input_quantizer="xnor",
        use_bias=False,
        rngs=nnx.Rngs(0),
    )
    xs = jnp.where(X_IMG >= 0, 1.0, -1.0)
    xs = jnp.pad(xs, [(0, 0), (1, 1), (1, 1), (0, 0)], constant_values=1.0)  # pad_value = +1 after binarization
    ref = jax.lax.conv_general_dilated(
        xs, layer.quantized_kernel(), (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    k = Q.xnor_activation_scale(X_IMG, (3, 3), 1, "SAME")
    np.testing.assert_allclose(layer(X_IMG), ref * k, rtol=1e-5, atol=1e-5)


def test_xnor_dense_scale_and_bnn_sign_input():
    layer = QuantLinear(12, 3, kernel_quantizer="bwn", input_quantizer="xnor", use_bias=False, rngs=nnx.Rngs(0))
    beta = jnp.mean(jnp.abs(X_DENSE), -1, keepdims=True)
    np.testing.assert_allclose(layer(X_DENSE), (jnp.sign(X_DENSE) @ layer.quantized_kernel()) * beta, rtol=1e-5)
    bnn = QuantLinear(12, 3, kernel_quantizer="bc", input_quantizer="sign", use_bias=False, rngs=nnx.Rngs(0))
    out = np.asarray(bnn(X_DENSE))
    np.testing.assert_array_equal(out, np.round(out))  # +-1 x +-1 sums are integers
    assert bnn.input_quantizer.estimator.name == "clipped"


def test_ttq_scales_are_parameters_with_the_papers_gradients():
    layer = QuantLinear(12, 7, kernel_quantizer="ttq", use_bias=False, rngs=nnx.Rngs(0))
    assert isinstance(layer.ttq_wp, nnx.Param) and isinstance(layer.ttq_wn, nnx.Param)
    grads = nnx.grad(lambda m: jnp.sum(m(X_DENSE)))(layer)
    w = np.asarray(layer.kernel[...])
    delta = 0.05 * np.abs(w).max()
    g_wt = np.asarray(X_DENSE).sum(0)[None, :].repeat(12, 0)  # dL/dW_t for L = sum(x @ W_t)
    g_wt = np.asarray(X_DENSE).T @ np.ones((4, 7))
    assert np.isclose(float(grads.ttq_wp[...]), g_wt[w > delta].sum(), rtol=1e-5)
    assert np.isclose(float(grads.ttq_wn[...]), -g_wt[w < -delta].sum(), rtol=1e-5)


def test_stochastic_bc_draws_in_training_and_is_deterministic_in_eval():
    layer = QuantLinear(12, 64, kernel_quantizer="bc_stochastic", rngs=nnx.Rngs(0, quant=3))
    a, b = layer.quantized_kernel(), layer.quantized_kernel()
    assert not np.array_equal(a, b)  # fresh noise each call
    layer.eval()
    w = np.asarray(layer.kernel[...])
    np.testing.assert_array_equal(layer.quantized_kernel(), np.where(w >= 0, 1.0, -1.0))
    with pytest.raises(ValueError, match="quant"):
        QuantLinear(3, 3, kernel_quantizer="bc_stochastic", rngs=nnx.Rngs(0))


def test_clip_latent_weights_only_for_binary_connect():
    bc = QuantLinear(4, 4, kernel_quantizer="bc", rngs=nnx.Rngs(0))
    bwn = QuantLinear(4, 4, kernel_quantizer="bwn", rngs=nnx.Rngs(0))
    for layer in (bc, bwn):
        layer.kernel[...] = jnp.linspace(-3, 3, 16).reshape(4, 4)
    clip_latent_weights(bc)
    clip_latent_weights(bwn)
    assert float(jnp.max(jnp.abs(bc.kernel[...]))) == 1.0
    assert float(jnp.max(jnp.abs(bwn.kernel[...]))) == 3.0


def test_unknown_quantizer_lists_the_valid_ones():
    with pytest.raises(ValueError, match="bwn, twn"):
        QuantLinear(3, 3, kernel_quantizer="tnw", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="xnor"):
        QuantLinear(3, 3, input_quantizer="xnr", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="swish_sign"):
        as_spec("bwn", ste="swish")
    with pytest.raises(ValueError, match="12 input features"):
        QuantLinear(12, 3, rngs=nnx.Rngs(0))(jnp.ones((2, 5)))


def test_spec_bits_and_estimator_params():
    assert as_spec("bwn").bits == 1 and as_spec("twn").bits == 2 and as_spec("int8").bits == 8
    spec = as_spec({"name": "bwn", "ste": "tanh", "ste_kwargs": {"beta": 2.0}})
    assert spec.estimator.beta == 2.0 and spec.estimator.name == "tanh"


def test_stochastic_bc_eval_mean_is_the_expected_binary_weight():
    """eval='mean': after model.eval() the kernel is E[w_b] = P(+1) - P(-1) = 2 hard_sigmoid(w) - 1
    (BinaryConnect's test-time real-valued weights); the empirical mean of many training draws
    converges to it."""
    spec = {"name": "bc_stochastic", "eval": "mean"}
    layer = QuantLinear(6, 50, kernel_quantizer=spec, rngs=nnx.Rngs(0, quant=5))
    layer.kernel[...] = jnp.linspace(-1.5, 1.5, 300).reshape(6, 50)
    draws = np.mean([np.asarray(layer.quantized_kernel()) for _ in range(400)], axis=0)
    w = np.asarray(layer.kernel[...])
    expected = 2 * np.clip((w + 1) / 2, 0, 1) - 1
    assert np.max(np.abs(draws - expected)) < 0.2  # 400 draws: std of the mean <= 0.05
    layer.eval()
    np.testing.assert_allclose(np.asarray(layer.quantized_kernel()), expected, atol=1e-7)
    x = np.random.default_rng(0).normal(size=(3, 6)).astype(np.float32)
    np.testing.assert_allclose(
        np.asarray(layer(jnp.asarray(x))), x @ expected + np.asarray(layer.bias[...]), rtol=1e-5, atol=1e-5
    )
