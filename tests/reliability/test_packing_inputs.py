"""Packing refuses values outside its format and kernels refuse a K that differs from the one the
weights were packed from (issue 10, point 11). Each case returned a wrong result silently before."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify

from extremeq import kernels
from extremeq.packing import pack_bits, pack_signs, pack_ternary, unpack_bits, unpack_signs, unpack_ternary


def test_pack_bits_refuses_values_outside_0_1():
    with pytest.raises(ValueError, match=r"pack_bits needs values in \{0, 1\}.*found 2 at index \(0,\)"):
        pack_bits(np.array([2, 3, -1, 7]))
    with pytest.raises(ValueError, match="pack_signs"):  # the fix it names
        pack_bits(jnp.array([[0, 1], [1, -1]]))
    np.testing.assert_array_equal(np.asarray(unpack_bits(pack_bits(np.array([0, 1, 1, 0])), 4)), [0, 1, 1, 0])


def test_pack_ternary_refuses_values_outside_minus1_0_1():
    with pytest.raises(ValueError, match=r"pack_ternary needs values in \{-1, 0, \+1\}.*found 2"):
        pack_ternary(np.array([2, -2, 5, 3]))
    with pytest.raises(ValueError, match="found -2 at index"):
        pack_ternary(np.array([1, 0, -1, -2], np.int8))


def test_value_checks_under_jit_use_checkify():
    """Under jit values are unknown: skipped by default, checked with checks=True + checkify."""
    bad = jnp.array([2, 3, -1, 7])
    jax.jit(pack_bits)(bad)  # documented: no value check on traced arrays by default
    checked = checkify.checkify(jax.jit(lambda b: pack_bits(b, checks=True)))
    err, _ = checked(bad)
    with pytest.raises(checkify.JaxRuntimeError, match=r"pack_bits needs values in \{0, 1\}"):
        err.throw()
    err, _ = checked(jnp.array([0, 1, 1]))
    err.throw()  # good values: no error
    err, _ = checkify.checkify(jax.jit(lambda t: pack_ternary(t, checks=True)))(jnp.array([2, -2, 5, 3]))
    with pytest.raises(checkify.JaxRuntimeError, match="pack_ternary"):
        err.throw()


@pytest.mark.parametrize(
    "unpack,length",
    [(unpack_bits, -3), (unpack_bits, 33), (unpack_signs, -1), (unpack_ternary, -3), (unpack_ternary, 17)],
)
def test_unpack_refuses_lengths_outside_the_words(unpack, length):
    words = jnp.zeros((2, 1), jnp.uint32)
    with pytest.raises(ValueError, match=rf"length {length} (is negative|exceeds the (32|16) ).*valid: 0 to"):
        unpack(words, length)
    with pytest.raises(ValueError, match="valid: 0 to"):  # a static argument: raised under jit too
        jax.jit(lambda w: unpack(w, length))(words)


def test_weight_only_k_contract():
    """x with K = 40 against weights packed from K = 33 (both 2 words)."""
    rng = np.random.default_rng(0)
    w33 = pack_signs(jnp.asarray(rng.normal(size=(5, 33)), jnp.float32))
    x40 = jnp.asarray(rng.normal(size=(3, 40)), jnp.float32)
    with pytest.raises(ValueError, match="x has K=40 but the weights were packed from k=33"):
        kernels.binary_weight_matmul(x40, w33, 1.0, k=33)
    with pytest.raises(ValueError, match="packed from k=33"):  # shapes are static: raised under jit
        jax.jit(lambda x: kernels.binary_weight_matmul(x, w33, 1.0, k=33))(x40)
    t33 = pack_ternary(jnp.asarray(rng.integers(-1, 2, size=(5, 33)), jnp.int8))
    x40t = jnp.asarray(rng.normal(size=(3, 40)), jnp.float32)  # 40 codes also fit 3 words
    with pytest.raises(ValueError, match="packed from k=33"):
        kernels.ternary_weight_matmul(x40t, t33, 1.0, k=33)
    with pytest.raises(ValueError, match="packed from k=33"):
        kernels.xnor_linear(x40, w33, 1.0, k=33)
    # the right K passes and equals the reference
    got = kernels.binary_weight_matmul(x40[:, :33], w33, 1.0, k=33)
    want = kernels.binary_weight_matmul_reference(x40[:, :33], w33, jnp.ones(5))
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)


def test_conv_k_contract():
    """A conv input with another channel count but the same number of words per filter."""
    rng = np.random.default_rng(1)
    w = kernels.pack_conv_weights(jnp.asarray(rng.normal(size=(3, 3, 3, 4)), jnp.float32))  # 27 -> 1 word
    x = jnp.asarray(rng.normal(size=(1, 5, 5, 2)), jnp.float32)  # 18 -> 1 word too
    with pytest.raises(ValueError, match="x has 2 channels but the filters were packed from in_features=3"):
        kernels.xnor_conv(x, w, 1.0, kernel_size=3, in_features=3)
    with pytest.raises(ValueError, match="in_features=3"):
        kernels.packed_conv(x, w, 1.0, weight_format="binary", kernel_size=3, in_features=3)


def test_packed_layers_state_their_k():
    """PackedLinear passes its in_features as k, so words alone never decide K."""
    from flax import nnx

    from extremeq.inference import pack_layer
    from extremeq.nn import QuantLinear

    layer = QuantLinear(33, 5, kernel_quantizer="bwn", input_quantizer="fp", rngs=nnx.Rngs(0))
    packed = pack_layer(layer)
    with pytest.raises(ValueError, match="expects 33 input features"):
        packed(jnp.ones((2, 40)))
    weights = packed.packed_weights()
    with pytest.raises(ValueError, match="packed from k=33"):
        weights.matmul(jnp.ones((2, 40)), k=33)
