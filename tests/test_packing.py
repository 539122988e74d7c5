"""Packing round-trips exactly and agrees bit for bit with numpy.packbits."""

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from extremeq import packing


@settings(max_examples=12, deadline=None)
@given(rows=st.integers(1, 5), length=st.integers(1, 130), seed=st.integers(0, 2**16))
def test_pack_bits_matches_numpy_packbits_little_endian(rows, length, seed):
    bits = np.random.default_rng(seed).integers(0, 2, (rows, length)).astype(np.uint8)
    words = np.asarray(packing.pack_bits(bits))
    assert words.dtype == np.uint32 and words.shape == (rows, -(-length // 32))
    ref = np.packbits(np.pad(bits, [(0, 0), (0, -length % 32)]), axis=-1, bitorder="little").view("<u4")
    np.testing.assert_array_equal(words, ref)
    np.testing.assert_array_equal(np.asarray(packing.unpack_bits(words, length)), bits)


@pytest.mark.parametrize("shape,axis", [((7, 33), 1), ((33, 7), 0), ((2, 3, 64, 5), 2), ((3, 3, 17, 40), 2), ((1,), 0)])
def test_sign_roundtrip_any_axis(shape, axis):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    x.flat[0] = 0.0  # sign(0) = +1
    words = packing.pack_signs(x, axis=axis)
    assert words.shape[axis] == -(-shape[axis] // 32)
    back = np.asarray(packing.unpack_signs(words, shape[axis], axis=axis))
    np.testing.assert_array_equal(back, np.where(x >= 0, 1.0, -1.0))


def test_sign_bit_layout_by_hand():
    # elements 0 and 33 positive -> word 0 bit 0, word 1 bit 1
    x = -np.ones(40, np.float32)
    x[0] = 1.0
    x[33] = 1.0
    np.testing.assert_array_equal(np.asarray(packing.pack_signs(x)), np.array([1, 2], np.uint32))


@settings(max_examples=10, deadline=None)
@given(rows=st.integers(1, 4), length=st.integers(1, 100), seed=st.integers(0, 2**16))
def test_ternary_roundtrip(rows, length, seed):
    t = np.random.default_rng(seed).integers(-1, 2, (rows, length)).astype(np.int8)
    words = packing.pack_ternary(t)
    assert words.shape == (rows, -(-length // 16))
    np.testing.assert_array_equal(np.asarray(packing.unpack_ternary(words, length)), t)


def test_ternary_codes_by_hand():
    # [0, +1, -1, 0] -> 00, 01, 11, 00 -> bits 0b00_11_01_00 = 0x34
    words = np.asarray(packing.pack_ternary(np.array([0, 1, -1, 0], np.int8)))
    assert words.tolist() == [0b00110100]


def test_wrong_dtypes_raise_clear_errors():
    with pytest.raises(TypeError, match="pack_signs"):
        packing.pack_bits(np.ones(4, np.float32))
    with pytest.raises(TypeError, match="bool"):
        packing.pack_ternary(np.ones(4, bool))
    with pytest.raises(TypeError, match="uint32"):
        packing.unpack_bits(np.ones(4, np.int32), 10)
    with pytest.raises(TypeError, match="pack_bits"):
        packing.pack_signs(np.ones(4, np.uint8))
    with pytest.raises(ValueError, match="exceeds"):
        packing.unpack_bits(jnp.zeros(1, jnp.uint32), 33)
