"""Binary convolution for XNOR-Net inference (Rastegari et al., 2016, Sec. 3.2, Fig. 2).

    I * W  ~=  (sign(I) (*) sign(W)) . K . alpha

* ``sign(I) (*) sign(W)``: the convolution of the binarised input with the binarised
  filter, computed as an XNOR-popcount matmul: patches of sign(I) are packed along
  channel-times-window (the patch vector of ``lax.conv_general_dilated_patches``,
  ordered ``c * kh * kw + dh * kw + dw``), then :func:`extremeq.kernels.xnor_matmul`
  against the filters packed in the same order (:func:`pack_conv_weights`).
* ``K``: the K-map. ``A = sum_c |I[:, :, c]| / c`` (mean over channels), then
  ``K = A (*) k`` with ``k`` the kh x kw filter of entries ``1 / (kh * kw)``: the mean of A
  over each window, zero padded like the convolution.
* ``alpha``: one scale per output channel, ``alpha = ||W||_l1 / n`` (mean |W| over the
  kh x kw x c filter).

Zero padding: the float reference convolves sign(I) padded with zeros (as XNOR-Net's
own code does: BinActive, then a padded conv), so padding contributes 0. One bit cannot
hold a 0; padded positions are packed as +1 and their contribution
``sum_{padded (dh, dw)} sum_c sign(W)[dh, dw, c, o]`` is subtracted exactly (an integer
correction that depends only on the spatial shape, not on the batch).
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
from jax import lax

from extremeq.kernels import _common as C
from extremeq.kernels.xnor_matmul import _resolve_backend, _xnor_matmul_impl
from extremeq.packing import pack_signs, unpack_signs

__all__ = [
    "xnor_conv",
    "xnor_conv_reference",
    "xnor_kmap",
    "pack_conv_weights",
    "conv_alpha",
]

_DN = ("NHWC", "HWIO", "NHWC")


def _pair(v, name):
    if isinstance(v, int):
        return (v, v)
    v = tuple(int(e) for e in v)
    if len(v) != 2:
        raise ValueError(f"{name} must be an int or a pair, got {v}.")
    return v


def _padding(padding):
    if isinstance(padding, str):
        p = padding.upper()
        if p not in ("SAME", "VALID"):
            raise ValueError(f"padding {padding!r} unknown; use 'SAME', 'VALID' or ((lo, hi), (lo, hi)).")
        return p
    return tuple((int(lo), int(hi)) for lo, hi in padding)


def conv_alpha(kernel):
    """XNOR-Net / BWN filter scale: ``alpha[o] = mean |W[:, :, :, o]|`` for an HWIO kernel."""
    return jnp.mean(jnp.abs(jnp.asarray(kernel, jnp.float32)), axis=(0, 1, 2))


def pack_conv_weights(kernel):
    """sign(W) of an HWIO kernel [kh, kw, C, O] -> uint32 [O, ceil(C*kh*kw/32)],
    packed along channel-times-window in the order of ``conv_general_dilated_patches``."""
    kernel = jnp.asarray(kernel)
    if kernel.ndim != 4:
        raise ValueError(f"pack_conv_weights needs an HWIO kernel [kh, kw, C, O], got shape {kernel.shape}.")
    kh, kw, c, o = kernel.shape
    return pack_signs(kernel.transpose(3, 2, 0, 1).reshape(o, c * kh * kw), axis=-1)


def xnor_kmap(x, kernel_size, strides=1, padding="SAME"):
    """XNOR-Net K-map ``K = A (*) k``: A = mean_c |x|, k = ones(kh, kw) / (kh * kw).

    x [B, H, W, C] -> K [B, H', W'] (zero padding counts in the window mean, as in the conv).
    """
    kh, kw = _pair(kernel_size, "kernel_size")
    sh, sw = _pair(strides, "strides")
    a = jnp.mean(jnp.abs(jnp.asarray(x, jnp.float32)), axis=-1)
    pad = _padding(padding)
    pad = pad if isinstance(pad, str) else ((0, 0),) + pad
    s = lax.reduce_window(a, 0.0, lax.add, (1, kh, kw), (1, sh, sw), pad)
    return s / (kh * kw)


def xnor_conv_reference(x, kernel, alpha, strides=1, padding="SAME"):
    """Float reference: ``conv(sign(x), sign(W)) * K[..., None] * alpha`` (sign(0) = +1,
    zero padding after sign), float32."""
    x = jnp.asarray(x, jnp.float32)
    kernel = jnp.asarray(kernel, jnp.float32)
    sx = jnp.where(x >= 0, 1.0, -1.0)
    sw = jnp.where(kernel >= 0, 1.0, -1.0)
    conv = lax.conv_general_dilated(sx, sw, _pair(strides, "strides"), _padding(padding),
                                    dimension_numbers=_DN, precision=lax.Precision.HIGHEST)
    k = xnor_kmap(x, kernel.shape[:2], strides, padding)
    return conv * k[..., None] * jnp.asarray(alpha, jnp.float32)


def _padding_correction(h, w, w_bits, kernel_size, in_features, strides, padding):
    """int32 [H', W', O]: sum over padded window taps of sum_c sign(W) (0 where no padding)."""
    kh, kw = kernel_size
    inside = lax.conv_general_dilated_patches(jnp.ones((1, h, w, 1), jnp.float32), (kh, kw),
                                              strides, padding, dimension_numbers=_DN)
    outside = (1.0 - inside[0]).astype(jnp.int32)  # [H', W', kh*kw]
    o = w_bits.shape[0]
    sw = unpack_signs(w_bits, in_features * kh * kw, axis=-1, dtype=jnp.int32)
    tap_sums = sw.reshape(o, in_features, kh * kw).sum(axis=1)  # [O, kh*kw]
    return jnp.einsum("hwt,ot->hwo", outside, tap_sums)


def xnor_conv(x, w_bits, alpha, *, kernel_size, strides=1, padding="SAME", backend: str = "auto",
              **block_kwargs):
    """XNOR-Net binary convolution, NHWC input, output float32 [B, H', W', O].

    Args:
      x: float [B, H, W, C], the real-valued input (its signs are the binary input,
        its magnitudes give the K-map).
      w_bits: uint32 [O, ceil(C*kh*kw/32)] from :func:`pack_conv_weights`.
      alpha: float [O] filter scales (:func:`conv_alpha`), or a scalar.
      kernel_size: (kh, kw) or int; strides: (sh, sw) or int;
      padding: "SAME" | "VALID" | ((top, bottom), (left, right)).
      backend, **block_kwargs: passed to :func:`extremeq.kernels.xnor_matmul`.

    Returns ``conv(sign(x), sign(W)) * K * alpha`` (:func:`xnor_conv_reference`), with the
    binary convolution computed exactly in integers.
    """
    x = jnp.asarray(x)
    if x.ndim != 4 or not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"xnor_conv needs a float NHWC input [B, H, W, C], got {x.dtype} {x.shape}.")
    C.check_words("w_bits", w_bits)
    kh, kw = _pair(kernel_size, "kernel_size")
    strides = _pair(strides, "strides")
    padding = _padding(padding)
    b, h, w, c = x.shape
    k = c * kh * kw
    o = w_bits.shape[0]
    if w_bits.shape[1] != -(-k // C.WORD_BITS):
        raise ValueError(
            f"w_bits has {w_bits.shape[1]} words per filter; C*kh*kw = {c}*{kh}*{kw} = {k} needs "
            f"{-(-k // C.WORD_BITS)}. Pack the HWIO kernel with pack_conv_weights."
        )
    alpha = C.check_scale("alpha", alpha, o).astype(jnp.float32)
    backend = _resolve_backend("xnor_conv", backend, b * h * w)
    if block_kwargs and backend not in ("pallas", "interpret"):
        raise ValueError(f"block options {sorted(block_kwargs)} apply only to Pallas backends.")
    target = "tpu" if (backend == "pallas" and C.platform() == "tpu") else "gpu"
    return _xnor_conv_impl(x, w_bits, alpha, kernel_size=(kh, kw), strides=strides, padding=padding,
                           backend=backend, target=target,
                           block_items=tuple(sorted(block_kwargs.items())))


@C.backend_jit(("kernel_size", "strides", "padding", "backend", "target", "block_items"))
def _xnor_conv_impl(x, w_bits, alpha, *, kernel_size, strides, padding, backend, target, block_items):
    kh, kw = kernel_size
    b, h, w, c = x.shape
    k = c * kh * kw
    o = w_bits.shape[0]
    mm = functools.partial(_xnor_matmul_impl, k=k, backend=backend, target=target,
                           block_items=block_items)
    sx = jnp.where(x >= 0, 1, -1).astype(jnp.bfloat16)  # +-1 exactly; padding below gives 0
    patches = lax.conv_general_dilated_patches(sx, (kh, kw), strides, padding, dimension_numbers=_DN)
    ho, wo = patches.shape[1:3]
    a_bits = pack_signs(patches.reshape(b * ho * wo, k), axis=-1)  # padded 0 -> bit 1 (+1)
    kmap = xnor_kmap(x, (kh, kw), strides, padding)  # [B, H', W']

    if padding == "VALID" or (isinstance(padding, tuple) and all(p == (0, 0) for p in padding)):
        y = mm(a_bits, w_bits, kmap.reshape(-1), alpha)
        return y.reshape(b, ho, wo, o)
    correction = _padding_correction(h, w, w_bits, (kh, kw), c, strides, padding)
    counts = mm(a_bits, w_bits, None, None).reshape(b, ho, wo, o) - correction[None]
    return counts.astype(jnp.float32) * kmap[..., None] * alpha
