"""xnor_matmul equals the +-1 integer product exactly, on every backend and shape."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kernel_testing import (
    ON_ACCELERATOR,
    PALLAS,
    np_pack_signs,
    pm1_product,
    random_pm1,
)

from extremeq.kernels import xla as xla_kernels
from extremeq.kernels import (
    xnor_linear,
    xnor_linear_reference,
    xnor_matmul,
    xnor_matmul_reference,
)
from extremeq.kernels.tpu.xnor_matmul import xnor_matmul_tpu

SHAPES = [
    (1, 1, 1),
    (1, 1, 32),
    (3, 5, 33),
    (7, 9, 63),
    (2, 3, 64),
    (17, 40, 100),
    (33, 31, 257),
    (65, 20, 1000),
    (2, 3, 4097),
]
PALLAS_SHAPES = [(1, 1, 1), (17, 40, 100), (33, 31, 1057)]


def _case(seed, m, n, k):
    rng = np.random.default_rng(seed)
    a, b = random_pm1(rng, (m, k)), random_pm1(rng, (n, k))
    return a, b, np_pack_signs(a), np_pack_signs(b)


@pytest.mark.parametrize("backend", ["xla_popcount", "dot"])
@pytest.mark.parametrize("m,n,k", SHAPES)
def test_xla_backends_exact(backend, m, n, k):
    a, b, ab, bb = _case(m * 7 + n + k, m, n, k)
    out = xnor_matmul(ab, bb, k, backend=backend)
    assert out.dtype == jnp.int32 and out.shape == (m, n)
    np.testing.assert_array_equal(np.asarray(out), pm1_product(a, b))


@pytest.mark.parametrize("m,n,k", PALLAS_SHAPES)
def test_pallas_exact(m, n, k):
    a, b, ab, bb = _case(k, m, n, k)
    np.testing.assert_array_equal(np.asarray(xnor_matmul(ab, bb, k, backend=PALLAS)), pm1_product(a, b))


def test_reference_matches_numpy():
    a, b, ab, bb = _case(0, 5, 6, 70)
    ref = jax.jit(xnor_matmul_reference, static_argnums=2)
    np.testing.assert_array_equal(np.asarray(ref(ab, bb, 70)), pm1_product(a, b))


def test_equals_k_minus_twice_popcount():
    """The closed form of the docstring, computed bit by bit in NumPy."""
    k = 45
    a, b, ab, bb = _case(1, 4, 3, k)
    abits, bbits = (a > 0), (b > 0)
    pop = (abits[:, None, :] != bbits[None, :, :]).sum(-1)
    np.testing.assert_array_equal(np.asarray(xnor_matmul(ab, bb, k, backend="xla_popcount")), k - 2 * pop)


@pytest.mark.parametrize("backend", ["xla_popcount", "dot", PALLAS])
def test_dirty_padding_bits_never_count(backend):
    """Words from another source may carry 1s past K; the result must ignore them."""
    a, b, ab, bb = _case(3, 4, 5, 40)
    ab = ab.copy()
    ab[:, -1] |= np.uint32(0xFFFFFF00)
    np.testing.assert_array_equal(np.asarray(xnor_matmul(ab, bb, 40, backend=backend)), pm1_product(a, b))


@pytest.mark.parametrize("backend", ["dot", PALLAS])
def test_scaled_epilogue(backend):
    a, b, ab, bb = _case(4, 9, 6, 77)
    rng = np.random.default_rng(5)
    ax, aw = rng.uniform(0.1, 2, 9).astype(np.float32), rng.uniform(0.1, 2, 6).astype(np.float32)
    out = xnor_matmul(ab, bb, 77, alpha_x=ax, alpha_w=aw, backend=backend)
    assert out.dtype == jnp.float32
    want = pm1_product(a, b) * ax[:, None].astype(np.float64) * aw[None, :]
    np.testing.assert_allclose(np.asarray(out), want, rtol=1e-6)
    only_w = xnor_matmul(ab, bb, 77, alpha_w=aw, backend="xla_popcount")
    np.testing.assert_allclose(np.asarray(only_w), pm1_product(a, b) * aw[None, :], rtol=1e-6)


@pytest.mark.parametrize("split_k", [3])
def test_split_k_partial_sums(split_k):
    """The K loop split over programs (small-M GPU grids): int32 partial sums, then epilogue."""
    m, n, k = 5, 7, 32 * 32 * 5 + 9  # 6 K steps of 32 words, split 3 ways
    a, b, ab, bb = _case(8, m, n, k)
    ax, aw = np.linspace(0.5, 1.5, m).astype(np.float32), np.linspace(1, 2, n).astype(np.float32)
    out = xnor_matmul(ab, bb, k, alpha_x=ax, alpha_w=aw, backend=PALLAS, split_k=split_k)
    np.testing.assert_allclose(np.asarray(out), pm1_product(a, b) * ax[:, None] * aw[None, :], rtol=1e-6)


@pytest.mark.skipif(ON_ACCELERATOR, reason="TPU interpret mode is a CPU simulation")
@pytest.mark.parametrize("scaled", [True])
def test_tpu_kernel_interpreted(scaled):
    """The Mosaic (TPU) kernel body, run by the TPU interpreter on CPU: multi-step K grid."""
    from jax.experimental.pallas import tpu as pltpu

    m, n, k = 9, 130, 32 * 129 + 5  # 2 K steps of 128 words, 2 column tiles
    a, b, ab, bb = _case(6, m, n, k)
    args = (jnp.ones(m), jnp.full((n,), 2.0)) if scaled else ()
    out = xnor_matmul_tpu(ab, bb, *args, k=k, block_n=128, interpret=pltpu.InterpretParams())
    np.testing.assert_array_equal(np.asarray(out), pm1_product(a, b) * (2 if scaled else 1))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    m=st.integers(1, 40),
    n=st.integers(1, 40),
    k=st.integers(1, 300),
    seed=st.integers(0, 2**16),
    backend=st.sampled_from(["xla_popcount", "dot"]),
)
def test_property_xla(m, n, k, seed, backend):
    a, b, ab, bb = _case(seed, m, n, k)
    np.testing.assert_array_equal(np.asarray(xnor_matmul(ab, bb, k, backend=backend)), pm1_product(a, b))


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(m=st.integers(1, 24), n=st.integers(1, 24), k=st.integers(1, 200), seed=st.integers(0, 2**16))
def test_property_pallas(m, n, k, seed):
    a, b, ab, bb = _case(seed, m, n, k)
    np.testing.assert_array_equal(np.asarray(xnor_matmul(ab, bb, k, backend=PALLAS)), pm1_product(a, b))


@settings(max_examples=4, deadline=None)
@given(k=st.integers(1, 200), seed=st.integers(0, 2**16))
def test_property_antisymmetry_and_self(k, seed):
    """x . x = K and x . (-x) = -K: the extreme values of the popcount identity."""
    rng = np.random.default_rng(seed)
    a = random_pm1(rng, (3, k))
    ab, nb = np_pack_signs(a), np_pack_signs(-a)
    np.testing.assert_array_equal(np.diag(np.asarray(xnor_matmul(ab, ab, k, backend="xla_popcount"))), k)
    np.testing.assert_array_equal(np.diag(np.asarray(xnor_matmul(ab, nb, k, backend="dot"))), -k)


def test_xnor_linear_matches_float_layer():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(2, 3, 50)).astype(np.float32)
    kernel = rng.normal(size=(50, 11)).astype(np.float32)
    from extremeq.kernels import pack_binary_weights

    w_bits, alpha = pack_binary_weights(kernel)
    np.testing.assert_allclose(np.asarray(alpha), np.abs(kernel).mean(0), rtol=1e-6)
    want = jax.jit(xnor_linear_reference)(x, kernel, alpha)
    got = xnor_linear(x, w_bits, alpha, backend="xla_popcount")
    assert got.shape == (2, 3, 11)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)
    # Closed form for one entry: XNOR-Net Eq. 11 with beta = mean |x|.
    s = (np.where(x[0, 0] >= 0, 1, -1) * np.where(kernel[:, 4] >= 0, 1, -1)).sum()
    np.testing.assert_allclose(
        float(want[0, 0, 4]), s * np.abs(x[0, 0]).mean() * np.abs(kernel[:, 4]).mean(), rtol=1e-5
    )


@pytest.mark.parametrize("m,n,k", [(3, 5, 33), (7, 9, 63), (2, 3, 4097)])
def test_dot_backend_gpu_formulation_exact(monkeypatch, m, n, k):
    """The GPU form of the 'dot' backend (bfloat16 +-1 operands, float32 sums) is exact; run here by
    pretending to be on a GPU. The shapes are those where XLA's int8 dot was wrong on an H100."""
    from extremeq.kernels import backends
    from extremeq.kernels.xla import xnor_matmul_dot

    monkeypatch.setattr(backends, "platform", lambda: "gpu")
    a, b, ab, bb = _case(m + n + k, m, n, k)
    xnor_matmul_dot.clear_cache()  # earlier tests compiled the int8 form for these shapes
    try:
        out = xnor_matmul_dot(ab, bb, k=k)
        text = xnor_matmul_dot.lower(ab, bb, k=k).as_text()
    finally:
        xnor_matmul_dot.clear_cache()
    assert "bf16" in text and "xi8" not in text  # the bfloat16 form ran
    assert out.dtype == jnp.int32
    np.testing.assert_array_equal(np.asarray(out), pm1_product(a, b))


@pytest.mark.parametrize("m", [1, xla_kernels.SMALL_M, xla_kernels.SMALL_M + 1])
def test_xla_popcount_both_sides_of_the_small_m_switch(m):
    """Rows <= SMALL_M reduce over the word axis in place, more rows scan over word chunks: same ints."""
    a, b, ab, bb = _case(m, m, 37, 1000)
    np.testing.assert_array_equal(np.asarray(xla_kernels.xnor_matmul_xla_popcount(ab, bb, k=1000)), pm1_product(a, b))
