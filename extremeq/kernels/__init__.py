"""Bit-packed kernels for 1-bit and ternary inference (one file per kernel, each with its
plain-jnp reference). Kernels know nothing of models: arrays in, arrays out.

Public functions (every one takes ``backend=``):

==========================================================  =====================================
``xnor_matmul(a_bits, b_bits, k, *, alpha_x, alpha_w)``    A [M, W], B [N, W] uint32 (W =
                                                            ceil(K/32), both packed along K) ->
                                                            int32 [M, N] = K - 2 popcount(A ^ B),
                                                            the exact +-1 product A B^T; float32
                                                            ``C * alpha_x[:, None] * alpha_w``
                                                            when scales are given.
``xnor_linear(x, w_bits, alpha)``                           XNOR-Net dense layer: float x [..., K]
                                                            -> ``(sign x . sign w) beta alpha``,
                                                            beta = mean|x| per row.
``xnor_conv(x, w_bits, alpha, *, kernel_size, strides,      XNOR-Net binary conv, NHWC float x ->
padding)``                                                  ``conv(sign x, sign W) * K * alpha``
                                                            (K-map from |x|), float32.
``binary_weight_matmul(x, w_bits, alpha)``                  float x [..., K], sign weights [N,
                                                            ceil(K/32)] -> x (alpha sign W)^T.
``ternary_weight_matmul(x, w_2bit, alpha)``                 float x [..., K], ternary weights [N,
                                                            ceil(K/16)] -> x (alpha t)^T
                                                            (``alpha_neg``: TTQ's W_n on -1).
``packed_conv(x, w, alpha, *, weight_format, kernel_size,   conv of x padded with ``pad_value``
strides, padding, pad_value, binary_inputs)``               and alpha decode(W) (binary or
                                                            ternary filters); ``backend="auto"``
                                                            picks the path per platform.
==========================================================  =====================================

Weights for inference (from a layer's latent or quantized kernel):
``pack_binary_weights(kernel [K, N]) -> (w_bits [N, W], alpha [N])``,
``pack_ternary_weights(q [K, N]) -> (w_2bit [N, W2], alpha [N])``,
``pack_conv_weights(kernel HWIO) -> w_bits [O, W]`` with ``conv_alpha(kernel) -> [O]``.

Layout: one public entry per operation (``xnor_matmul.py``, ``binary_weight_matmul.py``,
``ternary_weight_matmul.py``, ``xnor_conv.py``, ``packed_conv.py``); the Pallas kernels in ``gpu/``
(Triton) and ``tpu/`` (Mosaic), each a kernel body and one ``pallas_call`` wrapper with block sizes
as keyword arguments; the plain-XLA paths in ``xla.py``; the references in ``reference.py``; the
one backend resolver (``backends.py``, its ``AUTO`` table says what ``backend="auto"`` runs per
platform) and the one table of tile configurations (``tiles.py``, ``BlockSizes``).

Backends: ``"auto"`` picks the fastest measured path for the platform (GPU/TPU: the Pallas
kernel; CPU: XLA, see BENCHMARKS.md); ``"pallas"`` the fused kernel (Triton on GPU, Mosaic
on TPU; on CPU it warns with :class:`KernelFallbackWarning` and uses the CPU path);
``"interpret"`` the Pallas kernel body under the interpreter (CPU tests); ``"xla_popcount"``
(XNOR kernels only) and ``"dot"`` (unpack in XLA, then one dot). ``packed_conv`` chooses among
``"conv"``, ``"patches"`` and ``"xnor"``. Pallas tile options (``block_m``, ``block_n``,
``block_words``, ``num_warps``, ``num_stages``, ``split_k``; XNOR also ``slice_dtype``) are keyword
arguments of the public functions; the GPU tiles checked for exactness are
``tiles.XNOR_GPU_TILES`` and ``tiles.WEIGHT_ONLY_GPU_TILES``.

The K contract: packed words carry no length. Every entry takes the unpacked K explicitly
(``xnor_matmul(..., k)``; ``k=`` for the weight-only matmuls and ``xnor_linear``; ``in_features=``
for the convolutions) and refuses inputs whose K differs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from extremeq import quantizers as Q
from extremeq.kernels.backends import BACKENDS, KernelFallbackWarning
from extremeq.kernels.binary_weight_matmul import binary_weight_matmul, binary_weight_matmul_reference
from extremeq.kernels.packed_conv import packed_conv, packed_conv_reference
from extremeq.kernels.ternary_weight_matmul import ternary_weight_matmul, ternary_weight_matmul_reference
from extremeq.kernels.xnor_conv import conv_alpha, pack_conv_weights, xnor_conv, xnor_conv_reference, xnor_kmap
from extremeq.kernels.xnor_matmul import (
    xnor_linear,
    xnor_linear_reference,
    xnor_matmul,
    xnor_matmul_reference,
)
from extremeq.packing import pack_signs, pack_ternary

__all__ = [
    "BACKENDS",
    "KernelFallbackWarning",
    "xnor_matmul",
    "xnor_matmul_reference",
    "xnor_linear",
    "xnor_linear_reference",
    "xnor_conv",
    "xnor_conv_reference",
    "xnor_kmap",
    "binary_weight_matmul",
    "binary_weight_matmul_reference",
    "ternary_weight_matmul",
    "ternary_weight_matmul_reference",
    "packed_conv",
    "packed_conv_reference",
    "pack_binary_weights",
    "pack_ternary_weights",
    "pack_conv_weights",
    "conv_alpha",
]


def pack_binary_weights(kernel):
    """Dense kernel [K, N] (Flax layout) -> (w_bits uint32 [N, ceil(K/32)], alpha float32 [N]).

    w_bits holds sign(W) per output channel (sign(0) = +1); ``alpha = mean_k |W[k, n]|``
    (BWN / XNOR-Net, Rastegari et al., 2016, Eq. 4). For an already quantized kernel
    ``alpha * sign(W)`` this returns the same alpha back.
    """
    kernel = jnp.asarray(kernel)
    if kernel.ndim != 2 or not jnp.issubdtype(kernel.dtype, jnp.floating):
        raise ValueError(f"pack_binary_weights needs a float [K, N] kernel, got {kernel.dtype} {kernel.shape}.")
    return _binary_parts(kernel)


@jax.jit
def _binary_parts(kernel):
    return pack_signs(kernel.T, axis=-1), Q.bwn_scale(kernel.astype(jnp.float32), per_channel=True)[0]


def pack_ternary_weights(q):
    """Quantized ternary kernel [K, N] with column n in {-a_n, 0, +a_n} (TWN, BitNet b1.58)
    -> (w_2bit uint32 [N, ceil(K/16)], alpha float32 [N] = a_n).

    Integer input in {-1, 0, 1} gives alpha = 1. TTQ kernels (two scales W_p != W_n) raise:
    pack their positive and negative parts separately.
    """
    q = jnp.asarray(q)
    if q.ndim != 2:
        raise ValueError(f"pack_ternary_weights needs a [K, N] kernel, got shape {q.shape}.")
    words, alpha, ok, asym = _ternary_parts(q)
    try:
        ok, asym = bool(ok), bool(asym)
    except jax.errors.ConcretizationTypeError:  # traced: the check happens only on concrete values
        ok = True
    if not ok:
        hint = (
            " Its columns have different positive and negative scales (TTQ): pack the "
            "positive and negative parts as two ternary kernels."
            if asym
            else " Quantize first (e.g. the layer's quantized_kernel())."
        )
        raise ValueError("pack_ternary_weights needs columns with values in {-a, 0, +a}." + hint)
    return words, alpha


@jax.jit
def _ternary_parts(q):
    qf = q.astype(jnp.float32)
    mags = jnp.abs(qf)
    alpha = jnp.max(mags, axis=0)
    tol = 1e-6 * jnp.maximum(alpha, 1e-30)
    ok = jnp.all((mags == 0) | (jnp.abs(mags - alpha) <= tol))
    pos = jnp.where(qf > 0, qf, 0.0).max(axis=0)
    neg = jnp.where(qf < 0, -qf, 0.0).max(axis=0)
    asym = jnp.any((pos > 0) & (neg > 0) & (jnp.abs(pos - neg) > tol))
    return pack_ternary(jnp.sign(qf).astype(jnp.int8).T, axis=-1), alpha, ok, asym
