"""Plain-jnp references of every kernel: unpack, then the float formula (float32, HIGHEST precision).

The tests compare each backend with these; they are also the formulas' one statement in the
kernels (signs from :func:`extremeq.ste.sign`, sign(0) = +1; XNOR-Net's scales from
:func:`extremeq.quantizers.xnor_activation_scale`).
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from extremeq import quantizers as Q
from extremeq.packing import unpack_signs, unpack_ternary
from extremeq.ste import sign

__all__ = [
    "xnor_matmul_reference",
    "xnor_linear_reference",
    "xnor_conv_reference",
    "xnor_kmap",
    "binary_weight_matmul_reference",
    "ternary_weight_matmul_reference",
    "packed_conv_reference",
    "conv_padding",
    "pair",
]

DN = ("NHWC", "HWIO", "NHWC")


def pair(v, name):
    if isinstance(v, int):
        return (v, v)
    v = tuple(int(e) for e in v)
    if len(v) != 2:
        raise ValueError(f"{name} must be an int or a pair, got {v}.")
    return v


def conv_padding(padding):
    """ "SAME" | "VALID" | ((top, bottom), (left, right)), checked."""
    if isinstance(padding, str):
        p = padding.upper()
        if p not in ("SAME", "VALID"):
            raise ValueError(f"padding {padding!r} unknown; use 'SAME', 'VALID' or ((lo, hi), (lo, hi)).")
        return p
    return tuple((int(lo), int(hi)) for lo, hi in padding)


def xnor_matmul_reference(a_bits, b_bits, k: int, alpha_x=None, alpha_w=None):
    """Unpack to +-1 float32 and multiply (exact for K < 2^24); scaled when a scale is given."""
    a = unpack_signs(a_bits, k, axis=-1, dtype=jnp.float32)
    b = unpack_signs(b_bits, k, axis=-1, dtype=jnp.float32)
    c = jnp.dot(a, b.T, precision=lax.Precision.HIGHEST)
    if alpha_x is None and alpha_w is None:
        return c.astype(jnp.int32)
    ax = jnp.ones((a.shape[0],), jnp.float32) if alpha_x is None else jnp.asarray(alpha_x, jnp.float32)
    aw = jnp.ones((b.shape[0],), jnp.float32) if alpha_w is None else jnp.asarray(alpha_w, jnp.float32)
    return c * ax[:, None] * aw[None, :]


def xnor_linear_reference(x, kernel, alpha):
    """XNOR-Net dense layer in float: ``(sign(x) @ sign(W)) * beta[:, None] * alpha[None, :]``,
    ``beta = mean|x|`` per row (Rastegari et al., 2016, Eq. 11), sign(0) = +1, W [K, N]."""
    x = jnp.asarray(x, jnp.float32)
    beta = Q.xnor_activation_scale(x)
    return jnp.dot(sign(x), sign(jnp.asarray(kernel, jnp.float32)), precision=lax.Precision.HIGHEST) * beta * alpha


def xnor_kmap(x, kernel_size, strides=1, padding="SAME"):
    """XNOR-Net K-map ``K = A (*) k``, A = mean_c |x|, k = ones(kh, kw) / (kh * kw), as
    :func:`extremeq.quantizers.xnor_activation_scale` computes it: x [B, H, W, C] -> K [B, H', W']
    (zero padding counts in the window mean, as in the conv)."""
    pad = conv_padding(padding)
    return Q.xnor_activation_scale(
        jnp.asarray(x, jnp.float32), pair(kernel_size, "kernel_size"), pair(strides, "strides"), pad
    )[..., 0]


def xnor_conv_reference(x, kernel, alpha, strides=1, padding="SAME", pad_value=0.0):
    """Float reference: ``conv(sign(x), sign(W)) * K[..., None] * alpha``, sign(x) padded with
    ``pad_value`` (0: XNOR-Net's own code; +1: sign(0), as QuantConv), float32."""
    x = jnp.asarray(x, jnp.float32)
    kernel = jnp.asarray(kernel, jnp.float32)
    conv = packed_conv_reference(sign(x), sign(kernel), strides=strides, padding=padding, pad_value=pad_value)
    k = xnor_kmap(x, kernel.shape[:2], strides, padding)
    return conv * k[..., None] * jnp.asarray(alpha, jnp.float32)


def binary_weight_matmul_reference(x, w_bits, alpha):
    """Dequantize then dot: ``x @ (alpha[:, None] * unpack_signs(w_bits)).T`` in float32."""
    x = jnp.asarray(x, jnp.float32)
    wq = unpack_signs(w_bits, x.shape[-1], axis=-1, dtype=jnp.float32) * jnp.asarray(alpha, jnp.float32)[:, None]
    return jnp.dot(x, wq.T, precision=lax.Precision.HIGHEST)


def ternary_weight_matmul_reference(x, w_2bit, alpha):
    """Dequantize then dot: ``x @ (alpha[:, None] * unpack_ternary(w_2bit)).T`` in float32."""
    x = jnp.asarray(x, jnp.float32)
    wq = unpack_ternary(w_2bit, x.shape[-1], axis=-1, dtype=jnp.float32) * jnp.asarray(alpha, jnp.float32)[:, None]
    return jnp.dot(x, wq.T, precision=lax.Precision.HIGHEST)


def packed_conv_reference(x, kernel, *, strides=1, padding="SAME", pad_value=0.0, feature_group_count=1):
    """The convolution every packed-conv path computes: x padded with ``pad_value`` explicitly, then
    an unpadded float32 convolution with the (decoded) HWIO ``kernel``."""
    x = jnp.asarray(x, jnp.float32)
    kernel = jnp.asarray(kernel, jnp.float32)
    strides = pair(strides, "strides")
    pad = conv_padding(padding)
    if isinstance(pad, str):
        pad = lax.padtype_to_pads(x.shape[1:3], kernel.shape[:2], strides, pad)
    xp = jnp.pad(x, [(0, 0), *pad, (0, 0)], constant_values=pad_value)
    return lax.conv_general_dilated(
        xp,
        kernel,
        strides,
        "VALID",
        dimension_numbers=DN,
        feature_group_count=feature_group_count,
        precision=lax.Precision.HIGHEST,
    )
