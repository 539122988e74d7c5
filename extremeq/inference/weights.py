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
CodesWeights        ``w``: k-bit indices into ``codebook`` (the  the method's ``decode`` (default
                    method's distinct int8 codes) as words       codes * alpha), float dot / conv
                    [N, ceil(K/(32//k))], ``alpha`` (optional)
FloatWeights        ``w``: the float32 kernel                    float dot / conv
==================  =========================================  ===================================

Which kind a layer becomes is its weight method's ``packing`` (``extremeq.methods``): each kind is
registered here under that name (``PACKING``) and built from the method's ``encode`` (a
:class:`~extremeq.methods.QArray`, the codes and scales of the evaluation forward) by
:meth:`PackedWeights.pack`. Nothing here knows a method by name.

K is in_features for a dense layer and kh*kw*Cin for a convolution, packed in the order of
``lax.conv_general_dilated_patches`` (``c*kh*kw + dh*kw + dw``). Inputs reach ``matmul`` / ``conv``
already through the layer's input quantizer.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, Mapping

import jax.numpy as jnp
import numpy as np

from extremeq import kernels as K
from extremeq import methods
from extremeq.kernels.xla import padded_conv
from extremeq.packing import pack_signs, pack_ternary, pack_uint, unpack_uint

Array = Any


def kernel_rows(q, is_conv: bool) -> np.ndarray:
    """Kernel [K, N] or HWIO -> [N, K] rows in the packing order of the kernels (c*kh*kw + dh*kw + dw)."""
    q = np.asarray(q)
    if is_conv:
        kh, kw, c, o = q.shape
        return q.transpose(3, 2, 0, 1).reshape(o, c * kh * kw)
    return q.T


def channel_scale(alpha):
    """A stored scale: float32, () per tensor or [N] per output channel (a scale with kept dims, as
    the quantizers return it, broadcasts against the kernel's last axis either way)."""
    if alpha is None:
        return None
    a = np.asarray(alpha, np.float32)
    return a.reshape(()) if a.size == 1 else a.reshape(-1)


def _codes(q: methods.QArray | None, packing: str):
    if q is None:
        raise ValueError(f"packing {packing!r} stores integer codes, but the method has no encode")
    return np.asarray(q.codes, np.float32)


@dataclasses.dataclass(frozen=True)
class PackedWeights:
    """Base of the packed-weight kinds. ``FIELDS``: dataclass field -> array name in the file."""

    PACKING: ClassVar[str] = ""  # the WeightMethod.packing this kind stores
    FIELDS: ClassVar[dict[str, str]] = {}
    GROUPED_CONV: ClassVar[bool] = True  # conv() takes feature_group_count > 1

    def arrays(self) -> dict[str, Array]:
        """The arrays to store, by their names in the file (absent optional ones left out)."""
        return {name: getattr(self, f) for f, name in self.FIELDS.items() if getattr(self, f) is not None}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, Array], method: str) -> "PackedWeights":
        """The weights from the file's arrays; ``method``: the layer's weight quantizer name."""
        del method
        return cls(**{f: arrays.get(name) for f, name in cls.FIELDS.items()})

    @classmethod
    def pack(cls, q: methods.QArray | None, kernel, *, is_conv: bool) -> "PackedWeights":
        """The packed weights of a layer from its method's ``encode`` (codes and scales), or, for
        the float kind, from ``kernel``: Q_w(W) of the evaluation forward ([K, N] or HWIO)."""
        raise NotImplementedError

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

    FORMAT: ClassVar[str] = ""  # "binary" (1-bit words) or "ternary" (2-bit words), extremeq.packing
    GROUPED_CONV: ClassVar[bool] = False

    @classmethod
    def words_of(cls, q, is_conv: bool):
        """The codes of ``q`` (+-1, or {-1, 0, 1}) as [N, words] rows in the kernels' order."""
        rows = kernel_rows(_codes(q, cls.PACKING), is_conv)
        if cls.FORMAT == "binary":
            return np.asarray(pack_signs(rows, axis=-1))
        return np.asarray(pack_ternary(rows.astype(np.int8), axis=-1))

    def scale(self):
        raise NotImplementedError

    def scale_neg(self):
        return None

    def conv(self, x, *, shape, strides, pads, pad_value, feature_group_count, binary_inputs):
        if feature_group_count != 1:
            raise ValueError("packed binary/ternary convolutions support feature_group_count=1 only")
        kh, kw, c, _ = shape
        return K.packed_conv(
            x,
            self.words,
            self.scale(),
            alpha_neg=self.scale_neg(),
            weight_format=self.FORMAT,
            kernel_size=(kh, kw),
            strides=strides,
            padding=pads,
            pad_value=pad_value,
            binary_inputs=binary_inputs,
            in_features=c,
        )


@dataclasses.dataclass(frozen=True)
class _WordsAndAlpha(_BitPacked):
    """Words and one optional scale ``alpha`` for both signs (per tensor or output channel)."""

    FIELDS: ClassVar[dict[str, str]] = {"words": "w", "alpha": "alpha"}
    words: Array = None
    alpha: Array | None = None

    @classmethod
    def pack(cls, q, kernel, *, is_conv):
        return cls(words=cls.words_of(q, is_conv), alpha=channel_scale(q.scales.get("alpha")))

    def scale(self):
        return 1.0 if self.alpha is None else self.alpha


@dataclasses.dataclass(frozen=True)
class BinaryWeights(_WordsAndAlpha):
    """sign(Q_w(W)) as 1-bit words, alpha (BWN) or none (BinaryConnect)."""

    FORMAT: ClassVar[str] = "binary"
    PACKING: ClassVar[str] = "binary"

    def matmul(self, x, *, k: int):
        return K.binary_weight_matmul(x, self.words, self.scale(), k=k)

    def xnor_matmul(self, x_signs, *, k: int):
        """+-1 inputs [..., K] against the sign words: exact XNOR-popcount, times alpha."""
        lead = x_signs.shape[:-1]
        x2 = x_signs.reshape(-1, k)
        y = K.xnor_matmul(pack_signs(x2, axis=-1), self.words, k, alpha_w=self.scale())
        return y.reshape(*lead, self.words.shape[0])


@dataclasses.dataclass(frozen=True)
class TernaryWeights(_WordsAndAlpha):
    """T(Q_w(W)) as 2-bit codes and one scale per tensor or output channel (TWN, BitNet b1.58)."""

    FORMAT: ClassVar[str] = "ternary"
    PACKING: ClassVar[str] = "ternary"

    def matmul(self, x, *, k: int):
        return K.ternary_weight_matmul(x, self.words, self.scale(), k=k)


@dataclasses.dataclass(frozen=True)
class TTQWeights(_BitPacked):
    """TTQ's codes as 2-bit words, W_p on the +1 codes and W_n on the -1 codes (Zhu et al., 2017)."""

    FORMAT: ClassVar[str] = "ternary"
    PACKING: ClassVar[str] = "ttq"
    FIELDS: ClassVar[dict[str, str]] = {"words": "w", "w_p": "ttq_wp", "w_n": "ttq_wn"}
    words: Array = None
    w_p: Array = None
    w_n: Array = None

    @classmethod
    def pack(cls, q, kernel, *, is_conv):
        return cls(
            words=cls.words_of(q, is_conv),
            w_p=np.asarray(q.scales["w_p"], np.float32),
            w_n=np.asarray(q.scales["w_n"], np.float32),
        )

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
        return padded_conv(
            x, self.kernel(), strides=strides, pads=pads, pad_value=pad_value, feature_group_count=feature_group_count
        )


@dataclasses.dataclass(frozen=True)
class Int8Weights(_FloatKernel):
    """int8 codes and float32 scales s: the kernel is ``s * codes`` (the training forward)."""

    PACKING: ClassVar[str] = "int8"
    FIELDS: ClassVar[dict[str, str]] = {"codes": "w", "scale": "alpha"}
    codes: Array = None
    scale: Array = None

    @classmethod
    def pack(cls, q, kernel, *, is_conv):
        return cls(codes=_int8_codes(q, cls.PACKING), scale=channel_scale(q.scales["alpha"]))

    def kernel(self):
        return self.scale * self.codes.astype(jnp.float32)


def _int8_codes(q, packing: str) -> np.ndarray:
    """The codes as int8, refused unless they are integers in [-127, 127]."""
    c = _codes(q, packing)
    if c.size and not (np.array_equal(c, np.round(c)) and np.abs(c).max() <= 127):
        raise ValueError(
            f"weight method {q.method!r} (packing {packing!r}): its encode must give integer "
            f"codes in [-127, 127], got values in [{c.min()}, {c.max()}]"
        )
    return c.astype(np.int8)


@dataclasses.dataclass(frozen=True)
class CodesWeights(PackedWeights):
    """A registered method's own integer codes (packing ``"codes"``): its ``bits``-bit indices into
    a per-layer ``codebook`` (the distinct codes, int8, at most 2^bits of them) as k-bit words
    [N, ceil(K / (32 // bits))] (:func:`extremeq.packing.pack_uint`), and an optional ``alpha``.
    The forward decodes them with the method's ``decode`` (default codes * alpha) and runs a float
    dot / convolution: the weights of the training graph's evaluation forward, bit for bit."""

    PACKING: ClassVar[str] = "codes"
    FIELDS: ClassVar[dict[str, str]] = {"words": "w", "codebook": "codebook", "alpha": "alpha"}
    words: Array = None
    codebook: Array = None
    alpha: Array | None = None
    method: str = ""

    @classmethod
    def from_arrays(cls, arrays, method):
        return cls(**{f: arrays.get(name) for f, name in cls.FIELDS.items()}, method=method)

    @classmethod
    def pack(cls, q, kernel, *, is_conv):
        codes = _int8_codes(q, cls.PACKING)
        codebook = np.unique(codes)
        bits = min(methods.weight_method(q.method).bits, 8)
        if codebook.size > 2**bits:
            raise ValueError(
                f"weight method {q.method!r} has bits={bits}, but its encode gives {codebook.size} "
                f"distinct codes (at most 2^{bits}); fix its bits or its encode"
            )
        index = kernel_rows(np.searchsorted(codebook, codes), is_conv)
        return cls(
            words=np.asarray(pack_uint(index, bits, axis=-1)),
            codebook=codebook,
            alpha=channel_scale(q.scales.get("alpha")),
            method=q.method,
        )

    def kernel(self, shape):
        """The decoded float kernel of ``shape``: [K, N] (dense) or HWIO (convolution)."""
        bits = min(methods.weight_method(self.method).bits, 8)
        k = math.prod(shape[:-1])
        rows = jnp.asarray(self.codebook, jnp.float32)[unpack_uint(self.words, k, bits, axis=-1)]  # [N, K]
        if len(shape) == 4:
            kh, kw, c, o = shape
            codes = rows.reshape(o, c, kh, kw).transpose(2, 3, 1, 0)
        else:
            codes = rows.T
        scales = {} if self.alpha is None else {"alpha": jnp.asarray(self.alpha, jnp.float32)}
        return methods.QArray(codes, scales, self.method).dequantize()

    def matmul(self, x, *, k: int):
        return jnp.dot(x, self.kernel((k, self.words.shape[0])))

    def conv(self, x, *, shape, strides, pads, pad_value, feature_group_count, binary_inputs):
        return padded_conv(
            x,
            self.kernel(shape),
            strides=strides,
            pads=pads,
            pad_value=pad_value,
            feature_group_count=feature_group_count,
        )


@dataclasses.dataclass(frozen=True)
class FloatWeights(_FloatKernel):
    """The float32 kernel itself (precision policy 'fp')."""

    PACKING: ClassVar[str] = "float"
    FIELDS: ClassVar[dict[str, str]] = {"w": "w"}
    w: Array = None

    @classmethod
    def pack(cls, q, kernel, *, is_conv):
        return cls(w=np.asarray(kernel, np.float32))

    def kernel(self):
        return self.w


#: WeightMethod.packing -> the kind that stores it.
KINDS: dict[str, type[PackedWeights]] = {
    cls.PACKING: cls for cls in (BinaryWeights, TernaryWeights, TTQWeights, Int8Weights, CodesWeights, FloatWeights)
}


def packed_kind(weight: str) -> type[PackedWeights]:
    """The packed-weight class of a weight quantizer name (as stored in a file's layer config): its
    registered method's ``packing``. An unregistered name (a method of your own not imported before
    ``load``) raises, naming the registered ones."""
    return KINDS[methods.weight_method(weight).packing]


def pack_weights(spec, latent, scales, kernel, *, is_conv: bool) -> PackedWeights:
    """The packed weights of one layer: its method's ``encode`` of the latent kernel (the codes and
    scales of the evaluation forward), stored as the method's ``packing``.

    Args:
      spec: the layer's weight QuantizerSpec; latent: the latent float kernel W ([K, N] or HWIO);
      scales: the layer's learned scales by name (TTQ's ttq_wp, ttq_wn); kernel: Q_w(W) of the
      evaluation forward (what the float kind stores); is_conv: HWIO kernel.
    """
    method = spec.method
    q = None if method.encode is None else method.encode(jnp.asarray(latent, jnp.float32), spec, scales)
    return KINDS[method.packing].pack(q, kernel, is_conv=is_conv)


def numpy_arrays(weights: PackedWeights) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in weights.arrays().items()}
