"""Typed packed weights: one frozen dataclass per packed-weight kind, each with its forward.

==================  =========================================  ===================================
kind                stored (file names)                         forward (``extremeq.kernels``)
==================  =========================================  ===================================
BinaryWeights       ``w``: sign(W) as 1-bit words [N, ceil(K/32)]  ``binary_weight_matmul``,
                    (bit 1 = +1), ``alpha``: float32 per output  ``packed_conv``; with binary
                    channel or tensor (BWN), absent for BC           inputs ``xnor_matmul``
TernaryWeights      ``w``: T(W) in {-1,0,+1} as 2-bit words      ``ternary_weight_matmul``,
                    [N, ceil(K/16)], ``alpha`` (float32)         ``packed_conv``
TTQWeights          ``w``: T(W) as 2-bit words, ``ttq_wp``,      the same with W_n on the -1 codes
                    ``ttq_wn`` (TTQ's W_p, W_n)                  (``alpha_neg``)
Int8Weights         ``w``: int8 codes [K, N] (HWIO for convs),   dequantize s * codes, float dot
                    ``alpha``: float32 scales s                  (exactly the training forward)
FloatWeights        ``w``: the float32 kernel                    float dot / conv
==================  =========================================  ===================================

K is in_features for a dense layer and kh*kw*Cin for a convolution, packed in the order of
``lax.conv_general_dilated_patches`` (``c*kh*kw + dh*kw + dw``). Inputs reach ``matmul`` / ``conv``
already through the layer's input quantizer.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Mapping

import jax.numpy as jnp
import numpy as np

from extremeq import kernels as K
from extremeq.kernels.xla import padded_conv
from extremeq.packing import pack_signs

Array = Any


@dataclasses.dataclass(frozen=True)
class PackedWeights:
    """Base of the packed-weight kinds. ``FIELDS``: dataclass field -> array name in the file."""

    FIELDS: ClassVar[dict[str, str]] = {}

    def arrays(self) -> dict[str, Array]:
        """The arrays to store, by their names in the file (absent optional ones left out)."""
        return {name: getattr(self, f) for f, name in self.FIELDS.items() if getattr(self, f) is not None}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, Array]) -> "PackedWeights":
        return cls(**{f: arrays.get(name) for f, name in cls.FIELDS.items()})

    def matmul(self, x, *, k: int):
        """x [..., K] (input-quantized) times the weights -> [..., N]."""
        raise NotImplementedError

    def conv(self, x, *, shape, strides, pads, pad_value, feature_group_count, binary_inputs):
        """NHWC x (input-quantized), padded with ``pad_value``, convolved with the weights of HWIO
        ``shape`` -> [B, H', W', O]."""
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class _BitPacked(PackedWeights):
    """Binary or ternary words with one scale for both signs (or none: 1)."""

    FORMAT: ClassVar[str] = ""

    def scale(self):
        raise NotImplementedError

    def scale_neg(self):
        return None

    def conv(self, x, *, shape, strides, pads, pad_value, feature_group_count, binary_inputs):
        if feature_group_count != 1:
            raise ValueError("packed binary/ternary convolutions support feature_group_count=1 only")
        kh, kw, c, _ = shape
        return K.packed_conv(x, self.words, self.scale(), alpha_neg=self.scale_neg(), weight_format=self.FORMAT,
                             kernel_size=(kh, kw), strides=strides, padding=pads, pad_value=pad_value,
                             binary_inputs=binary_inputs, in_features=c)


@dataclasses.dataclass(frozen=True)
class BinaryWeights(_BitPacked):
    """sign(Q_w(W)) as 1-bit words, alpha (BWN) or none (BinaryConnect)."""

    FORMAT: ClassVar[str] = "binary"
    FIELDS: ClassVar[dict[str, str]] = {"words": "w", "alpha": "alpha"}
    words: Array = None
    alpha: Array | None = None

    def scale(self):
        return 1.0 if self.alpha is None else self.alpha

    def matmul(self, x, *, k: int):
        return K.binary_weight_matmul(x, self.words, self.scale(), k=k)

    def xnor_matmul(self, x_signs, *, k: int):
        """+-1 inputs [..., K] against the sign words: exact XNOR-popcount, times alpha."""
        lead = x_signs.shape[:-1]
        x2 = x_signs.reshape(-1, k)
        y = K.xnor_matmul(pack_signs(x2, axis=-1), self.words, k, alpha_w=self.scale())
        return y.reshape(*lead, self.words.shape[0])


@dataclasses.dataclass(frozen=True)
class TernaryWeights(_BitPacked):
    """T(Q_w(W)) as 2-bit codes and one scale per tensor or output channel (TWN, BitNet b1.58)."""

    FORMAT: ClassVar[str] = "ternary"
    FIELDS: ClassVar[dict[str, str]] = {"words": "w", "alpha": "alpha"}
    words: Array = None
    alpha: Array = None

    def scale(self):
        return self.alpha

    def matmul(self, x, *, k: int):
        return K.ternary_weight_matmul(x, self.words, self.alpha, k=k)


@dataclasses.dataclass(frozen=True)
class TTQWeights(_BitPacked):
    """TTQ's codes as 2-bit words, W_p on the +1 codes and W_n on the -1 codes (Zhu et al., 2017)."""

    FORMAT: ClassVar[str] = "ternary"
    FIELDS: ClassVar[dict[str, str]] = {"words": "w", "w_p": "ttq_wp", "w_n": "ttq_wn"}
    words: Array = None
    w_p: Array = None
    w_n: Array = None

    def scale(self):
        return self.w_p

    def scale_neg(self):
        return self.w_n

    def matmul(self, x, *, k: int):
        return K.ternary_weight_matmul(x, self.words, self.w_p, alpha_neg=self.w_n, k=k)


@dataclasses.dataclass(frozen=True)
class _FloatKernel(PackedWeights):
    """Weights applied as a float kernel ([K, N] or HWIO), by XLA's dot / convolution."""

    def kernel(self):
        raise NotImplementedError

    def matmul(self, x, *, k: int):
        return jnp.dot(x, self.kernel())

    def conv(self, x, *, shape, strides, pads, pad_value, feature_group_count, binary_inputs):
        return padded_conv(x, self.kernel(), strides=strides, pads=pads, pad_value=pad_value,
                           feature_group_count=feature_group_count)


@dataclasses.dataclass(frozen=True)
class Int8Weights(_FloatKernel):
    """int8 codes and float32 scales s: the kernel is ``s * codes`` (the training forward)."""

    FIELDS: ClassVar[dict[str, str]] = {"codes": "w", "scale": "alpha"}
    codes: Array = None
    scale: Array = None

    def kernel(self):
        return self.scale * self.codes.astype(jnp.float32)


@dataclasses.dataclass(frozen=True)
class FloatWeights(_FloatKernel):
    """The float32 kernel itself (precision policy 'fp')."""

    FIELDS: ClassVar[dict[str, str]] = {"w": "w"}
    w: Array = None

    def kernel(self):
        return self.w


def numpy_arrays(weights: PackedWeights) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in weights.arrays().items()}
