"""The plain-XLA paths of the kernels (no Pallas): XNOR popcount, unpack-then-dot, padded convolution.

* :func:`xnor_matmul_xla_popcount`: ``K - 2 popcount(A ^ B)``, K-chunked (backend ``"xla_popcount"``).
* :func:`xnor_matmul_dot`, :func:`weight_only_dot`: unpack the words in XLA, one ``dot_general``
  (backend ``"dot"``).
* :func:`padded_conv`: a convolution whose input is padded with a constant ``pad_value``, without
  padding the input: ``conv(x, W, zero padding) + pad_value * conv(B, sum_c W)`` with B the border
  mask (1 on padded positions). Exact: every padded tap of the window contributes
  ``pad_value * W[dh, dw, c, o]`` summed over c, which is what the 1-channel convolution of B with
  sum_c W adds. XLA:CPU runs a self-padding convolution about 3x faster than an explicit pad
  followed by an unpadded one (the copy of every activation costs more than the conv).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from extremeq.kernels import backends
from extremeq.kernels import common as C
from extremeq.kernels.reference import DN
from extremeq.packing import unpack_signs

__all__ = ["xnor_matmul_xla_popcount", "xnor_matmul_dot", "weight_only_dot", "conv_border_term", "padded_conv"]


#: Rows up to which :func:`xnor_matmul_xla_popcount` reduces over the word axis in place.
SMALL_M = 8


@functools.partial(jax.jit, static_argnames=("k", "chunk_words"))
def xnor_matmul_xla_popcount(a_bits, b_bits, *, k: int, chunk_words: int = 16):
    """``K - 2 popcount(A ^ B)`` in plain XLA, ``chunk_words`` words of K per scan step.

    Each step is one fused [M, N] loop that XORs and popcounts ``chunk_words`` words with the
    word axis outermost (vectorised along N); a whole-K reduction in one fusion, or one over
    the innermost (word) axis, measured 10-40x slower on the CPU here. Zero words padding K
    to a multiple of ``chunk_words`` XOR to 0 and add nothing. For at most
    :data:`SMALL_M` rows (batch-1 inference) the reduction over the innermost axis wins instead:
    it reads B in place, where the scan first copies B transposed (at N = 1024, K = 1024 on one
    core: 26 vs 41 us at M = 1, 37 vs 80 us at M = 4, slower from M = 16 on).
    """
    m, w = a_bits.shape
    n = b_bits.shape[0]
    if m <= SMALL_M:
        pop = jnp.sum(lax.population_count(a_bits[:, None, :] ^ b_bits[None, :, :]).astype(jnp.int32), axis=-1)
        return jnp.int32(k) - 2 * pop
    cw = min(chunk_words, w)
    wp = C.round_up(w, cw)
    a_t = C.pad_to(a_bits, (m, wp)).T.reshape(wp // cw, cw, m)
    b_t = C.pad_to(b_bits, (n, wp)).T.reshape(wp // cw, cw, n)

    def step(acc, ab):
        a_c, b_c = ab
        x = lax.population_count(a_c[:, :, None] ^ b_c[:, None, :])
        return acc + jnp.sum(x.astype(jnp.int32), axis=0), None

    pop, _ = lax.scan(step, jnp.zeros((m, n), jnp.int32), (a_t, b_t))
    return jnp.int32(k) - 2 * pop


@functools.partial(jax.jit, static_argnames=("k",))
def xnor_matmul_dot(a_bits, b_bits, *, k: int):
    """Unpack both operands to +-1 in XLA and take one dot: int8 x int8 -> int32, or on a GPU
    bfloat16 x bfloat16 -> float32 (exact: +-1 products, integer sums below 2^24), because XLA's
    int8 dot gave wrong sums on an H100 (jax 0.11.2) for small odd shapes such as 3 x 5 x 33."""
    if backends.platform() == "gpu":
        if k >= 2**24:
            raise ValueError(f"xnor_matmul 'dot' on a GPU sums in float32, exact for K < 2^24; got K = {k}")
        a = unpack_signs(a_bits, k, axis=-1, dtype=jnp.bfloat16)
        b = unpack_signs(b_bits, k, axis=-1, dtype=jnp.bfloat16)
        out = lax.dot_general(a, b, (((1,), (1,)), ((), ())), preferred_element_type=jnp.float32)
        return out.astype(jnp.int32)
    a = unpack_signs(a_bits, k, axis=-1, dtype=jnp.int8)
    b = unpack_signs(b_bits, k, axis=-1, dtype=jnp.int8)
    return lax.dot_general(a, b, (((1,), (1,)), ((), ())), preferred_element_type=jnp.int32)


@functools.partial(jax.jit, static_argnames=("unpack", "k"))
def weight_only_dot(x2, w_words, scale, *, unpack, k):
    """x2 [M, K] @ (scale * unpack(w_words)).T: decode [N, K] in XLA, one float32-accumulated dot.

    On the CPU the product is written as ``x2 @ q.T`` per row for M <= :data:`SMALL_M` (batch-1
    decoding, short prompts): that is the form XLA:CPU fuses with the unpack into one loop that never
    writes q. A dot contracting q's last axis, one with M > 1, or one with precision HIGHEST is not
    fused, and the unfused unpacks of every layer of a jitted model are hoisted to the start of the
    program with all their float matrices live at once (350 MiB of temporaries per decoded token of
    an 85M-parameter GPT, ~10x slower decoding). HIGHEST (no TF32 / bfloat16 passes) is asked for on
    GPUs and TPUs only: a float32 dot on the CPU is float32 anyway.
    """
    q = unpack(w_words, k, x2.dtype)
    dims = (((1,), (0,)), ((), ()))
    if backends.platform() == "cpu" and 0 < x2.shape[0] <= SMALL_M:
        rows = [lax.dot_general(x2[r : r + 1], q.T, dims, preferred_element_type=jnp.float32) for r in range(len(x2))]
        y = jnp.concatenate(rows, axis=0)
    else:
        precision = lax.Precision.HIGHEST if x2.dtype == jnp.float32 else None  # no TF32 rounding on GPUs
        y = lax.dot_general(x2, q.T, dims, precision=precision, preferred_element_type=jnp.float32)
    return (y * scale.astype(jnp.float32)).astype(x2.dtype)


def conv_border_term(spatial_shape, kernel, strides, pads):
    """conv(B, sum_c W) [1, H', W', O]: B = 1 on the padded border, 0 inside (one input channel).

    ``kernel`` HWIO (per group: summing over I is right for grouped convolutions too, since every
    input channel of a group is padded with the same value).
    """
    inside = jnp.ones((1, *spatial_shape, 1), kernel.dtype)
    border = 1.0 - jnp.pad(inside, [(0, 0), *pads, (0, 0)])
    return lax.conv_general_dilated(
        border, jnp.sum(kernel, axis=2, keepdims=True), window_strides=strides, padding="VALID", dimension_numbers=DN
    )


def padded_conv(x, kernel, *, strides, pads, pad_value: float = 0.0, feature_group_count: int = 1):
    """NHWC ``x`` padded with ``pad_value`` by ``pads`` ((top, bottom), (left, right)), convolved
    with HWIO ``kernel``: XLA's self-padding convolution plus the border term (module docstring)."""
    pads = [tuple(p) for p in pads]
    y = lax.conv_general_dilated(
        x, kernel, window_strides=strides, padding=pads, dimension_numbers=DN, feature_group_count=feature_group_count
    )
    if pad_value != 0 and any(map(any, pads)):
        y = y + pad_value * conv_border_term(x.shape[1:3], kernel, strides, pads)
    return y
