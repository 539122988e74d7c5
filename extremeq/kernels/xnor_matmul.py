"""XNOR-popcount matrix product of two bit-packed +-1 operands: the public entries.

For rows ``a, b`` in {-1, +1}^K stored as bits (1 = +1, 0 = -1; format of
:mod:`extremeq.packing`), the XNOR-Net identity (Rastegari et al., 2016, Sec. 3.2)

    a . b = K - 2 * popcount(a_bits XOR b_bits)

gives the +-1 dot product from K/32 word operations. :func:`xnor_matmul` returns

    C[m, n] = K - 2 * sum_w popcount(A[m, w] ^ B[n, w])          (int32, exact)

and, with the XNOR-Net scales, ``C[m, n] * alpha_x[m] * alpha_w[n]`` (float32).
:func:`xnor_linear` is XNOR-Net's dense layer on top of it.

Paths (``backend=``, resolved by :mod:`extremeq.kernels.backends`): ``pallas`` / ``interpret``
(:mod:`extremeq.kernels.gpu.xnor_matmul`, :mod:`extremeq.kernels.tpu.xnor_matmul`),
``xla_popcount`` and ``dot`` (:mod:`extremeq.kernels.xla`); references in
:mod:`extremeq.kernels.reference`.

The K contract: packed words carry no length, so ``k`` (the unpacked length of both operands)
is an explicit argument everywhere; bits past ``k`` are masked and never count.
"""

from __future__ import annotations

import math

import jax.numpy as jnp

from extremeq import quantizers as Q
from extremeq.kernels import common as C
from extremeq.kernels.backends import auto_tiles, pallas_target, resolve
from extremeq.kernels.gpu.xnor_matmul import xnor_matmul_gpu
from extremeq.kernels.reference import xnor_linear_reference, xnor_matmul_reference
from extremeq.kernels.tpu.xnor_matmul import xnor_matmul_tpu
from extremeq.kernels.xla import xnor_matmul_dot, xnor_matmul_xla_popcount
from extremeq.packing import num_words, pack_signs

__all__ = [
    "xnor_matmul",
    "xnor_matmul_reference",
    "xnor_linear",
    "xnor_linear_reference",
    "xnor_product",
    "resolve_xnor_backend",
]


def resolve_xnor_backend(op: str, backend: str, block_kwargs, shape=None) -> tuple[str, dict]:
    """(backend, tile options) of an XNOR operation on (M, N, K) = ``shape``; tile options off the
    Pallas paths are refused."""
    resolved = resolve(op, backend, "xnor_matmul", shape=shape)
    if block_kwargs and resolved not in ("pallas", "interpret"):
        raise ValueError(f"{op}: block options {sorted(block_kwargs)} apply only to Pallas backends, not {resolved!r}.")
    return resolved, auto_tiles("xnor_matmul", backend, block_kwargs, shape)


def xnor_matmul(a_bits, b_bits, k: int, *, alpha_x=None, alpha_w=None, backend: str = "auto", **block_kwargs):
    """+-1 matrix product of packed operands: ``K - 2 popcount(A xor B)``.

    Args:
      a_bits: uint32 [M, ceil(K/32)], rows of A packed along K (``pack_signs(A, axis=-1)``).
      b_bits: uint32 [N, ceil(K/32)], rows of B packed along K.
      k: K, the unpacked length both operands were packed from (bits beyond K never count).
        Words carry no length: a wrong k with the same word count cannot be detected here.
      alpha_x, alpha_w: optional XNOR-Net scales, per row of A [M] and per row of B [N]
        (a missing one counts as 1). With either given the result is float32
        ``C[m, n] * alpha_x[m] * alpha_w[n]``.
      backend: "auto" | "pallas" | "interpret" | "xla_popcount" | "dot".
      **block_kwargs: Pallas tile options (block_m, block_n, block_words, num_warps,
        num_stages, slice_dtype, split_k; :mod:`extremeq.kernels.tiles`).

    Returns:
      int32 [M, N] equal to ``A_pm1 @ B_pm1.T`` exactly, or float32 with scales.
    """
    C.check_words("a_bits", a_bits)
    C.check_words("b_bits", b_bits)
    k = int(k)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}.")
    w = num_words(k)
    if a_bits.shape[1] != w or b_bits.shape[1] != w:
        raise ValueError(
            f"a_bits has {a_bits.shape[1]} words per row and b_bits {b_bits.shape[1]}; "
            f"k={k} needs ceil(k/32) = {w} in both (pack both along K with pack_signs(., axis=-1))."
        )
    m, n = a_bits.shape[0], b_bits.shape[0]
    if alpha_x is not None or alpha_w is not None:
        alpha_x = C.check_scale("alpha_x", 1.0 if alpha_x is None else alpha_x, m)
        alpha_w = C.check_scale("alpha_w", 1.0 if alpha_w is None else alpha_w, n)
    backend, block_kwargs = resolve_xnor_backend("xnor_matmul", backend, block_kwargs, (m, n, k))
    return xnor_product(
        a_bits, b_bits, alpha_x, alpha_w, k=k, backend=backend, block_items=tuple(sorted(block_kwargs.items()))
    )


