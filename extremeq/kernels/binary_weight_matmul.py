"""Weight-only 1-bit matmul: float activations times packed sign weights.

    y[m, n] = alpha[n] * sum_k x[m, k] * sign(W)[n, k]

the BinaryConnect / BWN forward (Courbariaux et al., 2015; Rastegari et al., 2016,
Eq. 4 with alpha = mean|W| per output channel). ``w_bits`` [N, ceil(K/32)] holds
sign(W) packed along K (bit 1 = +1, format of :mod:`extremeq.packing`); the Pallas
kernel decodes bit i of each word to +-1 in registers (:mod:`extremeq.kernels.slots`)
and never writes the unpacked matrix.
"""

from __future__ import annotations

from extremeq.kernels.reference import binary_weight_matmul_reference
from extremeq.kernels.slots import decode_sign_slot
from extremeq.kernels.weight_only import weight_only_matmul
from extremeq.packing import WORD_BITS, unpack_signs

__all__ = ["binary_weight_matmul", "binary_weight_matmul_reference", "decode_sign_slot"]


def _unpack(w_bits, k, dtype):
    return unpack_signs(w_bits, k, axis=-1, dtype=dtype)


def binary_weight_matmul(x, w_bits, alpha, *, k: int | None = None, backend: str = "auto", **block_kwargs):
    """``x @ (alpha * sign(W)).T`` with sign(W) bit-packed.

    Args:
      x: float32 / bfloat16 [..., K] activations.
      w_bits: uint32 [N, ceil(K/32)], sign(W) of each output channel packed along K
        (:func:`extremeq.kernels.pack_binary_weights` builds it from a [K, N] kernel).
      alpha: float [N] per-output-channel scale (or a scalar).
      k: the K the weights were packed from; x's K must equal it (words carry no length, so
        K = 40 against weights packed from K = 33, both 2 words, is caught only here).
        None: x's K, unchecked beyond the word count.
      backend: "auto" | "pallas" | "interpret" | "dot" (unpack in XLA, then dot).
      **block_kwargs: block_m, block_n, block_words, num_warps, num_stages, split_k (Pallas only).

    Returns:
      [..., N] in x's dtype (accumulated in float32).
    """
    return weight_only_matmul(
        "binary_weight_matmul",
        x,
        w_bits,
        alpha,
        per_word=WORD_BITS,
        decode=decode_sign_slot,
        unpack=_unpack,
        k=k,
        backend=backend,
        block_kwargs=block_kwargs,
    )
