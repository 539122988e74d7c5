"""quantize_model swaps layers by rules, keeps weights and leaves exceptions untouched."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from extremeq.nn import QuantConv, QuantLinear, method_rules, quant_layers, quantize_model


class Net(nnx.Module):
    def __init__(self, rngs):
        self.stem = nnx.Conv(1, 4, (3, 3), rngs=rngs)
        self.bn = nnx.BatchNorm(4, rngs=rngs)
        self.blocks = nnx.List([nnx.Conv(4, 8, (3, 3), strides=2, rngs=rngs), nnx.Linear(128, 16, rngs=rngs)])
        self.head = nnx.Linear(16, 3, rngs=rngs)

    def __call__(self, x):
        x = self.bn(self.stem(x))
        x = self.blocks[0](x)
        return self.head(self.blocks[1](x.reshape(x.shape[0], -1)))


X = jnp.asarray(np.random.default_rng(0).standard_normal((2, 8, 8, 1)).astype(np.float32))


def test_first_and_last_stay_fp_rest_binary_keeps_weights():
    net = Net(nnx.Rngs(0))
    before = {k: np.asarray(v) for k, v in nnx.to_flat_state(nnx.state(net, nnx.Param))}
    stem, head = net.stem, net.head
    replaced = quantize_model(net, method_rules("xnor", first="fp", last="fp"))
    assert replaced == ["blocks/0", "blocks/1"]
    assert net.stem is stem and net.head is head  # untouched, same objects
    assert isinstance(net.blocks[0], QuantConv) and isinstance(net.blocks[1], QuantLinear)
    assert net.blocks[0].input_quantizer.name == "xnor" and net.blocks[0].kernel_quantizer.name == "bwn"
    after = {k: np.asarray(v) for k, v in nnx.to_flat_state(nnx.state(net, nnx.Param))}
    for k, v in before.items():
        np.testing.assert_array_equal(after[k], v)


def test_fp_rules_change_nothing_numerically():
    a, b = Net(nnx.Rngs(0)), Net(nnx.Rngs(0))
    quantize_model(b, [(".*", {"kernel": "fp", "input": "fp"})])
    assert len(list(quant_layers(b))) == 4
    np.testing.assert_allclose(a(X), b(X), rtol=1e-6, atol=1e-6)


def test_int8_edges_and_first_match_wins():
    net = Net(nnx.Rngs(0))
    quantize_model(net, method_rules("twn", first="int8", last="int8"))
    kinds = {p: (l.kernel_quantizer.name, l.input_quantizer.name) for p, l in quant_layers(net)}
    assert kinds == {
        "blocks/0": ("twn", "fp"),
        "blocks/1": ("twn", "fp"),
        "head": ("int8", "int8"),
        "stem": ("int8", "int8"),
    }
    net2 = Net(nnx.Rngs(0))
    quantize_model(net2, [("blocks/.*", {"kernel": "bwn"}), (".*", {"kernel": "twn"})])
    assert {p: l.kernel_quantizer.name for p, l in quant_layers(net2)} == {
        "blocks/0": "bwn",
        "blocks/1": "bwn",
        "head": "twn",
        "stem": "twn",
    }


def test_quantized_model_output_equals_float_model_with_quantized_weights():
    net = Net(nnx.Rngs(0))
    quantize_model(net, method_rules("bwn"))
    ref = Net(nnx.Rngs(0))
    ref.blocks[0].kernel[...] = net.blocks[0].quantized_kernel()
    ref.blocks[1].kernel[...] = net.blocks[1].quantized_kernel()
    np.testing.assert_allclose(net(X), ref(X), rtol=1e-5, atol=1e-5)


def test_bad_rules_and_methods():
    with pytest.raises(ValueError, match="bwn"):
        method_rules("bwm")
    with pytest.raises(ValueError, match="int8"):
        method_rules("bwn", first="int4")
    with pytest.raises(ValueError, match="kernal"):
        quantize_model(Net(nnx.Rngs(0)), [(".*", {"kernal": "bwn"})])
    with pytest.raises(TypeError, match="pairs"):
        quantize_model(Net(nnx.Rngs(0)), ".*")


def test_weights_edge_quantizes_weights_keeps_float_inputs():
    net = Net(nnx.Rngs(0))
    quantize_model(net, method_rules("bnn", first="weights", last="same"))
    kinds = {p: (l.kernel_quantizer.name, l.input_quantizer.name) for p, l in quant_layers(net)}
    assert kinds["stem"] == ("bc", "fp") and kinds["head"] == ("bc", "sign")


def test_latent_init_uniform_restarts_binaryconnect_weights_in_pm1():
    net = Net(nnx.Rngs(0))
    quantize_model(net, method_rules("bc_stochastic", latent_init="uniform"), rngs=nnx.Rngs(0, quant=1))
    w = np.asarray(net.blocks[1].kernel[...])  # 128 x 16 latent weights
    assert w.min() >= -1.0 and w.max() <= 1.0
    assert abs(w.std() - 1 / np.sqrt(3)) < 0.03  # std of U(-1, 1)
    with pytest.raises(ValueError, match="latent_init"):
        quantize_model(Net(nnx.Rngs(0)), [(".*", {"kernel": "bc", "latent_init": "normal"})])


def test_stochastic_eval_mean_reaches_the_layers():
    net = Net(nnx.Rngs(0))
    quantize_model(net, method_rules("bc_stochastic", stochastic_eval="mean"), rngs=nnx.Rngs(0, quant=1))
    layers = [l for _, l in quant_layers(net)]
    assert layers and all(l.kernel_quantizer.option("eval") == "mean" for l in layers)
    assert all(l.kernel_quantizer.bits == 1 for l in layers)
    with pytest.raises(ValueError, match="stochastic_eval"):
        method_rules("bc_stochastic", stochastic_eval="median")
