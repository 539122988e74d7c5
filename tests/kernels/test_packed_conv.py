"""packed_conv: every path (XLA conv with the border term, patches @ packed weights, XNOR-popcount)
against the float reference that pads the input explicitly, and backend="auto" per platform."""

import jax.numpy as jnp
import numpy as np
import pytest
from kernel_testing import ON_ACCELERATOR, np_pack_signs, np_pack_ternary

from extremeq.kernels import backends, packed_conv, packed_conv_reference
from extremeq.kernels.xla import padded_conv

CASES = [  # (H, W, C, O, kernel, strides, padding)
    (7, 6, 5, 4, 3, 1, "SAME"),  # C*kh*kw = 45: padding bits in the last word
    (8, 8, 3, 6, 3, 2, ((1, 0), (2, 1))),
    (5, 5, 2, 3, (3, 2), 1, "VALID"),
    (6, 7, 40, 5, 3, 2, "SAME"),  # two words per pixel on the XNOR path, 24 padding bits in the second
]


def _case(seed, fmt, h, w, c, o, ks, binary_inputs):
    rng = np.random.default_rng(seed)
    kh, kw = (ks, ks) if isinstance(ks, int) else ks
    x = rng.normal(size=(2, h, w, c)).astype(np.float32)
    if binary_inputs:
        x = np.where(x >= 0, 1.0, -1.0).astype(np.float32)
    if fmt == "binary":
        q = rng.choice([-1, 1], size=(kh, kw, c, o))
        words = np_pack_signs(q.transpose(3, 2, 0, 1).reshape(o, -1))
    else:
        q = rng.integers(-1, 2, size=(kh, kw, c, o))
        words = np_pack_ternary(q.transpose(3, 2, 0, 1).reshape(o, -1))
    alpha = rng.uniform(0.5, 2.0, o).astype(np.float32)
    return x, q.astype(np.float32), words.astype(np.uint32), alpha


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("pad_value", [0.0, 1.0, -0.5])
@pytest.mark.parametrize(
    "path,fmt,binary_inputs",
    [
        ("conv", "binary", False),
        ("conv", "ternary", True),
        ("patches", "binary", True),
        ("patches", "ternary", False),
        ("xnor", "binary", True),
    ],
)
def test_paths_equal_explicitly_padded_reference(case, pad_value, path, fmt, binary_inputs):
    h, w, c, o, ks, st, pad = case
    x, q, words, alpha = _case(h + c, fmt, h, w, c, o, ks, binary_inputs)
    got = packed_conv(
        x,
        words,
        alpha,
        weight_format=fmt,
        kernel_size=ks,
        strides=st,
        padding=pad,
        pad_value=pad_value,
        binary_inputs=binary_inputs,
        backend=path,
    )
    want = packed_conv_reference(x, q * alpha, strides=st, padding=pad, pad_value=pad_value)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("path", ["conv", "patches"])
def test_ttq_scales_on_plus_and_minus_codes(path):
    x, q, words, _ = _case(3, "ternary", 6, 6, 4, 5, 3, False)
    wp, wn = np.float32(0.7), np.float32(1.3)
    got = packed_conv(x, words, wp, alpha_neg=wn, weight_format="ternary", kernel_size=3, backend=path)
    kernel = np.where(q > 0, wp, np.where(q < 0, -wn, 0.0))
    want = packed_conv_reference(x, kernel, padding="SAME")
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-4)


def test_border_term_equals_explicit_padding_grouped():
    """padded_conv (XLA's own padding + border term) for a grouped convolution, +1 padding."""
    rng = np.random.default_rng(4)
    x = rng.choice([-1.0, 1.0], size=(2, 6, 5, 4)).astype(np.float32)
    kernel = rng.normal(size=(3, 3, 2, 6)).astype(np.float32)  # 2 groups of 2 channels
    pads = ((1, 1), (2, 0))
    got = padded_conv(
        jnp.asarray(x), jnp.asarray(kernel), strides=(1, 2), pads=pads, pad_value=1.0, feature_group_count=2
    )
    want = packed_conv_reference(x, kernel, strides=(1, 2), padding=pads, pad_value=1.0, feature_group_count=2)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-4)


@pytest.mark.skipif(ON_ACCELERATOR, reason="checks the CPU choice")
def test_auto_on_cpu_is_xnor_for_binary_else_the_xla_conv():
    assert backends.resolve_conv("auto", binary_inputs=True, weight_format="binary") == "xnor"
    for binary_inputs, fmt in [(False, "binary"), (True, "ternary"), (False, "ternary")]:
        assert backends.resolve_conv("auto", binary_inputs=binary_inputs, weight_format=fmt) == "conv"


def test_auto_on_accelerators(monkeypatch):
    monkeypatch.setattr(backends, "platform", lambda: "gpu")
    assert backends.resolve_conv("auto", binary_inputs=True, weight_format="binary") == "xnor"
    assert backends.resolve_conv("auto", binary_inputs=False, weight_format="binary") == "patches"
    assert backends.resolve_conv("auto", binary_inputs=True, weight_format="ternary") == "patches"


def test_bad_requests():
    x, q, words, alpha = _case(0, "ternary", 5, 5, 2, 3, 3, False)
    with pytest.raises(ValueError, match="'xnor' needs binary_inputs=True and weight_format='binary'"):
        packed_conv(x, words, alpha, weight_format="ternary", kernel_size=3, backend="xnor")
    with pytest.raises(ValueError, match="weight_format 'int4' unknown"):
        packed_conv(x, words, alpha, weight_format="int4", kernel_size=3)
    with pytest.raises(ValueError, match="alpha_neg .* needs ternary"):
        packed_conv(
            x,
            np_pack_signs(np.ascontiguousarray(q.reshape(-1, 3).T)),
            alpha,
            alpha_neg=1.0,
            weight_format="binary",
            kernel_size=3,
        )
    with pytest.raises(ValueError, match="words per filter"):
        packed_conv(x[..., :1], words, alpha, weight_format="ternary", kernel_size=3)
    with pytest.raises(ValueError, match="backend 'fast' unknown"):
        packed_conv(x, words, alpha, weight_format="ternary", kernel_size=3, backend="fast")
