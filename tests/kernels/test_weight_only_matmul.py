"""binary/ternary_weight_matmul equal dequantize-then-dot within float tolerance."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kernel_testing import ON_ACCELERATOR, PALLAS, np_pack_ternary

from extremeq.kernels import (
    binary_weight_matmul,
    binary_weight_matmul_reference,
    pack_binary_weights,
    pack_ternary_weights,
    ternary_weight_matmul,
    ternary_weight_matmul_reference,
)
from extremeq.packing import np_pack_bits_reference

OPS = {
    "binary": (binary_weight_matmul, binary_weight_matmul_reference),
    "ternary": (ternary_weight_matmul, ternary_weight_matmul_reference),
}
TOL = {jnp.float32: dict(rtol=1e-5, atol=1e-4), jnp.bfloat16: dict(rtol=2e-2, atol=5e-2)}


def _case(kind, seed, m, n, k, dtype):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(m, k)).astype(np.float32)
    if kind == "binary":
        q = rng.choice([-1, 1], size=(n, k))
        words = np_pack_bits_reference(q > 0)
    else:
        q = rng.integers(-1, 2, size=(n, k))
        words = np_pack_ternary(q)
    alpha = rng.uniform(0.2, 2.0, n).astype(np.float32)
    want = x.astype(np.float64) @ (q * alpha[:, None]).T
    return jnp.asarray(x, dtype), words, alpha, want


@pytest.mark.parametrize("kind", ["binary", "ternary"])
@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (5, 9, 100), (3, 40, 1000)])
def test_dot_backend_equals_dequantized(kind, m, n, k):
    op, ref = OPS[kind]
    x, w, alpha, want = _case(kind, k + n, m, n, k, jnp.float32)
    got = op(x, w, alpha, backend="dot")
    assert got.shape == (m, n) and got.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(got), want, **TOL[jnp.float32])
    if (m, n, k) == (5, 9, 100):
        np.testing.assert_allclose(np.asarray(jax.jit(ref)(x, w, alpha)), want, **TOL[jnp.float32])


@pytest.mark.parametrize(
    "kind,dtype,m,n,k",
    [
        ("binary", jnp.float32, 1, 5, 33),
        ("binary", jnp.bfloat16, 19, 20, 300),
        ("ternary", jnp.float32, 19, 20, 300),
        ("ternary", jnp.bfloat16, 1, 5, 33),
    ],
)
def test_pallas_equals_dequantized(kind, dtype, m, n, k):
    op, ref = OPS[kind]
    x, w, alpha, _ = _case(kind, m + k, m, n, k, dtype)
    got = op(x, w, alpha, backend=PALLAS)
    assert got.dtype == dtype and got.shape == (m, n)
    want = jax.jit(ref)(x.astype(jnp.float32), w, alpha)  # the bf16-rounded x, exact weights
    np.testing.assert_allclose(np.asarray(got, np.float32), np.asarray(want), **TOL[dtype])


def test_split_k_partial_sums():
    """K split over 2 programs (the small-M GPU grid): float32 partials added, then scaled."""
    x, w, alpha, want = _case("ternary", 9, 3, 20, 16 * 32 * 3 + 5, jnp.float32)
    got = ternary_weight_matmul(x, w, alpha, backend=PALLAS, split_k=2)
    np.testing.assert_allclose(np.asarray(got), want, **TOL[jnp.float32])


@pytest.mark.skipif(ON_ACCELERATOR, reason="TPU interpret mode is a CPU simulation")
@pytest.mark.parametrize("kind", ["ternary"])
def test_tpu_kernel_interpreted(kind):
    from jax.experimental.pallas import tpu as pltpu

    from extremeq.kernels.slots import decode_sign_slot, decode_ternary_slot
    from extremeq.kernels.tpu.weight_only import weight_only_matmul_tpu

    decode, per_word = (decode_sign_slot, 32) if kind == "binary" else (decode_ternary_slot, 16)
    m, n, k = 3, 130, per_word * 129 + 3  # 2 K steps of 128 words, 2 column tiles
    x, w, alpha, want = _case(kind, 11, m, n, k, jnp.float32)
    got = weight_only_matmul_tpu(
        x,
        w,
        jnp.asarray(alpha),
        decode=decode,
        per_word=per_word,
        name=kind,
        block_n=128,
        interpret=pltpu.InterpretParams(),
    )
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-3)


def test_leading_dims_and_scalar_alpha():
    x, w, _, _ = _case("binary", 2, 6, 4, 40, jnp.float32)
    got = binary_weight_matmul(x.reshape(2, 3, 40), w, 0.5, backend="dot")
    want = binary_weight_matmul_reference(x, w, jnp.full((4,), 0.5))
    np.testing.assert_allclose(np.asarray(got).reshape(6, 4), np.asarray(want), rtol=1e-5, atol=1e-5)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    m=st.integers(1, 20),
    n=st.integers(1, 20),
    k=st.integers(1, 200),
    seed=st.integers(0, 2**16),
    kind=st.sampled_from(["binary", "ternary"]),
)
def test_property_dot(m, n, k, seed, kind):
    op, _ = OPS[kind]
    x, w, alpha, want = _case(kind, seed, m, n, k, jnp.float32)
    np.testing.assert_allclose(np.asarray(op(x, w, alpha, backend="dot")), want, **TOL[jnp.float32])


@settings(max_examples=2, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    m=st.integers(1, 20),
    n=st.integers(1, 20),
    k=st.integers(1, 100),
    seed=st.integers(0, 2**16),
    kind=st.sampled_from(["binary", "ternary"]),
)
def test_property_pallas(m, n, k, seed, kind):
    op, _ = OPS[kind]
    x, w, alpha, want = _case(kind, seed, m, n, k, jnp.float32)
    np.testing.assert_allclose(np.asarray(op(x, w, alpha, backend=PALLAS)), want, **TOL[jnp.float32])


def test_pack_binary_weights_roundtrip():
    rng = np.random.default_rng(3)
    kernel = rng.normal(size=(70, 6)).astype(np.float32)
    w, alpha = pack_binary_weights(kernel)
    assert w.shape == (6, 3) and w.dtype == jnp.uint32
    np.testing.assert_allclose(np.asarray(alpha), np.abs(kernel).mean(0), rtol=1e-6)
    x = rng.normal(size=(2, 70)).astype(np.float32)
    want = x @ (np.where(kernel >= 0, 1.0, -1.0) * np.abs(kernel).mean(0))
    np.testing.assert_allclose(np.asarray(binary_weight_matmul(x, w, alpha, backend="dot")), want, rtol=1e-5, atol=1e-4)


def test_pack_ternary_weights_recovers_twn_scale():
    rng = np.random.default_rng(4)
    t = rng.integers(-1, 2, size=(50, 5))
    scales = np.array([0.3, 1.0, 2.5, 0.7, 0.01], np.float32)
    q = t * scales
    q[:, 1] = 0.0  # an all-zero column: alpha 0, result 0
    w, alpha = pack_ternary_weights(q)
    np.testing.assert_allclose(np.asarray(alpha), [0.3, 0.0, 2.5, 0.7, 0.01], rtol=1e-6)
    x = rng.normal(size=(3, 50)).astype(np.float32)
    np.testing.assert_allclose(
        np.asarray(ternary_weight_matmul(x, w, alpha, backend="dot")), x @ q, rtol=1e-5, atol=1e-5
    )


def test_pack_ternary_weights_rejects_ttq_and_latent():
    with pytest.raises(ValueError, match="TTQ"):
        pack_ternary_weights(np.array([[0.5], [-0.3], [0.0]], np.float32))
    with pytest.raises(ValueError, match="Quantize first"):
        pack_ternary_weights(np.array([[0.5], [0.3]], np.float32))


@pytest.mark.parametrize("kind", ["binary", "ternary"])
@pytest.mark.parametrize("m", [1, 3, 8, 9])
def test_dot_backend_is_exact_for_integer_activations_on_both_sides_of_small_m(kind, m):
    """BitNet's product: 8-bit activation codes times ternary / sign codes is an exact integer sum
    (float32, K * 127 < 2^24), whether the CPU path runs one fused matvec per row (M <= SMALL_M)
    or one dot; the NumPy int64 product is the reference."""
    from extremeq.kernels.xla import SMALL_M

    assert SMALL_M == 8
    op = OPS[kind][0]
    rng = np.random.default_rng(m)
    k, n = 200, 37
    x = rng.integers(-127, 128, size=(m, k))
    q = rng.choice([-1, 1], size=(n, k)) if kind == "binary" else rng.integers(-1, 2, size=(n, k))
    words = np_pack_bits_reference(q > 0) if kind == "binary" else np_pack_ternary(q)
    got = jax.jit(lambda a, w: op(a, w, 1.0, backend="dot"))(jnp.asarray(x, jnp.float32), words)
    np.testing.assert_array_equal(np.asarray(got), x @ q.T)


def test_matvec_of_a_jitted_layer_stack_holds_no_decoded_matrix():
    """At M = 1 on the CPU the unpack is fused into each matvec: a jitted stack of 8 packed
    768 x 768 layers needs far less scratch memory than one decoded float32 matrix (2.25 MiB); the
    unfused form hoisted every layer's decoded matrix to the program start (8 x 2.25 MiB)."""
    if jax.default_backend() != "cpu":
        pytest.skip("the fusion is XLA:CPU's")
    rng = np.random.default_rng(0)
    ws = [jnp.asarray(np_pack_ternary(rng.integers(-1, 2, size=(768, 768)))) for _ in range(8)]

    def stack(x, ws):
        for w in ws:
            x = jnp.tanh(ternary_weight_matmul(x, w, 1.0, backend="dot"))
        return x

    compiled = jax.jit(stack).lower(jnp.ones((1, 768), jnp.float32), ws).compile()
    memory = compiled.memory_analysis()
    if memory is None:
        pytest.skip("this jaxlib reports no memory analysis")
    assert memory.temp_size_in_bytes < 768 * 768 * 4 / 4
