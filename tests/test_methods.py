"""The method registry: every method's codes decode to exactly its evaluation forward; tables and
errors come from the registry; the layers, policy and summary read it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from extremeq import methods
from extremeq import quantizers as Q
from extremeq.nn import (
    INPUT_QUANTIZERS,
    METHODS,
    WEIGHT_QUANTIZERS,
    QuantConv,
    QuantLinear,
    method_rules,
)
from extremeq.nn.specs import BINARY, TERNARY

W = jnp.asarray(np.random.default_rng(0).standard_normal((3, 3, 6, 8)).astype(np.float32))


@pytest.mark.parametrize("name", [n for n in WEIGHT_QUANTIZERS if n != "fp"])
def test_decode_of_codes_is_the_evaluation_forward_exactly(name):
    # The contract the exporter packs by: codes + scales stand for exactly the weights the trained
    # network multiplies with in evaluation.
    layer = QuantConv(6, 8, 3, kernel_quantizer=name, rngs=nnx.Rngs(0, quant=1))
    layer.kernel[...] = W
    layer.init_learned_scales()
    layer.deterministic = True
    q = layer.encoded_kernel()
    assert q.method == name and q.codes.shape == W.shape
    np.testing.assert_array_equal(np.asarray(q.dequantize()), np.asarray(layer.quantized_kernel()))
    codes = np.asarray(q.codes)
    assert np.array_equal(codes, np.round(codes))  # integers
    assert np.abs(codes).max() <= 2 ** (methods.weight_method(name).bits - 1)


def test_codes_against_closed_forms():
    w = np.asarray(W)
    spec = lambda n: QuantLinear(2, 2, kernel_quantizer=n, rngs=nnx.Rngs(0, quant=0)).kernel_quantizer
    q = methods.weight_method("bwn").encode(W, spec("bwn"), {})
    np.testing.assert_array_equal(q.codes, np.where(w >= 0, 1, -1))
    np.testing.assert_allclose(np.ravel(q.scales["alpha"]), np.abs(w).reshape(-1, 8).mean(0), rtol=1e-6)
    q = methods.weight_method("ttq").encode(W, spec("ttq"), {"ttq_wp": 0.5, "ttq_wn": 0.25})
    delta = 0.05 * np.abs(w).max()
    np.testing.assert_array_equal(q.codes, (w > delta).astype(int) - (w < -delta))
    np.testing.assert_array_equal(q.dequantize(), np.where(w > delta, 0.5, np.where(w < -delta, -0.25, 0)))
    q = methods.weight_method("int8").encode(W, spec("int8"), {})
    s = np.abs(w).reshape(-1, 8).max(0) / 127
    np.testing.assert_array_equal(q.codes, np.clip(np.round(w / s), -127, 127))
    assert np.abs(q.codes).max() == 127


def test_tables_are_views_of_the_registry():
    assert WEIGHT_QUANTIZERS["bwn"] == (1, False) and WEIGHT_QUANTIZERS["bc"] == (1, True)
    assert WEIGHT_QUANTIZERS["ttq"] == (2, False) and WEIGHT_QUANTIZERS["int8"] == (8, False)
    assert dict(INPUT_QUANTIZERS) == {"fp": 32, "sign": 1, "xnor": 1, "int8": 8}
    assert METHODS["xnor"] == ("bwn", "xnor") and METHODS["bnn"] == ("bc", "sign")
    assert set(METHODS) >= {"fp", "bc", "bc_stochastic", "bwn", "twn", "ttq", "bitnet", "xnor", "bnn"}
    assert tuple(BINARY)[:3] == ("bc", "bc_stochastic", "bwn") and "twn" in TERNARY and "bwn" not in TERNARY
    assert set(methods.BINARY_INPUT_METHODS) >= {"xnor", "bnn"} and "bwn" not in methods.BINARY_INPUT_METHODS
    assert {"bc", "bwn", "xnor", "bnn"} <= set(methods.BINARY_METHODS) and "twn" not in methods.BINARY_METHODS


def test_registering_adds_to_every_table_and_refuses_a_taken_name():
    halve = methods.WeightMethod(
        name="halve_for_test", bits=32, precision="float", forward=lambda w, spec, *, scales, key: w / 2
    )
    methods.register(halve, methods.Method(name="halve_for_test", kernel="halve_for_test"))
    assert WEIGHT_QUANTIZERS["halve_for_test"] == (32, False) and METHODS["halve_for_test"][0] == "halve_for_test"
    rules = method_rules("halve_for_test")
    assert rules[-1] == (".*", {"kernel": "halve_for_test", "input": "fp", "ste": None, "ste_kwargs": None})
    layer = QuantLinear(3, 2, kernel_quantizer="halve_for_test", rngs=nnx.Rngs(0))
    np.testing.assert_array_equal(layer.quantized_kernel(), layer.kernel[...] / 2)
    other = methods.WeightMethod(name="halve_for_test", bits=8, precision="int8", forward=lambda w, s, **k: w)
    with pytest.raises(ValueError, match="registered already; pass replace=True"):
        methods.register(other)
    with pytest.raises(ValueError, match="weight quantizer 'nope' unknown; choose one of .*bwn"):
        methods.register(methods.Method(name="m_for_test", kernel="nope"))
    with pytest.raises(ValueError, match="bits must be an int in"):
        methods.WeightMethod(name="b", bits=0, precision="x", forward=lambda w, s, **k: w)


def test_unknown_names_name_the_registered_ones():
    with pytest.raises(ValueError, match="weight quantizer 'tnw' unknown; choose one of .*twn"):
        QuantLinear(2, 2, kernel_quantizer="tnw", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="method 'xnr' unknown; choose one of .*xnor"):
        method_rules("xnr")


def test_sign_input_default_estimator_comes_from_its_entry():
    layer = QuantLinear(2, 2, input_quantizer="sign", rngs=nnx.Rngs(0))
    assert layer.input_quantizer.estimator.name == methods.input_method("sign").default_estimator == "clipped"
    # the clipped STE: gradient 0 outside |x| <= 1
    g = jax.grad(lambda x: jnp.sum(layer(x)))(jnp.asarray([[0.5, 3.0]]))
    assert float(g[0, 1]) == 0.0 and float(g[0, 0]) != 0.0


def test_ttq_forward_is_ttq_decode_of_ttq_codes():
    w_p, w_n = jnp.float32(0.7), jnp.float32(0.3)
    got = Q.ttq(W, w_p, w_n)
    np.testing.assert_array_equal(got, Q.ttq_decode(Q.ttq_codes(W), w_p, w_n))
