"""Per-method facts of the exporter, in ONE place: which packed-weight kind each weight quantizer
becomes and how its trained weights are packed.

==========================================================================================
THE PER-METHOD TABLE. Everything the inference package knows about individual quantization
methods is in this module (``WEIGHT_KINDS`` and ``pack_weights``); the layers, the file format and
``export`` only see the typed :mod:`~extremeq.inference.weights`. When the method registry lands,
these two names are what it replaces.
==========================================================================================

Packing reads the eval-mode quantized kernel Q_w(W) (the exact values of the training forward):

* bc, bc_stochastic, bwn: sign(Q_w(W)) as 1-bit words; bwn's alpha = max |Q_w(W)| (its entries are
  +-alpha, per channel or tensor); bc has none.
* twn, bitnet: T = sign(Q_w(W)) as 2-bit codes, alpha = max |Q_w(W)|.
* ttq: T from the latent W and TTQ's threshold (:func:`extremeq.quantizers.ttq_threshold`,
  :func:`~extremeq.quantizers.ternary_codes`), and the layer's W_p, W_n.
* int8: codes round(W / s) clipped to [-127, 127], s = :func:`extremeq.quantizers.int8_scale`.
* fp: W itself.
"""

from __future__ import annotations

import warnings

import jax.numpy as jnp
import numpy as np

from extremeq import quantizers as Q
from extremeq.inference.weights import (
    BinaryWeights,
    FloatWeights,
    Int8Weights,
    PackedWeights,
    TernaryWeights,
    TTQWeights,
)
from extremeq.packing import np_pack_bits_reference, pack_ternary

#: Weight quantizer name -> packed-weight kind.
WEIGHT_KINDS: dict[str, type[PackedWeights]] = {
    "bc": BinaryWeights,
    "bc_stochastic": BinaryWeights,
    "bwn": BinaryWeights,
    "twn": TernaryWeights,
    "bitnet": TernaryWeights,
    "ttq": TTQWeights,
    "int8": Int8Weights,
    "fp": FloatWeights,
}


def weight_kind(name: str) -> type[PackedWeights]:
    """The packed-weight class of a weight quantizer name (as stored in a file's layer config)."""
    try:
        return WEIGHT_KINDS[name]
    except KeyError:
        raise ValueError(f"weight quantizer {name!r} has no packed form; known: {sorted(WEIGHT_KINDS)}") from None


def _rows(q, is_conv: bool) -> np.ndarray:
    """Kernel [K, N] or HWIO -> [N, K] rows in the packing order of the kernels."""
    q = np.asarray(q)
    if is_conv:
        kh, kw, c, o = q.shape
        return q.transpose(3, 2, 0, 1).reshape(o, c * kh * kw)
    return q.T


def _scale_from(q, per_channel: bool):
    """alpha of a kernel whose entries are in {-alpha, 0, +alpha} (per output channel or tensor)."""
    q = np.abs(np.asarray(q, np.float32))
    return q.reshape(-1, q.shape[-1]).max(axis=0) if per_channel else q.max()


def pack_weights(spec, latent, quantized, *, is_conv: bool, ttq_scales=None) -> PackedWeights:
    """The packed weights of one layer.

    Args:
      spec: the layer's weight QuantizerSpec (name and options).
      latent: the latent float kernel W ([K, N] or HWIO); quantized: Q_w(W) in eval mode.
      is_conv: HWIO kernel (packed along c*kh*kw) or dense [K, N].
      ttq_scales: (W_p, W_n) for ttq.
    """
    kind = weight_kind(spec.name)
    w = np.asarray(latent, np.float32)
    if kind is BinaryWeights:
        if spec.name == "bc_stochastic" and spec.option("eval", "sign") == "mean":
            warnings.warn("export: a bc_stochastic layer evaluated with stochastic_eval='mean' (real-valued "
                          "weights) is packed as its deterministic sign, the 1-bit net; its predictions follow "
                          "that net, not the 'mean' evaluation", stacklevel=4)
            q = np.asarray(Q.binary_connect(jnp.asarray(w)), np.float32)
        else:
            q = np.asarray(quantized, np.float32)
        words = np_pack_bits_reference(np.ascontiguousarray(_rows(q, is_conv) >= 0)).astype(np.uint32)
        alpha = _scale_from(q, spec.option("per_channel", True)) if spec.name == "bwn" else None
        return BinaryWeights(words=words, alpha=alpha)
    if kind is TernaryWeights:
        q = np.asarray(quantized, np.float32)
        words = np.asarray(pack_ternary(np.sign(_rows(q, is_conv)).astype(np.int8)))
        per_channel = spec.name == "twn" and spec.option("per_channel", False)
        return TernaryWeights(words=words, alpha=_scale_from(q, per_channel))
    if kind is TTQWeights:
        delta = Q.ttq_threshold(jnp.asarray(w), spec.option("t", Q.TTQ_THRESHOLD_FACTOR))
        t = np.asarray(Q.ternary_codes(jnp.asarray(w), delta)).astype(np.int8)
        w_p, w_n = ttq_scales
        return TTQWeights(words=np.asarray(pack_ternary(_rows(t, is_conv))), w_p=np.asarray(w_p, np.float32),
                          w_n=np.asarray(w_n, np.float32))
    if kind is Int8Weights:
        per_channel = spec.option("per_channel", True)
        axes = tuple(range(w.ndim - 1)) if per_channel else None
        s = Q.int8_scale(jnp.asarray(w), axes, keepdims=per_channel)  # as quantizers.int8 computes it
        codes = np.asarray(jnp.clip(jnp.round(w / s), -Q.INT8_MAX, Q.INT8_MAX).astype(jnp.int8))
        scale = np.asarray(s, np.float32).reshape(-1) if per_channel else np.asarray(s, np.float32)
        return Int8Weights(codes=codes, scale=scale)
    return FloatWeights(w=w)
