"""Quantizers on awkward inputs (issue 10, points 10 and 12): NaN propagates through every quantizer
so that the NaN guard sees it (the rule in ``extremeq.ste``'s docstring); scalars, empty arrays and
zero-width layers give correct results or a clear error."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from extremeq import quantizers as Q
from extremeq import ste
from extremeq.nn import QuantConv, QuantLinear, method_rules, quantize_model

NAN = float("nan")


@pytest.mark.parametrize("name", ste.ESTIMATORS)
def test_sign_of_nan_is_nan_for_every_estimator(name):
    x = jnp.asarray([NAN, -2.0, 0.0, 3.0])
    got = np.asarray(ste.get_estimator(name)(x))
    assert np.isnan(got[0]) and list(got[1:]) == [-1.0, 1.0, 1.0]  # was -1 for nan
    assert np.isnan(np.asarray(ste.sign(x))[0])


def _weights_with(bad):
    w = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)
    w[3, 1] = bad
    return jnp.asarray(w)


WEIGHT_QUANTIZERS = {
    "bc": lambda w: Q.binary_connect(w),
    "bc_stochastic": lambda w: Q.binary_connect_stochastic(w, jax.random.key(0)),
    "bwn": lambda w: Q.bwn(w),
    "twn": lambda w: Q.twn(w),
    "ttq": lambda w: Q.ttq(w, jnp.float32(0.5), jnp.float32(0.5)),
    "bitnet": lambda w: Q.bitnet(w),
    "int8": lambda w: Q.int8(w),
}


@pytest.mark.parametrize("name", WEIGHT_QUANTIZERS)
def test_a_nan_weight_makes_the_quantized_kernel_non_finite(name):
    got = np.asarray(WEIGHT_QUANTIZERS[name](_weights_with(NAN)))
    assert np.isnan(got[3, 1]), name  # twn, ttq: all zeros before; bc_stochastic: -1


@pytest.mark.parametrize("name", ["twn", "ttq"])
def test_an_infinite_weight_is_not_quantized_into_zeros(name):
    got = np.asarray(WEIGHT_QUANTIZERS[name](_weights_with(np.inf)))
    assert not np.isfinite(got).all()  # Delta = inf made every code 0 before
    assert not np.any(got == 0)


@pytest.mark.parametrize("bad", [NAN, np.inf])
def test_ttq_init_scales_of_a_non_finite_kernel_are_nan(bad):
    w_p, w_n = Q.ttq_init_scales(_weights_with(bad))
    assert np.isnan(float(w_p)) and np.isnan(float(w_n))  # (0, 0) before


def test_ttq_codes_and_ttq_gradient_stay_correct_for_finite_weights():
    w = _weights_with(0.0)
    delta = 0.05 * float(jnp.max(jnp.abs(w)))
    want = np.where(w > delta, 0.5, np.where(w < -delta, -0.25, 0.0))
    np.testing.assert_array_equal(Q.ttq(w, jnp.float32(0.5), jnp.float32(0.25)), want)


@pytest.mark.parametrize("inputs", ["sign", "xnor"])
def test_binary_activation_layers_pass_nan_inputs_on(inputs):
    x = np.random.default_rng(1).standard_normal((3, 6)).astype(np.float32)
    x[1, 2] = NAN
    y = np.asarray(QuantLinear(6, 4, kernel_quantizer="bwn", input_quantizer=inputs, rngs=nnx.Rngs(0))(x))
    assert np.isnan(y[1]).all() and np.isfinite(y[[0, 2]]).all()  # finite before
    img = np.random.default_rng(2).standard_normal((2, 5, 5, 3)).astype(np.float32)
    img[0, 2, 2, 1] = NAN
    y = np.asarray(QuantConv(3, 4, 3, kernel_quantizer="bwn", input_quantizer=inputs, rngs=nnx.Rngs(0))(img))
    assert np.isnan(y[0, 2, 2]).all() and np.isfinite(y[1]).all()


def test_a_binary_model_fed_nan_returns_nan():
    from extremeq.nn.models import MLP

    model = MLP(6, 3, hidden=(8, 8), activation="hardtanh", rngs=nnx.Rngs(0))
    quantize_model(model, method_rules("bnn"))
    model.eval()
    x = np.zeros((2, 6), np.float32)
    x[0, 0] = NAN
    y = np.asarray(model(x))
    assert np.isnan(y[0]).all() and np.isfinite(y[1]).all()


def test_bwn_of_a_scalar_is_the_scalar():
    # a 0-d kernel is one channel: alpha = |w|, alpha sign(w) = w (ZeroDivisionError before)
    assert float(Q.bwn(jnp.float32(-0.75))) == -0.75
    assert float(Q.bwn(jnp.float32(2.0), per_channel=False)) == 2.0
    assert float(Q.int8(jnp.float32(-0.5))) == -0.5


def test_int8_of_an_empty_array_is_empty():
    for fn in (Q.int8, Q.int8_activation, lambda x: Q.int8(x, per_channel=False)):
        got = fn(jnp.zeros((0, 4), jnp.float32))  # a NumPy zero-size reduction error before
        assert got.shape == (0, 4)
    assert Q.int8_activation(jnp.zeros((3, 0))).shape == (3, 0)


@pytest.mark.parametrize(
    "make",
    [
        lambda: QuantLinear(0, 4, rngs=nnx.Rngs(0)),
        lambda: QuantLinear(4, 0, kernel_quantizer="bwn", rngs=nnx.Rngs(0)),
        lambda: QuantConv(0, 4, 3, rngs=nnx.Rngs(0)),
    ],
)
def test_a_zero_width_layer_is_refused_with_a_clear_error(make):
    with pytest.raises(ValueError, match=r"needs (in|out)_features >= 1"):  # ZeroDivisionError before
        make()
