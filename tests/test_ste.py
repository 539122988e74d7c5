"""Each estimator's gradient equals its closed form, under jit and vmap."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from extremeq import ste

# Many points, including the clip edges (+-1, +-clip_value), zero, and beyond.
POINTS = np.concatenate([np.linspace(-3, 3, 241), [-1.0, 1.0, 0.0, -0.5, 0.5, 2.5, -2.5]]).astype(np.float32)


def closed_form(name, x, clip_value=1.0, beta=1.0):
    x = x.astype(np.float64)
    if name == "ste":
        return np.ones_like(x)
    if name == "clipped":
        return (np.abs(x) <= clip_value).astype(np.float64)
    if name == "tanh":
        return beta * (1.0 / np.cosh(beta * x)) ** 2
    if name == "approx_sign":
        return np.where(np.abs(x) <= 1, 2 - 2 * np.abs(x), 0.0)
    if name == "swish_sign":
        return beta * (2 - beta * x * np.tanh(beta * x / 2)) / (1 + np.cosh(beta * x))
    raise AssertionError(name)


CASES = [
    ("ste", {}),
    ("clipped", {"clip_value": 1.0}),
    ("clipped", {"clip_value": 0.5}),
    ("tanh", {"beta": 1.0}),
    ("tanh", {"beta": 3.0}),
    ("approx_sign", {}),
    ("swish_sign", {"beta": 5.0}),
    ("swish_sign", {"beta": 2.0}),
]


@pytest.mark.parametrize("name,kw", CASES)
def test_gradient_matches_closed_form_under_jit_and_vmap(name, kw):
    est = ste.get_estimator(name, **kw)
    g = jax.jit(jax.vmap(jax.grad(lambda v: est(v))))(jnp.asarray(POINTS))
    want = closed_form(name, POINTS, **({"beta": 5.0} if name == "swish_sign" and not kw else kw))
    np.testing.assert_allclose(np.asarray(g), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name,kw", CASES)
def test_forward_is_sign_with_sign0_positive(name, kw):
    est = ste.get_estimator(name, **kw)
    y = jax.jit(est)(jnp.asarray(POINTS))
    np.testing.assert_array_equal(np.asarray(y), np.where(POINTS >= 0, 1.0, -1.0))
    assert float(est(jnp.float32(0.0))) == 1.0


def test_clipped_edges_pass_exactly_at_clip_value():
    g = jax.grad(lambda v: ste.clipped_ste_sign(v, 0.5))
    assert float(g(jnp.float32(0.5))) == 1.0
    assert float(g(jnp.float32(-0.5))) == 1.0
    assert float(g(jnp.float32(0.5001))) == 0.0


def test_chain_rule_through_upstream_gradient():
    # d/dx sum(c * sign(x)) = c * grad(x)
    x = jnp.asarray(POINTS)
    c = jnp.linspace(-2, 2, x.size)
    g = jax.grad(lambda v: jnp.sum(c * ste.approx_sign(v)))(x)
    np.testing.assert_allclose(np.asarray(g), np.asarray(c) * closed_form("approx_sign", POINTS), rtol=1e-6, atol=1e-6)


def test_convenience_functions_match_estimators():
    x = jnp.asarray(POINTS)
    for fn, est in [
        (ste.ste_sign, ste.Estimator("ste")),
        (ste.tanh_sign, ste.Estimator("tanh")),
        (ste.swish_sign, ste.Estimator("swish_sign", beta=5.0)),
    ]:
        np.testing.assert_allclose(jax.vmap(jax.grad(fn))(x), jax.vmap(jax.grad(est))(x))


def test_unknown_estimator_lists_valid_names():
    with pytest.raises(ValueError, match="clipped"):
        ste.get_estimator("clippd")
    with pytest.raises(ValueError, match="clip_value"):
        ste.get_estimator("clipped", clip=1.0)
    with pytest.raises(ValueError, match="beta must be > 0"):
        ste.Estimator("tanh", beta=-1.0)
