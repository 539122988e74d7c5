"""Weight-only ternary (2-bit) matmul: float activations times packed {-1, 0, +1} weights.

    y[m, n] = alpha[n] * sum_k x[m, k] * t[n, k],   t in {-1, 0, +1}

the TWN / TTQ / BitNet b1.58 inference forward (Li et al., 2016; Zhu et al., 2017 with a
single scale per channel; Ma et al., 2024). ``w_2bit`` [N, ceil(K/16)] holds t packed
along K, 16 codes per uint32 (00 = 0, 01 = +1, 11 = -1; format of
:mod:`extremeq.packing`). The Pallas kernel decodes slot i (bits 2i, 2i+1) in registers
and never writes the unpacked matrix. TTQ's two scales (W_p, W_n) do not fit one alpha:
split t into its positive and negative parts and call twice, or dequantize.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from extremeq.kernels._weight_only import weight_only_matmul
from extremeq.packing import TERNARY_PER_WORD, unpack_ternary

__all__ = ["ternary_weight_matmul", "ternary_weight_matmul_reference", "decode_ternary_slot"]


def decode_ternary_slot(words, i: int):
    """Slot ``i`` (bits 2i, 2i+1) of every word as int32 in {-1, 0, +1}: low bit = nonzero,
    high bit = negative."""
    code = lax.shift_right_logical(words, jnp.uint32(2 * i)) & jnp.uint32(3)
    code = code.astype(jnp.int32)
    return (code & 1) * (1 - (code >> 1) * 2)


def _unpack(w_2bit, k, dtype):
    return unpack_ternary(w_2bit, k, axis=-1, dtype=dtype)


def ternary_weight_matmul_reference(x, w_2bit, alpha):
    """Dequantize then dot: ``x @ (alpha[:, None] * unpack_ternary(w_2bit)).T`` in float32."""
    x = jnp.asarray(x, jnp.float32)
    wq = unpack_ternary(w_2bit, x.shape[-1], axis=-1, dtype=jnp.float32) * jnp.asarray(alpha, jnp.float32)[:, None]
    return jnp.dot(x, wq.T, precision=lax.Precision.HIGHEST)


def ternary_weight_matmul(x, w_2bit, alpha, *, backend: str = "auto", **block_kwargs):
    """``x @ (alpha * t).T`` with ternary t packed 2 bits per weight.

    Args:
      x: float32 / bfloat16 [..., K] activations.
      w_2bit: uint32 [N, ceil(K/16)], t of each output channel packed along K
        (:func:`extremeq.kernels.pack_ternary_weights` builds it from a [K, N] kernel).
      alpha: float [N] per-output-channel scale (or a scalar).
      backend: "auto" | "pallas" | "interpret" | "dot" (unpack in XLA, then dot).
      **block_kwargs: block_m, block_n, block_words, num_warps, num_stages (Pallas only).

    Returns:
      [..., N] in x's dtype (accumulated in float32).
    """
    return weight_only_matmul("ternary_weight_matmul", x, w_2bit, alpha, per_word=TERNARY_PER_WORD,
                              decode=decode_ternary_slot, unpack=_unpack, backend=backend,
                              block_kwargs=block_kwargs)
