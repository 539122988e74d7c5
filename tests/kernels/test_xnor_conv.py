"""xnor_conv equals conv(sign x, sign W) * K * alpha (XNOR-Net), the integer part exactly."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from kernel_testing import PALLAS

from extremeq.kernels import (
    conv_alpha,
    pack_conv_weights,
    xnor_conv,
    xnor_conv_reference,
    xnor_kmap,
)

CASES = [
    # (B, H, W, C, O, kernel, strides, padding)
    (2, 7, 6, 3, 5, 3, 1, "SAME"),
    (1, 8, 8, 16, 4, 3, 2, "SAME"),
    (2, 5, 5, 2, 3, (3, 2), 1, "VALID"),
    (1, 6, 6, 4, 2, 3, 2, ((1, 0), (2, 1))),
    (1, 4, 4, 40, 3, 1, 1, "SAME"),  # 1x1 conv, K = 40 crosses a word boundary
]


def _case(seed, b, h, w, c, o, ks):
    rng = np.random.default_rng(seed)
    kh, kw = (ks, ks) if isinstance(ks, int) else ks
    x = rng.normal(size=(b, h, w, c)).astype(np.float32)
    kernel = rng.normal(size=(kh, kw, c, o)).astype(np.float32)
    return x, kernel


def _numpy_binary_conv(x, kernel, strides, padding):
    """Direct loops over output pixels: sum over the window of sign(x_pad) * sign(W), zero pad."""
    kh, kw, c, o = kernel.shape
    sh, sw = (strides, strides) if isinstance(strides, int) else strides
    pads = lax.padtype_to_pads(x.shape[1:3], (kh, kw), (sh, sw), padding) if isinstance(padding, str) else padding
    sx = np.pad(np.where(x >= 0, 1, -1), [(0, 0), tuple(pads[0]), tuple(pads[1]), (0, 0)])
    swk = np.where(kernel >= 0, 1, -1)
    ho = (sx.shape[1] - kh) // sh + 1
    wo = (sx.shape[2] - kw) // sw + 1
    out = np.zeros((x.shape[0], ho, wo, o), np.int64)
    for i in range(ho):
        for j in range(wo):
            win = sx[:, i * sh : i * sh + kh, j * sw : j * sw + kw, :]
            out[:, i, j, :] = np.einsum("bhwc,hwco->bo", win, swk)
    return out


@pytest.mark.parametrize("case,backend", [(c, "xla_popcount") for c in CASES] + [(c, "dot") for c in CASES[:2]])
def test_binary_conv_integer_part_exact(case, backend):
    b, h, w, c, o, ks, st, pad = case
    x, kernel = _case(1, b, h, w, c, o, ks)
    # alpha = 1 and a K-map of 1 (|x| = 1 everywhere) leave the integer convolution,
    # except where zero padding enters the window mean: divide K out exactly there.
    xs = np.sign(x) + (x == 0)
    got = xnor_conv(xs, pack_conv_weights(kernel), 1.0, kernel_size=ks, strides=st, padding=pad, backend=backend)
    kmap = np.asarray(xnor_kmap(xs, ks, st, pad))
    counts = np.asarray(got) / kmap[..., None]
    np.testing.assert_allclose(counts, _numpy_binary_conv(x, kernel, st, pad), atol=1e-4)


@pytest.mark.parametrize("case", CASES[:4])
def test_matches_float_reference(case):
    b, h, w, c, o, ks, st, pad = case
    x, kernel = _case(2, b, h, w, c, o, ks)
    alpha = conv_alpha(kernel)
    want = jax.jit(xnor_conv_reference, static_argnums=(3, 4))(x, kernel, alpha, st, pad)
    got = xnor_conv(x, pack_conv_weights(kernel), alpha, kernel_size=ks, strides=st, padding=pad, backend="dot")
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("pad", ["SAME"])  # VALID (fused scale epilogue) runs on the XLA paths
def test_pallas_backend(pad):
    x, kernel = _case(3, 1, 6, 5, 5, 4, 3)
    alpha = conv_alpha(kernel)
    want = xnor_conv_reference(x, kernel, alpha, 1, pad)
    got = xnor_conv(x, pack_conv_weights(kernel), alpha, kernel_size=3, padding=pad, backend=PALLAS)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)


def test_kmap_is_window_mean_of_channel_mean():
    """XNOR-Net Sec. 3.2: A = sum_c |I| / c, K = A * k with k = 1/(kh*kw); closed form at one pixel."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(1, 5, 5, 3)).astype(np.float32)
    kmap = np.asarray(xnor_kmap(x, 3, 1, "SAME"))
    a = np.abs(x).mean(-1)[0]
    np.testing.assert_allclose(kmap[0, 2, 2], a[1:4, 1:4].sum() / 9, rtol=1e-6)
    np.testing.assert_allclose(kmap[0, 0, 0], a[0:2, 0:2].sum() / 9, rtol=1e-6)  # zero-padded corner


def test_conv_alpha_is_mean_abs_per_filter():
    kernel = np.arange(2 * 2 * 3 * 2, dtype=np.float32).reshape(2, 2, 3, 2) - 10
    np.testing.assert_allclose(np.asarray(conv_alpha(kernel)), np.abs(kernel).reshape(-1, 2).mean(0))


def test_bad_inputs():
    x, kernel = _case(0, 1, 5, 5, 4, 2, 3)  # C*kh*kw = 36: 2 words; 3 channels would need 1
    wb = pack_conv_weights(kernel)
    with pytest.raises(ValueError, match="words per filter"):
        xnor_conv(x[..., :3], wb, 1.0, kernel_size=3)
    with pytest.raises(ValueError, match="NHWC"):
        xnor_conv(x[0], wb, 1.0, kernel_size=3)
    with pytest.raises(ValueError, match="padding"):
        xnor_conv(x, wb, 1.0, kernel_size=3, padding="FULL")
    with pytest.raises(TypeError, match="uint32"):
        xnor_conv(x, wb.astype(jnp.int32), 1.0, kernel_size=3)
    with pytest.raises(ValueError, match="HWIO"):
        pack_conv_weights(kernel[0])
