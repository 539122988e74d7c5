"""Kernel-body pieces shared by the GPU and TPU Pallas kernels: in-register decoders of the packed
formats and the two products built on them.

XNOR (both operands packed): a dot over K does not depend on the order of K, so

    A . B^T = sum_{j < 32} dot(A_j, B_j^T),   A_j = bit j of every word of A as +-1,

one low-precision dot per bit position (:func:`bit_slice_product`).

Weight-only (float x, packed weights, E elements per word: 32 signs or 16 ternary codes; element
``k = E*j + i`` in word ``j`` at slot ``i``): the sum over K is regrouped by slot,

    sum_k x[m, k] q[n, k] = sum_{i<E} sum_j x[m, E*j + i] * q_i[n, j],

so the kernel decodes slot ``i`` of every word in the tile (a shift and a mask: no reshape, which
the Triton lowering handles poorly) and takes a dot with the slot-``i`` plane of ``x``
(:func:`slot_product`); :func:`x_planes` lays ``x`` out once as ``x_planes[i, m, j] = x[m, E*j + i]``.
The decoded weights are never written out.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from extremeq.kernels import common as C
from extremeq.packing import sign_from_bit, ternary_from_code

__all__ = ["decode_sign_slot", "decode_ternary_slot", "bit_slice_product", "xnor_epilogue", "x_planes", "slot_product"]


def decode_sign_slot(words, i: int):
    """Slot ``i`` (bit i) of every word as +-1 int32."""
    return sign_from_bit(lax.shift_right_logical(words, jnp.uint32(i)) & jnp.uint32(1))


def decode_ternary_slot(words, i: int):
    """Slot ``i`` (bits 2i, 2i+1) of every word as int32 in {-1, 0, +1}."""
    return ternary_from_code(lax.shift_right_logical(words, jnp.uint32(2 * i)) & jnp.uint32(3))


def bit_slice_product(a, b, slice_dtype, acc_dtype):
    """sum_j dot(A_j, B_j^T) over the 32 bit positions: the +-1 product of two word tiles."""
    acc = None
    for j in range(C.WORD_BITS):
        d = lax.dot_general(
            decode_sign_slot(a, j).astype(slice_dtype),
            decode_sign_slot(b, j).astype(slice_dtype),
            (((1,), (1,)), ((), ())),
            preferred_element_type=acc_dtype,
        )
        acc = d if acc is None else acc + d
    return acc


def xnor_epilogue(acc, pad_bits, scale_refs, o_ref):
    """Subtract the padding bits (equal zero bits in A and B add +1 each); scale if asked."""
    c = acc.astype(jnp.int32) - jnp.int32(pad_bits)
    if scale_refs:
        ax_ref, aw_ref = scale_refs
        o_ref[...] = c.astype(jnp.float32) * ax_ref[...] * aw_ref[...]
    else:
        o_ref[...] = c


def x_planes(x2, per_word: int, wp: int, mp: int):
    """x [M, K] -> [E, Mp, Wp] with ``out[i, m, j] = x[m, E*j + i]`` (zero padded)."""
    x2 = C.pad_to(x2, (mp, wp * per_word))
    return x2.reshape(mp, wp, per_word).transpose(2, 0, 1)


def slot_product(x_plane_ref, w, decode, per_word, acc, compute_dtype, s_slice):
    """acc + sum_i dot(x plane i, decode(w, i)^T): one tile of the weight-only product."""
    for i in range(per_word):
        xi = x_plane_ref[i, :, s_slice] if s_slice is not None else x_plane_ref[i]
        qi = decode(w, i).astype(compute_dtype)
        # float32 operands: full-precision products (a GPU's default f32 dot rounds inputs to TF32,
        # which failed the float32 tests on an H100).
        precision = lax.Precision.HIGHEST if compute_dtype == jnp.float32 else None
        acc = acc + lax.dot_general(
            xi.astype(compute_dtype),
            qi,
            (((1,), (1,)), ((), ())),
            precision=precision,
            preferred_element_type=jnp.float32,
        )
    return acc
