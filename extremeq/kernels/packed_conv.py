"""Convolution with packed (1-bit or 2-bit) filters: the public entry whose ``backend="auto"``
chooses the path per platform.

    y = conv(pad(x, pad_value), alpha * decode(W))              NHWC x, float32 y

``x`` is the layer's input after its input quantizer (real values, int8 fake-quant, or +-1 signs),
padded with ``pad_value`` (QuantConv pads binarized inputs with +1 = sign(0); float inputs with 0).
``W`` is packed per output channel along channel-times-window, the patch order of
``lax.conv_general_dilated_patches`` (``c * kh * kw + dh * kw + dw``, :func:`pack_conv_weights`),
32 signs (``weight_format="binary"``) or 16 ternary codes (``"ternary"``) per word; ``alpha`` [O]
or a scalar scales the +1 codes, ``alpha_neg`` (TTQ's W_n) the -1 codes when given.

Paths (``backend=``; "auto" resolves per platform in :mod:`extremeq.kernels.backends`):

* ``"conv"`` (CPU's auto): decode the filters inside the jitted call (a few thousand words), then
  XLA's convolution, padded by the border term of :func:`extremeq.kernels.xla.padded_conv`, not by
  padding the input (3x faster on XLA:CPU).
* ``"patches"``: im2col (``conv_general_dilated_patches``), then the weight-only matmul of the
  platform (:func:`binary_weight_matmul` / :func:`ternary_weight_matmul`, ``matmul_backend``).
* ``"xnor"`` (GPU/TPU auto for binary inputs and binary filters, ``binary_inputs=True``): the
  patches of sign(x) packed to bits and :func:`xnor_matmul`, exact in integers. Zero padding packs as
  bit 1 (+1, sign(0)); for another ``pad_value`` p the integer border term ``(1 - p) conv(B, sum_c
  sign W)`` is subtracted.
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
from jax import lax

from extremeq.kernels import common as C
from extremeq.kernels.backends import resolve_conv
from extremeq.kernels.binary_weight_matmul import binary_weight_matmul
from extremeq.kernels.reference import DN, conv_padding, packed_conv_reference, pair
from extremeq.kernels.ternary_weight_matmul import ternary_weight_matmul
from extremeq.kernels.xla import conv_border_term, padded_conv
from extremeq.kernels.xnor_matmul import resolve_xnor_backend, xnor_product
from extremeq.packing import (
    TERNARY_PER_WORD,
    WORD_BITS,
    pack_signs,
    unpack_signs,
    unpack_ternary,
)
from extremeq.ste import sign

__all__ = ["packed_conv", "packed_conv_reference", "pack_conv_weights", "decode_conv_kernel", "conv_pads"]

PER_WORD = {"binary": WORD_BITS, "ternary": TERNARY_PER_WORD}


def pack_conv_weights(kernel):
    """sign(W) of an HWIO kernel [kh, kw, C, O] -> uint32 [O, ceil(C*kh*kw/32)],
    packed along channel-times-window in the order of ``conv_general_dilated_patches``."""
    kernel = jnp.asarray(kernel)
    if kernel.ndim != 4:
        raise ValueError(f"pack_conv_weights needs an HWIO kernel [kh, kw, C, O], got shape {kernel.shape}.")
    kh, kw, c, o = kernel.shape
    return pack_signs(kernel.transpose(3, 2, 0, 1).reshape(o, c * kh * kw), axis=-1)


def decode_conv_kernel(w_words, alpha, *, weight_format: str, shape, alpha_neg=None):
    """Packed rows [O, ceil(C kh kw / E)] -> the float32 HWIO kernel ``alpha * decode(W)`` of ``shape``
    (kh, kw, C, O), ``-alpha_neg`` on the -1 codes when given."""
    kh, kw, c, o = shape
    n = c * kh * kw
    if weight_format == "binary":
        rows = unpack_signs(w_words, n, axis=-1, dtype=jnp.float32)
    else:
        rows = unpack_ternary(w_words, n, axis=-1, dtype=jnp.float32)
    a = jnp.reshape(jnp.asarray(alpha, jnp.float32), (-1, 1))
    if alpha_neg is None:
        rows = rows * a
    else:
        rows = jnp.where(rows > 0, a, jnp.where(rows < 0, -jnp.reshape(alpha_neg, (-1, 1)), 0.0))
    return rows.reshape(o, c, kh, kw).transpose(2, 3, 1, 0)


def conv_pads(spatial_shape, kernel_size, strides, padding) -> tuple:
    """((top, bottom), (left, right)) for "SAME" / "VALID" / explicit pairs."""
    padding = conv_padding(padding)
    if isinstance(padding, str):
        return tuple(tuple(p) for p in lax.padtype_to_pads(spatial_shape, kernel_size, strides, padding))
    return padding


def packed_conv(
    x,
    w_words,
    alpha,
    *,
    weight_format: str,
    kernel_size,
    strides=1,
    padding="SAME",
    pad_value: float = 0.0,
    alpha_neg=None,
    binary_inputs: bool = False,
    in_features=None,
    backend: str = "auto",
    matmul_backend: str = "auto",
    **block_kwargs,
):
    """``conv(pad(x, pad_value), alpha * decode(W))`` (module docstring), float32 [B, H', W', O].

    Args:
      x: float NHWC [B, H, W, C], already through the input quantizer.
      w_words: uint32 [O, ceil(C*kh*kw/E)], E = 32 (binary, :func:`pack_conv_weights`) or 16 (ternary).
      alpha: float [O] or scalar; alpha_neg: the -1 codes' scale (ternary only) or None.
      weight_format: "binary" | "ternary". kernel_size, strides: int or pair; padding: "SAME" |
        "VALID" | ((top, bottom), (left, right)); pad_value: what the padded input holds.
      binary_inputs: x holds only -1 and +1 (the "xnor" path needs it; it packs sign(x)).
      in_features: C the filters were packed from (x's C must equal it; None: x's C).
      backend: "auto" | "conv" | "patches" | "xnor"; matmul_backend and **block_kwargs go to the
        matmul of the "patches" / "xnor" paths.
    """
    if weight_format not in PER_WORD:
        raise ValueError(f"weight_format {weight_format!r} unknown; choose 'binary' or 'ternary'.")
    if alpha_neg is not None and weight_format != "ternary":
        raise ValueError("packed_conv: alpha_neg (a separate scale of the -1 codes) needs ternary weights.")
    x, kernel_size, strides, pads, alpha = check_conv_inputs(
        "packed_conv", x, w_words, alpha, kernel_size, strides, padding, in_features, PER_WORD[weight_format]
    )
    if alpha_neg is not None:
        alpha_neg = C.check_scale("alpha_neg", alpha_neg, w_words.shape[0]).astype(jnp.float32)
    path = resolve_conv(backend, binary_inputs=binary_inputs, weight_format=weight_format)
    if path == "xnor":
        matmul_backend, block_kwargs = resolve_xnor_backend("packed_conv", matmul_backend, block_kwargs)
    elif path == "conv" and block_kwargs:
        raise ValueError(
            f"packed_conv: block options {sorted(block_kwargs)} apply only to the 'patches' and 'xnor' paths."
        )
    return run_packed_conv(
        x,
        w_words,
        alpha,
        alpha_neg,
        None,
        weight_format=weight_format,
        kernel_size=kernel_size,
        strides=strides,
        pads=pads,
        pad_value=float(pad_value),
        path=path,
        matmul_backend=matmul_backend,
        block_items=tuple(sorted(block_kwargs.items())),
    )


def check_conv_inputs(op, x, w_words, alpha, kernel_size, strides, padding, in_features, per_word):
    """The checks of a packed convolution entry: a float NHWC x, uint32 filters of ceil(C*kh*kw /
    per_word) words with C = in_features (the K contract), alpha [O] or scalar. Returns
    (x, (kh, kw), strides, pads, alpha as float32 [O])."""
    x = jnp.asarray(x)
    if x.ndim != 4 or not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"{op} needs a float NHWC input [B, H, W, C], got {x.dtype} {x.shape}.")
    if in_features is not None and int(in_features) != x.shape[-1]:
        raise ValueError(
            f"{op}: x has {x.shape[-1]} channels but the filters were packed from in_features={int(in_features)}."
        )
    C.check_words("w_words", w_words)
    kernel_size = pair(kernel_size, "kernel_size")
    strides = pair(strides, "strides")
    pads = conv_pads(x.shape[1:3], kernel_size, strides, padding)
    k = x.shape[-1] * kernel_size[0] * kernel_size[1]
    need = -(-k // per_word)
    if w_words.shape[1] != need:
        raise ValueError(
            f"{op}: w has {w_words.shape[1]} words per filter; C*kh*kw = {k} needs {need}. "
            "Pack the HWIO kernel with pack_conv_weights."
        )
    return x, kernel_size, strides, pads, C.check_scale("alpha", alpha, w_words.shape[0]).astype(jnp.float32)


@C.backend_jit(
    ("weight_format", "kernel_size", "strides", "pads", "pad_value", "path", "matmul_backend", "block_items")
)
def run_packed_conv(
    x,
    w_words,
    alpha,
    alpha_neg,
    row_scale,
    *,
    weight_format,
    kernel_size,
    strides,
    pads,
    pad_value,
    path,
    matmul_backend,
    block_items,
):
    """The resolved path; ``row_scale`` [B, H', W'] (XNOR-Net's K-map) multiplies the output rows."""
    b, h, w, c = x.shape
    kh, kw = kernel_size
    shape = (kh, kw, c, w_words.shape[0])
    if path == "conv":
        kernel = decode_conv_kernel(w_words, alpha, weight_format=weight_format, shape=shape, alpha_neg=alpha_neg)
        y = padded_conv(x.astype(jnp.float32), kernel, strides=strides, pads=pads, pad_value=pad_value)
    elif path == "patches":
        xp = jnp.pad(x.astype(jnp.float32), [(0, 0), *pads, (0, 0)], constant_values=pad_value)
        patches = lax.conv_general_dilated_patches(
            xp, kernel_size, strides, "VALID", dimension_numbers=DN, precision=lax.Precision.HIGHEST
        )
        kwargs = dict(backend=matmul_backend, **dict(block_items))
        if weight_format == "binary":
            y = binary_weight_matmul(patches, w_words, alpha, **kwargs)
        else:
            y = ternary_weight_matmul(patches, w_words, alpha, alpha_neg=alpha_neg, **kwargs)
    else:
        return _xnor_path(
            x,
            w_words,
            alpha,
            row_scale,
            shape=shape,
            strides=strides,
            pads=pads,
            pad_value=pad_value,
            backend=matmul_backend,
            block_items=block_items,
        )
    return y if row_scale is None else y * row_scale[..., None]


def _xnor_path(x, w_bits, alpha, row_scale, *, shape, strides, pads, pad_value, backend, block_items):
    """XNOR-popcount convolution, exact in integers.

    sign(x) is packed once per pixel (ceil(C/32) words, bit 1 = +1, 0 past C), padded with +1 words,
    and the kh*kw strided slices of those words are the patches [B H' W', kh*kw*ceil(C/32)] (9x fewer
    bits to pack than packing im2col patches); the filters are re-packed tap by tap in the same order
    (:func:`tap_major_words`). Padding bits are 0 on both sides, so they never differ: the product over
    the padded length Kp = 32 kh kw ceil(C/32) is Kp - 2 popcount, and the one over the real
    K = C kh kw is that minus (Kp - K).
    """
    kh, kw, c, o = shape
    b = x.shape[0]
    sh, sw = strides
    valid = pack_signs(jnp.ones((c,), jnp.float32), axis=-1)  # +1 in each real channel
    words = pack_signs(sign(x), axis=-1)  # [B, H, W, ceil(C/32)]
    words = jnp.pad(words, [(0, 0), *pads, (0, 0)], constant_values=jnp.uint32(0xFFFFFFFF)) & valid
    hp, wp = words.shape[1:3]
    ho, wo = (hp - kh) // sh + 1, (wp - kw) // sw + 1
    taps = [
        lax.slice(
            words, (0, i, j, 0), (b, i + sh * (ho - 1) + 1, j + sw * (wo - 1) + 1, words.shape[3]), (1, sh, sw, 1)
        )
        for i in range(kh)
        for j in range(kw)
    ]
    a_bits = jnp.concatenate(taps, axis=-1).reshape(b * ho * wo, -1)
    w_taps = tap_major_words(w_bits, shape)
    kp = w_taps.shape[1] * WORD_BITS
    mm = functools.partial(xnor_product, k=kp, backend=backend, block_items=block_items)
    counts = mm(a_bits, w_taps, None, None) - (kp - c * kh * kw)
    counts = counts.reshape(b, ho, wo, o).astype(jnp.float32)
    if pad_value != 1.0 and any(map(any, pads)):  # packed +1 padding; the layer pads with pad_value
        signs = decode_conv_kernel(w_bits, jnp.ones((o,), jnp.float32), weight_format="binary", shape=shape)
        counts = counts - (1.0 - pad_value) * conv_border_term(x.shape[1:3], signs, strides, pads)
    y = counts * alpha
    return y if row_scale is None else y * row_scale[..., None]


def tap_major_words(w_bits, shape):
    """Filters packed along channel-times-window (:func:`pack_conv_weights`) -> re-packed per tap:
    uint32 [O, kh*kw*ceil(C/32)], tap (dh, dw) outermost, each tap's C signs in its own words."""
    kh, kw, c, o = shape
    signs = unpack_signs(w_bits, c * kh * kw, axis=-1, dtype=jnp.int8).reshape(o, c, kh, kw)
    return pack_signs(signs.transpose(0, 2, 3, 1), axis=-1).reshape(o, -1)
