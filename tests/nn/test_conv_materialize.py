"""extremeq.nn.conv: materialize returns its input bit for bit, the conv equals XLA's, gradients too."""

import jax
import jax.numpy as jnp
import numpy as np

from extremeq.nn import conv as C


def test_materialize_is_the_identity_bit_for_bit():
    x = jnp.asarray([1.5, -0.0, 0.0, -3.25, np.inf, -np.inf, np.nan, 1e-40], jnp.float32)
    for f in (C.materialize, jax.jit(C.materialize)):
        got = np.asarray(f(x))
        np.testing.assert_array_equal(got.view(np.uint32), np.asarray(x).view(np.uint32))


def test_materialize_gradient_is_the_identity():
    w = jnp.arange(12.0).reshape(3, 4) - 5.0
    g = jax.grad(lambda x: jnp.sum(C.materialize(x) * w))(jnp.ones((3, 4)))
    np.testing.assert_array_equal(np.asarray(g), np.asarray(w))


def test_conv_equals_xla_conv_values_and_gradients():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, 9, 9, 5)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((3, 3, 5, 4)), jnp.float32)

    def loss(conv, x, w):
        h = jnp.maximum(x * 1.5 + 0.25, 0.0)  # an elementwise producer, as BatchNorm + ReLU
        y = conv(h, w, (2, 2), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return jnp.sum(jnp.sin(y)), y

    (l0, y0), g0 = jax.jit(
        jax.value_and_grad(lambda x, w: loss(jax.lax.conv_general_dilated, x, w), (0, 1), has_aux=True)
    )(x, w)
    (l1, y1), g1 = jax.jit(jax.value_and_grad(lambda x, w: loss(C.conv_general_dilated, x, w), (0, 1), has_aux=True))(
        x, w
    )
    np.testing.assert_allclose(np.asarray(y1), np.asarray(y0), rtol=1e-6, atol=1e-6)
    for a, b in zip(g1, g0):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)


def _resnet_loss_and_grads(method):
    from flax import nnx

    from extremeq.nn import method_rules, quantize_model
    from extremeq.nn.models import build_model

    model = build_model({"name": "resnet20"}, 10, (16, 16, 3), nnx.Rngs(0))
    if method != "fp":
        quantize_model(model, method_rules(method))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((4, 16, 16, 3)), jnp.float32)
    y = jnp.arange(4) % 10

    def loss(p):
        logits = nnx.merge(graphdef, p, rest)(x, train=False)
        return jnp.mean(jax.nn.logsumexp(logits, -1) - logits[jnp.arange(4), y])

    return jax.jit(jax.value_and_grad(loss))(params)


def test_zoo_resnet_step_same_with_and_without_materialize(monkeypatch):
    """The zoo's convolutions and QuantConv run through conv_general_dilated: switching the
    materialization off (XLA's own fusion) gives the same loss and gradients."""
    for method in ("fp", "xnor"):
        l1, g1 = _resnet_loss_and_grads(method)
        monkeypatch.setattr(C, "MATERIALIZE_ON_CPU", False)
        l0, g0 = _resnet_loss_and_grads(method)
        monkeypatch.setattr(C, "MATERIALIZE_ON_CPU", True)
        np.testing.assert_allclose(float(l1), float(l0), rtol=1e-6)
        for a, b in zip(jax.tree_util.tree_leaves(g1), jax.tree_util.tree_leaves(g0)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)


def test_zoo_and_quantconv_route_through_materialize(monkeypatch):
    """Every 3x3 conv of an XNOR ResNet-20 (the float stem's nnx.Conv and the QuantConvs) calls
    materialize: one platform switch per convolution (19) in the traced forward pass, none when off."""
    from flax import nnx

    from extremeq.nn import method_rules, quantize_model
    from extremeq.nn.models import build_model

    model = build_model({"name": "resnet20"}, 10, (16, 16, 3), nnx.Rngs(0))
    quantize_model(model, method_rules("xnor"))
    model.eval()
    x = jnp.zeros((2, 16, 16, 3), jnp.float32)
    assert str(jax.make_jaxpr(lambda v: model(v))(x)).count("platform_index") == 19
    monkeypatch.setattr(C, "MATERIALIZE_ON_CPU", False)
    assert str(jax.make_jaxpr(lambda v: model(v))(x)).count("platform_index") == 0