@C.backend_jit(("k", "backend", "block_items"))
def xnor_product(a_bits, b_bits, alpha_x, alpha_w, *, k, backend, block_items):
    """The checked product, backend already resolved (for entries built on it: xnor_linear,
    xnor_conv). ``block_items``: the tile options as a sorted tuple of (name, value) pairs."""
    a_bits = C.mask_padding_bits(a_bits, k)
    b_bits = C.mask_padding_bits(b_bits, k)
    if backend in ("pallas", "interpret"):
        if pallas_target(backend) == "tpu":
            return xnor_matmul_tpu(a_bits, b_bits, alpha_x, alpha_w, k=k, **dict(block_items))
        return xnor_matmul_gpu(
            a_bits, b_bits, alpha_x, alpha_w, k=k, interpret=backend == "interpret", **dict(block_items)
        )
    if backend == "xla_popcount":
        c = xnor_matmul_xla_popcount(a_bits, b_bits, k=k)
    else:
        c = xnor_matmul_dot(a_bits, b_bits, k=k)
    if alpha_x is not None:
        return c.astype(jnp.float32) * alpha_x[:, None] * alpha_w[None, :]
    return c


def xnor_linear(x, w_bits, alpha, *, k: int | None = None, backend: str = "auto", **block_kwargs):
    """XNOR-Net dense layer: binarise inputs and weights, XNOR-popcount, rescale.

    ``y[m, n] = (sign(x_m) . sign(w_n)) * beta_m * alpha_n`` with ``beta_m = mean_k |x[m, k]|``
    (Rastegari et al., 2016, Sec. 3.2; :func:`extremeq.quantizers.xnor_activation_scale`). ``x``
    [..., K] float; ``w_bits`` [N, ceil(K/32)] from :func:`extremeq.kernels.pack_binary_weights`;
    ``alpha`` [N]; ``k``: the K the weights were packed from (x's K must equal it; None: x's K).
    Returns float32 [..., N].
    """
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"xnor_linear needs float inputs, got dtype {x.dtype}.")
    C.check_words("w_bits", w_bits)
    kx = x.shape[-1]
    C.check_k("xnor_linear", kx, k, w_bits.shape[1], C.WORD_BITS)
    alpha = C.check_scale("alpha", alpha, w_bits.shape[0])
    shape = (math.prod(x.shape[:-1]), w_bits.shape[0], kx)
    backend, block_kwargs = resolve_xnor_backend("xnor_linear", backend, block_kwargs, shape)
    return _xnor_linear(x, w_bits, alpha, backend=backend, block_items=tuple(sorted(block_kwargs.items())))


@C.backend_jit(("backend", "block_items"))
def _xnor_linear(x, w_bits, alpha, *, backend, block_items):
    lead, k = x.shape[:-1], x.shape[-1]
    x2 = x.reshape(math.prod(lead), k).astype(jnp.float32)
    beta = Q.xnor_activation_scale(x2)[:, 0]
    y = xnor_product(
        pack_signs(x2, axis=-1), w_bits, beta, alpha.astype(jnp.float32), k=k, backend=backend, block_items=block_items
    )
    return y.reshape(*lead, -1)
