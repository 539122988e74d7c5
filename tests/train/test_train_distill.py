"""Distillation loss against a NumPy transcription of CE + lambda T^2 KL(p_t^T || p_s^T)."""

import jax
import jax.numpy as jnp
import numpy as np

from extremeq.train.distill import cross_entropy, distillation_loss


def _log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def reference(zs, zt, y, lam, T):
    ce = -np.mean(_log_softmax(zs)[np.arange(len(y)), y])
    log_pt, log_ps = _log_softmax(zt / T), _log_softmax(zs / T)
    kl = np.mean(np.sum(np.exp(log_pt) * (log_pt - log_ps), -1))
    return ce + lam * T**2 * kl


def test_distillation_loss_matches_numpy():
    rng = np.random.default_rng(1)
    zs = rng.standard_normal((16, 10)) * 3
    zt = rng.standard_normal((16, 10)) * 3
    y = rng.integers(0, 10, 16)
    for lam, T in [(0.0, 1.0), (1.0, 1.0), (0.7, 4.0), (2.0, 0.5)]:
        got = distillation_loss(
            jnp.asarray(zs, jnp.float32), jnp.asarray(zt, jnp.float32), jnp.asarray(y), alpha=lam, temperature=T
        )
        np.testing.assert_allclose(float(got), reference(zs, zt, y, lam, T), rtol=2e-5)
    np.testing.assert_allclose(
        float(cross_entropy(jnp.asarray(zs), jnp.asarray(y))), reference(zs, zt, y, 0.0, 1.0), rtol=1e-5
    )


def test_soft_term_gradient_and_teacher_is_constant():
    rng = np.random.default_rng(2)
    zs = jnp.asarray(rng.standard_normal((4, 5)), jnp.float32)
    zt = jnp.asarray(rng.standard_normal((4, 5)), jnp.float32)
    y = jnp.asarray([0, 1, 2, 3])
    lam, T = 0.5, 3.0
    gs, gt = jax.grad(lambda s, t: distillation_loss(s, t, y, alpha=lam, temperature=T), (0, 1))(zs, zt)
    np.testing.assert_array_equal(np.asarray(gt), 0.0)
    # d/dz_s of lam T^2 KL(p_t || p_s) (batch mean) = lam T (p_s^T - p_t^T) / B
    ps, pt = jax.nn.softmax(zs / T), jax.nn.softmax(zt / T)
    want = (jax.nn.softmax(zs) - jax.nn.one_hot(y, 5)) / 4 + lam * T * (ps - pt) / 4
    np.testing.assert_allclose(np.asarray(gs), np.asarray(want), rtol=1e-4, atol=1e-6)


def test_squared_hinge_matches_numpy_and_its_gradient():
    """mean_{i,k} max(0, 1 - t_ik z_ik)^2, t = 2 onehot(y) - 1; d/dz = -2 t max(0, 1 - t z) / (N K)."""
    from extremeq.train.losses import squared_hinge

    rng = np.random.default_rng(3)
    z = rng.normal(0, 1.5, (7, 10)).astype(np.float32)
    y = rng.integers(0, 10, 7)
    t = 2.0 * np.eye(10)[y] - 1.0
    margin = np.maximum(0.0, 1.0 - t * z)
    np.testing.assert_allclose(float(squared_hinge(jnp.asarray(z), jnp.asarray(y))), np.mean(margin**2), rtol=1e-6)
    g = jax.grad(squared_hinge)(jnp.asarray(z), jnp.asarray(y))
    np.testing.assert_allclose(np.asarray(g), -2.0 * t * margin / z.size, rtol=1e-5, atol=1e-8)
    # A confident correct output (z_y >= 1, others <= -1) costs nothing.
    perfect = -2.0 * np.ones((1, 10), np.float32)
    perfect[0, 4] = 2.0
    assert float(squared_hinge(jnp.asarray(perfect), jnp.asarray([4]))) == 0.0
