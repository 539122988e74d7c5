"""Binary convolution for XNOR-Net inference (Rastegari et al., 2016, Sec. 3.2, Fig. 2).

    I * W  ~=  (sign(I) (*) sign(W)) . K . alpha

* ``sign(I) (*) sign(W)``: the convolution of the binarised input with the binarised filter,
  :func:`extremeq.kernels.packed_conv`'s "xnor" path (patches of sign(I) packed along
  channel-times-window, XNOR-popcount against the filters packed in the same order by
  :func:`pack_conv_weights`), exact in integers.
* ``K``: the K-map, :func:`extremeq.quantizers.xnor_activation_scale` (``A = mean_c |I|``, then
  ``K = A (*) k`` with k the kh x kw box filter of 1 / (kh kw), zero padded like the convolution).
* ``alpha``: one scale per output channel, ``alpha = ||W||_l1 / n`` (mean |W| over the filter).

Padding: ``pad_value`` 0 (default) is XNOR-Net's own code (BinActive, then a zero-padded conv); one
bit cannot hold a 0, so padded positions pack as +1 and their contribution is subtracted exactly.
``pad_value`` +1 is QuantConv's default (sign(0)), no correction needed.
"""

from __future__ import annotations

import jax.numpy as jnp

from extremeq import quantizers as Q
from extremeq.kernels import common as C
from extremeq.kernels.packed_conv import check_conv_inputs, pack_conv_weights, run_packed_conv
from extremeq.kernels.reference import xnor_conv_reference, xnor_kmap
from extremeq.kernels.xnor_matmul import resolve_xnor_backend

__all__ = ["xnor_conv", "xnor_conv_reference", "xnor_kmap", "pack_conv_weights", "conv_alpha"]


def conv_alpha(kernel):
    """XNOR-Net / BWN filter scale: ``alpha[o] = mean |W[:, :, :, o]|`` for an HWIO kernel."""
    return Q.bwn_scale(jnp.asarray(kernel, jnp.float32), per_channel=True).reshape(-1)


def xnor_conv(
    x,
    w_bits,
    alpha,
    *,
    kernel_size,
    strides=1,
    padding="SAME",
    pad_value: float = 0.0,
    in_features=None,
    backend: str = "auto",
    **block_kwargs,
):
    """XNOR-Net binary convolution, NHWC input, output float32 [B, H', W', O].

    Args:
      x: float [B, H, W, C], the real-valued input (its signs are the binary input,
        its magnitudes give the K-map).
      w_bits: uint32 [O, ceil(C*kh*kw/32)] from :func:`pack_conv_weights`.
      alpha: float [O] filter scales (:func:`conv_alpha`), or a scalar.
      kernel_size: (kh, kw) or int; strides: (sh, sw) or int;
      padding: "SAME" | "VALID" | ((top, bottom), (left, right)); pad_value: 0 or +1, what the
        padded sign(x) holds.
      in_features: C the filters were packed from (x's C must equal it; None: x's C).
      backend, **block_kwargs: the XNOR matmul's backend and tiles (:func:`extremeq.kernels.xnor_matmul`).

    Returns ``conv(sign(x), sign(W)) * K * alpha`` (:func:`xnor_conv_reference`), with the
    binary convolution computed exactly in integers.
    """
    x, kernel_size, strides, pads, alpha = check_conv_inputs(
        "xnor_conv", x, w_bits, alpha, kernel_size, strides, padding, in_features, C.WORD_BITS
    )
    backend, block_kwargs = resolve_xnor_backend("xnor_conv", backend, block_kwargs)
    kmap = xnor_kmap(x, kernel_size, strides, pads)
    return run_packed_conv(
        x,
        w_bits,
        alpha,
        None,
        kmap,
        weight_format="binary",
        kernel_size=kernel_size,
        strides=strides,
        pads=pads,
        pad_value=float(pad_value),
        path="xnor",
        matmul_backend=backend,
        block_items=tuple(sorted(block_kwargs.items())),
    )
