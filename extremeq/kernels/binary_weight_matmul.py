"""Weight-only 1-bit matmul: float activations times packed sign weights.

    y[m, n] = alpha[n] * sum_k x[m, k] * sign(W)[n, k]

the BinaryConnect / BWN forward (Courbariaux et al., 2015; Rastegari et al., 2016,
Eq. 4 with alpha = mean|W| per output channel). ``w_bits`` [N, ceil(K/32)] holds
sign(W) packed along K (bit 1 = +1, format of :mod:`extremeq.packing`); the Pallas
kernel decodes bit i of each word to +-1 in registers (see
:mod:`extremeq.kernels._weight_only`) and never writes the unpacked matrix.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from extremeq.kernels._weight_only import weight_only_matmul
from extremeq.packing import WORD_BITS, unpack_signs

__all__ = ["binary_weight_matmul", "binary_weight_matmul_reference", "decode_sign_slot"]


def decode_sign_slot(words, i: int):
    """Slot ``i`` (bit i) of every word as +-1 int32."""
    bit = lax.shift_right_logical(words, jnp.uint32(i)) & jnp.uint32(1)
    return bit.astype(jnp.int32) * 2 - 1


def _unpack(w_bits, k, dtype):
    return unpack_signs(w_bits, k, axis=-1, dtype=dtype)


def binary_weight_matmul_reference(x, w_bits, alpha):
    """Dequantize then dot: ``x @ (alpha[:, None] * unpack_signs(w_bits)).T`` in float32."""
    x = jnp.asarray(x, jnp.float32)
    wq = unpack_signs(w_bits, x.shape[-1], axis=-1, dtype=jnp.float32) * jnp.asarray(alpha, jnp.float32)[:, None]
    return jnp.dot(x, wq.T, precision=lax.Precision.HIGHEST)


def binary_weight_matmul(x, w_bits, alpha, *, backend: str = "auto", **block_kwargs):
    """``x @ (alpha * sign(W)).T`` with sign(W) bit-packed.

    Args:
      x: float32 / bfloat16 [..., K] activations.
      w_bits: uint32 [N, ceil(K/32)], sign(W) of each output channel packed along K
        (:func:`extremeq.kernels.pack_binary_weights` builds it from a [K, N] kernel).
      alpha: float [N] per-output-channel scale (or a scalar).
      backend: "auto" | "pallas" | "interpret" | "dot" (unpack in XLA, then dot).
      **block_kwargs: block_m, block_n, block_words, num_warps, num_stages (Pallas only).

    Returns:
      [..., N] in x's dtype (accumulated in float32).
    """
    return weight_only_matmul("binary_weight_matmul", x, w_bits, alpha, per_word=WORD_BITS,
                              decode=decode_sign_slot, unpack=_unpack, backend=backend,
                              block_kwargs=block_kwargs)
