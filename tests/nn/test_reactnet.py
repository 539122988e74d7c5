"""Bi-Real Net / ReActNet blocks: RSign and RPReLU against their formulas and closed-form
gradients, the per-conv shortcut wiring, parameter counts by hand, and the precision policy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from extremeq.nn import method_rules, quantize_model
from extremeq.nn.models import build_model
from extremeq.nn.models.reactnet import (
    REAL_VALUED_LAYERS,
    BiRealResNet,
    BiRealUnit,
    RPReLU,
    RSign,
    rprelu,
    rsign,
)


def test_rsign_forward_and_threshold_gradient_closed_form():
    x = jnp.array([[-1.5, 0.2, 0.9], [0.05, 0.7, 3.0]])
    t = jnp.array([0.1, -0.3, 0.4])
    np.testing.assert_array_equal(rsign(x, t), np.where(np.asarray(x - t) >= 0, 1.0, -1.0))
    # d/dt sum(c * rsign(x, t)) = -sum_rows c * (2 - 2|x - t|) 1{|x - t| <= 1}  (approx_sign)
    c = jnp.array([[1.0, 2.0, -1.0], [0.5, 1.0, 3.0]])
    g = jax.grad(lambda th: jnp.sum(c * rsign(x, th)))(t)
    z = np.asarray(x - t)
    want = -np.sum(np.asarray(c) * np.where(np.abs(z) <= 1, 2 - 2 * np.abs(z), 0.0), axis=0)
    np.testing.assert_allclose(g, want, rtol=1e-6)
    # The plain STE passes -sum_rows c.
    np.testing.assert_allclose(jax.grad(lambda th: jnp.sum(c * rsign(x, th, "ste")))(t), -np.sum(c, axis=0))


def test_rsign_module_equals_shift_then_sign():
    m = RSign(3)
    m.threshold[...] = jnp.array([0.5, -0.5, 0.0])
    x = jnp.array([[0.4, -0.6, 0.0]])
    np.testing.assert_allclose(m.shift(x), [[-0.1, -0.1, 0.0]], atol=1e-7)
    np.testing.assert_array_equal(m(x), [[-1.0, -1.0, 1.0]])


def test_rprelu_formula_and_gradients():
    x = jnp.array([-2.0, -0.5, 0.5, 3.0])
    gamma, beta, zeta = jnp.full(4, 0.5), jnp.full(4, 0.25), jnp.full(4, -1.0)
    # x - gamma = -2.5, -1, 0, 2.5 -> PReLU -0.625, -0.25, 0 (not > 0: slope side), 2.5; + zeta
    np.testing.assert_allclose(rprelu(x, gamma, beta, zeta), [-1.625, -1.25, -1.0, 1.5])
    gg, gb, gz = jax.grad(lambda g, b, z: jnp.sum(rprelu(x, g, b, z)), argnums=(0, 1, 2))(gamma, beta, zeta)
    np.testing.assert_allclose(gz, np.ones(4))
    np.testing.assert_allclose(gb, [-2.5, -1.0, 0.0, 0.0])  # min(x - gamma, 0)
    np.testing.assert_allclose(gg, [-0.25, -0.25, -0.25, -1.0])  # -beta below, -1 above
    m = RPReLU(4)
    np.testing.assert_allclose(m(x), np.where(np.asarray(x) > 0, x, 0.25 * np.asarray(x)))


def _zero_convs(unit):
    unit.conv.kernel[...] = jnp.zeros_like(unit.conv.kernel[...])


@pytest.mark.parametrize("block", ["bireal", "reactnet"])
def test_unit_is_its_shortcut_when_the_conv_is_zero(block):
    """Zero conv, fresh BN in eval mode (mean 0, var 1, scale 1, bias 0): BN(conv) ~ 0, so a unit
    returns its shortcut x (Bi-Real), or RPReLU(x) = PReLU_0.25(x) at init (ReActNet)."""
    unit = BiRealUnit(4, 4, block=block, rngs=nnx.Rngs(0))
    _zero_convs(unit)
    x = jax.random.normal(jax.random.key(1), (2, 5, 5, 4))
    y = unit(x, train=False)
    want = x if block == "bireal" else jnp.where(x > 0, x, 0.25 * x)
    np.testing.assert_allclose(y, want, atol=1e-5)


def test_downsampling_shortcut_is_avgpool_then_1x1():
    unit = BiRealUnit(2, 4, strides=2, rngs=nnx.Rngs(0))
    _zero_convs(unit)
    w = np.arange(8, dtype=np.float32).reshape(1, 1, 2, 4) / 8
    unit.downsample.kernel[...] = jnp.asarray(w)
    x = np.asarray(jax.random.normal(jax.random.key(2), (1, 4, 6, 2)))
    pooled = x.reshape(1, 2, 2, 3, 2, 2).mean(axis=(2, 4))  # 2x2 average pool
    eps = 1e-5  # fresh BN in eval mode divides by sqrt(1 + eps)
    want = pooled @ w[0, 0] / np.sqrt(1 + eps)
    np.testing.assert_allclose(unit(jnp.asarray(x), train=False), want, rtol=1e-5, atol=1e-6)


def n_params(model) -> int:
    return int(sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param))))


@pytest.mark.parametrize("block", ["bireal", "reactnet"])
def test_resnet20_parameter_count_by_hand(block):
    m = nnx.eval_shape(lambda: BiRealResNet(20, 3, 10, block=block, rngs=nnx.Rngs(0)))
    convs = [(3, 16, 16)] * 6 + [(3, 16, 32)] + [(3, 32, 32)] * 5 + [(3, 32, 64)] + [(3, 64, 64)] * 5
    n = 3 * 3 * 3 * 16 + 2 * 16  # stem + BN
    n += sum(k * k * ci * co + 2 * co for k, ci, co in convs)  # binary convs + BN
    n += (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)  # two downsampling 1x1 convs + BN
    n += 64 * 10 + 10  # head
    if block == "reactnet":
        n += sum(ci + 3 * co for _, ci, co in convs)  # RSign thresholds, RPReLU gamma/beta/zeta
    assert n_params(m) == n
    out = nnx.eval_shape(lambda mm, x: mm(x, train=False), m, jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32))
    assert out.shape == (2, 10)


def test_resnet18_cifar_shapes():
    m = nnx.eval_shape(lambda: build_model({"name": "reactnet_resnet18"}, 10, (32, 32, 3), nnx.Rngs(0)))
    assert len(m.blocks) == 8 and m.head.in_features == 512 and m.blocks[0].unit1.rsign is not None
    m = nnx.eval_shape(lambda: build_model({"name": "bireal_resnet20"}, 10, (32, 32, 3), nnx.Rngs(0)))
    assert len(m.blocks) == 9 and m.head.in_features == 64 and m.blocks[0].unit1.rsign is None
    with pytest.raises(ValueError, match="6n\\+2"):
        BiRealResNet(19, 3, 10, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="choose one of"):
        BiRealUnit(4, 4, block="xnor", rngs=nnx.Rngs(0))


def test_xnor_policy_binarizes_the_convs_and_trains_the_thresholds():
    model = BiRealResNet(20, 3, 10, block="reactnet", width=4, rngs=nnx.Rngs(0))
    rules = [(p, None) for p in REAL_VALUED_LAYERS] + method_rules("xnor", ste="approx_sign")
    swapped = quantize_model(model, rules)
    assert len(swapped) == 18 and not any("downsample" in p for p in swapped)
    x = jax.random.normal(jax.random.key(0), (4, 8, 8, 3))

    def loss(m):
        return jnp.sum(m(x, train=True) ** 2)

    grads = nnx.grad(loss)(model)
    g = grads.blocks[3].unit1.rsign.threshold[...]
    assert g.shape == (4,) and float(jnp.max(jnp.abs(g))) > 0


@pytest.mark.parametrize("block", ["bireal", "reactnet"])
def test_packed_export_matches_the_trained_model(block, tmp_path):
    """A bnn Bi-Real/ReActNet ResNet-8 (1x1 downsampling convs kept float, as the config does) exported
    to the packed format and loaded back gives the quantized model's predictions."""
    import extremeq
    from extremeq.inference import load

    recipe = {
        "factory": "extremeq.nn.models:BiRealResNet",
        "kwargs": {"depth": 8, "in_features": 3, "num_classes": 10, "width": 8, "block": block},
    }
    model = extremeq.inference.build_from_recipe(recipe)
    quantize_model(model, [(".*/downsample", None)] + method_rules("bnn", ste="approx_sign"))
    rng = np.random.default_rng(0)
    for _, m in nnx.iter_modules(model):  # trained-looking statistics and thresholds
        if isinstance(m, nnx.BatchNorm):
            m.mean[...] = jnp.asarray(0.3 * rng.standard_normal(m.mean[...].shape), jnp.float32)
            m.var[...] = jnp.asarray(np.exp(0.5 * rng.standard_normal(m.var[...].shape)), jnp.float32)
        if isinstance(m, RSign):
            m.threshold[...] = jnp.asarray(0.2 * rng.standard_normal(m.threshold[...].shape), jnp.float32)
    model.eval()
    x = jnp.asarray(rng.standard_normal((64, 8, 8, 3)), jnp.float32)
    ref = model(x)
    packed = extremeq.export(model, recipe=recipe)
    packed.save(tmp_path / "m.npz")
    got = load(tmp_path / "m.npz")(x)
    assert float(jnp.mean(jnp.argmax(ref, -1) == jnp.argmax(got, -1))) >= 0.98
    np.testing.assert_allclose(got, ref, rtol=1e-3, atol=1e-3 * float(jnp.max(jnp.abs(ref))))
