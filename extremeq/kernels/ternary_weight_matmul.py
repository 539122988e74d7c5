"""Weight-only ternary (2-bit) matmul: float activations times packed {-1, 0, +1} weights.

    y[m, n] = alpha[n] * sum_k x[m, k] * t[n, k],   t in {-1, 0, +1}

the TWN / BitNet b1.58 inference forward (Li et al., 2016; Ma et al., 2024); with
``alpha_neg`` the -1 codes take their own scale, TTQ's ``W_p t_+ - W_n t_-`` (Zhu et al.,
2017), computed as two single-scale products over the +1 and -1 codes
(:func:`extremeq.packing.split_ternary`). ``w_2bit`` [N, ceil(K/16)] holds t packed along K,
16 codes per uint32 (00 = 0, 01 = +1, 11 = -1; format of :mod:`extremeq.packing`). The Pallas
kernel decodes slot i (bits 2i, 2i+1) in registers and never writes the unpacked matrix.
"""

from __future__ import annotations

from extremeq.kernels.reference import ternary_weight_matmul_reference
from extremeq.kernels.slots import decode_ternary_slot
from extremeq.kernels.weight_only import weight_only_matmul
from extremeq.packing import TERNARY_PER_WORD, split_ternary, unpack_ternary

__all__ = ["ternary_weight_matmul", "ternary_weight_matmul_reference", "decode_ternary_slot"]


def _unpack(w_2bit, k, dtype):
    return unpack_ternary(w_2bit, k, axis=-1, dtype=dtype)


def ternary_weight_matmul(
    x, w_2bit, alpha, *, alpha_neg=None, k: int | None = None, backend: str = "auto", **block_kwargs
):
    """``x @ (alpha * t).T`` with ternary t packed 2 bits per weight.

    Args:
      x: float32 / bfloat16 [..., K] activations.
      w_2bit: uint32 [N, ceil(K/16)], t of each output channel packed along K
        (:func:`extremeq.kernels.pack_ternary_weights` builds it from a [K, N] kernel).
      alpha: float [N] per-output-channel scale (or a scalar): the scale of the +1 codes, and of
        the -1 codes too unless ``alpha_neg`` is given.
      alpha_neg: float [N] or scalar, the scale of the -1 codes (TTQ's W_n), or None.
      k: the K the weights were packed from; x's K must equal it (None: x's K).
      backend: "auto" | "pallas" | "interpret" | "dot" (unpack in XLA, then dot).
      **block_kwargs: block_m, block_n, block_words, num_warps, num_stages, split_k (Pallas only).

    Returns:
      [..., N] in x's dtype (accumulated in float32).
    """

    def run(words, scale):
        return weight_only_matmul(
            "ternary_weight_matmul",
            x,
            words,
            scale,
            per_word=TERNARY_PER_WORD,
            decode=decode_ternary_slot,
            unpack=_unpack,
            k=k,
            backend=backend,
            block_kwargs=block_kwargs,
        )

    if alpha_neg is None:
        return run(w_2bit, alpha)
    pos, neg = split_ternary(w_2bit)
    return run(pos, alpha) + run(neg, alpha_neg)
