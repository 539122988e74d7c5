"""Model zoo: shapes, parameter counts against hand formulas / published counts, layer order."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from extremeq.nn import models
from extremeq.nn.models import build_model, layer_order


def n_params(model) -> int:
    return int(sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param))))


def abstract(name, num_classes, input_shape, **kw):
    """The model with ShapeDtypeStruct leaves: counts and shapes without allocating weights."""
    return nnx.eval_shape(lambda: build_model(dict(name=name, **kw), num_classes, input_shape, nnx.Rngs(0)))


def abstract_out(model, shape):
    return nnx.eval_shape(lambda m, x: m(x, train=False), model, jax.ShapeDtypeStruct(shape, jnp.float32)).shape


# ---- hand counts: conv k*k*cin*cout (no bias before BN), BN 2*c (scale, bias), dense in*out (+out) ----


def conv(k, cin, cout):
    return k * k * cin * cout


def bn(c):
    return 2 * c


def cifar_resnet_count(depth, classes=10, shortcut="A"):
    n = (depth - 2) // 6
    total = conv(3, 3, 16) + bn(16)
    cin = 16
    for stage, c in enumerate((16, 32, 64)):
        for i in range(n):
            total += conv(3, cin, c) + bn(c) + conv(3, c, c) + bn(c)
            if shortcut == "B" and cin != c:
                total += conv(1, cin, c) + bn(c)
            cin = c
    return total + 64 * classes + classes


def test_mlp_binaryconnect_count_and_shape():
    m = abstract("mlp", 10, (28, 28, 1), hidden=[1024, 1024, 1024])
    hand = 784 * 1024 + bn(1024) + 2 * (1024 * 1024 + bn(1024)) + 1024 * 10 + 10
    assert n_params(m) == hand == 2_916_362
    assert abstract_out(m, (3, 28, 28, 1)) == (3, 10)
    small = build_model({"name": "mlp", "hidden": [8, 8]}, 10, (28, 28, 1), nnx.Rngs(0))
    assert small(jnp.ones((3, 28, 28, 1)), train=False).shape == (3, 10)


def test_mlp_binarynet_count_head_bn():
    m = abstract("mlp", 10, (28, 28), hidden=[4096] * 3, head_bn=True, dropout=0.5, input_dropout=0.2)
    hand = 784 * 4096 + bn(4096) + 2 * (4096 * 4096 + bn(4096)) + 4096 * 10 + bn(10)  # no head bias
    assert n_params(m) == hand
    assert abstract_out(m, (2, 28, 28)) == (2, 10)


def test_lenet5_exact_count_and_shape():
    m = abstract("lenet5", 10, (28, 28, 1))
    hand = conv(5, 1, 32) + bn(32) + conv(5, 32, 64) + bn(64) + 4 * 4 * 64 * 512 + bn(512) + 512 * 10 + 10
    assert n_params(m) == hand == 582_634
    assert abstract_out(m, (2, 28, 28)) == (2, 10)  # NHW input gets a channel axis


def test_vgg7_count_and_shape():
    m = abstract("vgg7", 10, (32, 32, 3))
    convs = (
        conv(3, 3, 128)
        + conv(3, 128, 128)
        + conv(3, 128, 256)
        + conv(3, 256, 256)
        + conv(3, 256, 512)
        + conv(3, 512, 512)
        + bn(128) * 2
        + bn(256) * 2
        + bn(512) * 2
    )
    hand = convs + 4 * 4 * 512 * 1024 + bn(1024) + 1024 * 10 + 10
    assert n_params(m) == hand
    assert abstract_out(m, (2, 32, 32, 3)) == (2, 10)


@pytest.mark.parametrize("depth,published_m", [(20, 0.27), (32, 0.46), (44, 0.66), (56, 0.85)])
def test_cifar_resnet_counts(depth, published_m):
    m = abstract(f"resnet{depth}", 10, (32, 32, 3))
    count = n_params(m)
    assert count == cifar_resnet_count(depth)
    assert round(count / 1e6, 2) == published_m  # He et al. 2016, Table 6
    assert abstract_out(m, (2, 32, 32, 3)) == (2, 10)


def test_resnet20_exact_and_option_b():
    assert cifar_resnet_count(20) == 269_722
    mb = abstract("resnet20", 10, (32, 32, 3), shortcut="B")
    assert n_params(mb) == cifar_resnet_count(20, shortcut="B") == 272_474


def test_resnet20_forward_cifar100():
    m = abstract("resnet20", 100, (32, 32, 3))
    assert n_params(m) == cifar_resnet_count(20, classes=100)
    assert abstract_out(m, (2, 32, 32, 3)) == (2, 100)


def test_resnet18_count_matches_torchvision():
    m = abstract("resnet18", 1000, (224, 224, 3))
    assert n_params(m) == 11_689_512  # torchvision resnet18, same architecture
    assert abstract_out(m, (2, 224, 224, 3)) == (2, 1000)


def test_alexnet_count_and_shape():
    m = abstract("alexnet", 1000, (224, 224, 3))
    convs = conv(11, 3, 96) + conv(5, 96, 256) + conv(3, 256, 384) + conv(3, 384, 384) + conv(3, 384, 256)
    bns = bn(96) + bn(256) + bn(384) + bn(384) + bn(256) + bn(4096) * 2
    hand = convs + bns + 6 * 6 * 256 * 4096 + 4096 * 4096 + 4096 * 1000 + 1000
    assert n_params(m) == hand == 62_387_912
    assert abstract_out(m, (2, 224, 224, 3)) == (2, 1000)


def test_option_a_shortcut_matches_numpy():
    blk = models.BasicBlock(
        16, 32, strides=2, shortcut="A", activation="relu", bn_momentum=0.9, bn_epsilon=1e-5, rngs=nnx.Rngs(0)
    )
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 16)).astype(np.float32)
    ref = np.zeros((2, 4, 4, 32), np.float32)
    ref[..., 8:24] = x[:, ::2, ::2, :]
    np.testing.assert_array_equal(np.asarray(blk._shortcut(jnp.asarray(x), False)), ref)


def test_conv_block_pools_before_batchnorm():
    blk = models.ConvBlock(
        3, 4, 3, padding=1, pool=(2, 2), activation="hardtanh", bn_momentum=0.9, bn_epsilon=1e-5, rngs=nnx.Rngs(0)
    )
    blk.bn.bias[...] = jnp.linspace(-0.5, 0.5, 4)
    blk.bn.scale[...] = jnp.asarray([1.0, -2.0, 0.5, -1.0])  # negative scale: BN before pool differs
    x = jax.random.normal(jax.random.key(1), (2, 6, 6, 3))
    y = jax.lax.conv_general_dilated(
        x, blk.conv.kernel[...], (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    y = y.reshape(2, 3, 2, 3, 2, 4).max(axis=(2, 4))  # 2x2 max-pool
    y = y / np.sqrt(1 + 1e-5) * blk.bn.scale[...] + blk.bn.bias[...]  # fresh running stats (0, 1)
    np.testing.assert_allclose(blk(x, train=False), np.clip(y, -1, 1), rtol=1e-5, atol=1e-5)


def test_train_flag_and_nnx_modes():
    m = build_model({"name": "mlp", "hidden": [8, 8], "dropout": 0.5}, 10, (28, 28, 1), nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(0), (3, 28, 28, 1))
    stats0 = np.asarray(m.stem_bn.mean[...])
    m.eval()
    a, b = m(x), m(x, train=False)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(m.stem_bn.mean[...], stats0)  # eval never updates running stats
    c = m(x, train=True)  # explicit flag overrides the eval attributes for this call
    assert not np.allclose(a, c)
    assert not np.allclose(m.stem_bn.mean[...], stats0)
    assert m.stem_bn.use_running_average and m.dropout.deterministic  # attributes untouched
    m.train()
    assert not m.stem_bn.use_running_average and not m.dropout.deterministic


def test_only_swappable_layer_types():
    allowed = (
        nnx.Linear,
        nnx.Conv,
        nnx.BatchNorm,
        nnx.Dropout,
        nnx.List,
        models.DenseBlock,
        models.ConvBlock,
        models.BasicBlock,
    )
    for name, shape in [
        ("mlp", (8, 8, 1)),
        ("lenet5", (28, 28, 1)),
        ("vgg7", (32, 32, 3)),
        ("resnet20", (32, 32, 3)),
        ("resnet18", (64, 64, 3)),
        ("alexnet", (224, 224, 3)),
    ]:
        m = abstract(name, 10, shape)
        for path, node in nnx.iter_graph(m):
            if isinstance(node, nnx.Module) and path:
                assert isinstance(node, allowed), (name, path, type(node))
        assert isinstance(m.stem, (nnx.Linear, nnx.Conv)) and isinstance(m.head, nnx.Linear)


@pytest.mark.parametrize(
    "name,shape,n_layers",
    [
        ("mlp", (8, 8, 1), 4),
        ("lenet5", (28, 28, 1), 4),
        ("vgg7", (32, 32, 3), 8),
        ("resnet20", (32, 32, 3), 20),
        ("resnet18", (32, 32, 3), 21),
        ("alexnet", (224, 224, 3), 8),
    ],
)
def test_layer_order_stem_first_head_last(name, shape, n_layers):
    m = abstract(name, 10, shape)
    order = layer_order(m, jax.ShapeDtypeStruct((1,) + shape, jnp.float32))
    assert order[0] == "stem" and order[-1] == "head"
    assert len(order) == len(set(order)) == n_layers  # resnet18: 17 convs + 3 projections + head
    if name == "resnet20":
        assert order[1:3] == ["blocks/0/conv1", "blocks/0/conv2"]
    assert nnx.Linear.__call__.__name__ == "__call__" and "__call__" in nnx.Linear.__dict__  # restored


def test_build_model_errors():
    with pytest.raises(ValueError, match=r"model 'resnet19' unknown; choose one of .*resnet20"):
        build_model({"name": "resnet19"}, 10, (32, 32, 3), 0)
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['hiden'\]; it accepts .*hidden"):
        build_model({"name": "mlp", "hiden": [10]}, 10, (8, 8), 0)
    with pytest.raises(ValueError, match="activation 'tanh' unknown"):
        build_model({"name": "resnet20", "activation": "tanh"}, 10, (32, 32, 3), 0)
    with pytest.raises(ValueError, match="too small"):
        build_model({"name": "lenet5"}, 10, (8, 8, 1), 0)
    with pytest.raises(ValueError, match="6n\\+2"):
        models.CifarResNet(21, 3, 10, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="input_shape"):
        build_model({"name": "vgg7"}, 10, (32,), 0)
    assert set(models.MODEL_NAMES) == {
        "mlp",
        "lenet5",
        "vgg7",
        "resnet20",
        "resnet32",
        "resnet44",
        "resnet56",
        "resnet18",
        "alexnet",
        "bireal_resnet20",
        "bireal_resnet18",
        "reactnet_resnet20",
        "reactnet_resnet18",
    }


def test_hardtanh_activation_keeps_sign_information():
    m = build_model({"name": "mlp", "hidden": [8, 8], "activation": "hardtanh"}, 10, (28, 28, 1), 0)
    x = jax.random.normal(jax.random.key(0), (3, 28, 28, 1))
    h = m.stem_bn(m.stem(x.reshape(3, -1)), use_running_average=False)
    a = models.ACTIVATIONS[m.activation](h)
    assert float(a.min()) >= -1 and float(a.max()) <= 1 and float((a < 0).mean()) > 0.2
    np.testing.assert_array_equal(jnp.sign(a), jnp.sign(h))


def test_layer_order_concrete_model():
    m = build_model({"name": "mlp", "hidden": [8, 8]}, 10, (28, 28, 1), nnx.Rngs(0))  # shapes as above
    assert layer_order(m, jnp.zeros((1, 28, 28, 1))) == ["stem", "blocks/0/dense", "head"]


@pytest.mark.parametrize("name,shape", [("resnet20", (32, 32, 3)), ("vgg7", (32, 32, 3)), ("mlp", (28, 28, 1))])
def test_precision_policy_swaps_zoo_layers(name, shape):
    """The zoo is built for extremeq.nn.quantize_model: every Linear/Conv but stem and head is swapped."""
    nn = pytest.importorskip("extremeq.nn")
    if not hasattr(nn, "quantize_model"):
        pytest.skip("precision policy not available")

    def make():
        m = build_model({"name": name, "activation": "hardtanh"}, 10, shape, nnx.Rngs(0))
        nn.quantize_model(m, nn.method_rules("xnor"))
        return m

    m = nnx.eval_shape(make)
    order = layer_order(m, jax.ShapeDtypeStruct((1,) + shape, jnp.float32))
    kinds = {
        p: type(node).__name__
        for p, node in nnx.iter_graph(m)
        if "/".join(map(str, p)) in order
        for p in ["/".join(map(str, p))]
    }
    assert kinds.pop("stem") in ("Conv", "Linear") and kinds.pop("head") == "Linear"
    assert kinds and set(kinds.values()) <= {"QuantConv", "QuantLinear"}, kinds
    assert abstract_out(m, (2,) + shape) == (2, 10)
