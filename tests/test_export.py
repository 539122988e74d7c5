"""extremeq.export / extremeq.inference: packed layers against the training layers, trained models end to end (digits,
MNIST), sizes against extremeq.summary, the file format and its errors."""

import os
import subprocess
import sys
import zipfile

import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import extremeq
from extremeq.inference import ExportFormatError, PackedConv, PackedLinear, load, pack_layer
from extremeq.inference import fresh_rng_state as _fresh_rng_state
from extremeq.kernels import backends
from extremeq.nn import QuantConv, QuantLinear, clip_latent_weights, method_rules, quant_layers, quantize_model
from extremeq.nn.models import build_model
from extremeq.packing import unpack_signs, unpack_ternary
from extremeq.summary import summary

LINEAR_CASES = [  # (weight quantizer, input quantizer)
    ("bwn", "fp"),
    ("bc", "fp"),
    ("bwn", "xnor"),
    ("bc", "sign"),
    ("bwn", "sign"),
    ("twn", "fp"),
    ("ttq", "fp"),
    ("bitnet", "fp"),
    ("int8", "int8"),
    ("fp", "int8"),
    ("twn", "sign"),
    ("fp", "xnor"),
    (dict(name="bwn", per_channel=False), "fp"),
    (dict(name="twn", per_channel=True), "fp"),
]


def _fill_numpy(model, seed):
    """Concrete weights for an abstract (nnx.eval_shape) model from NumPy: no XLA compilation of
    initialisers. Kernels ~ N(0, 1/fan_in), biases 0.1 N(0, 1), BN identity, TTQ W_p = 0.7, W_n = 1.3."""
    rng = np.random.default_rng(seed)
    state = nnx.state(model, nnx.Not(nnx.RngState))
    for path, var in nnx.to_flat_state(state):
        v, name = var.get_value(), path[-1]
        if name == "kernel":
            val = rng.standard_normal(v.shape) / np.sqrt(np.prod(v.shape[:-1]))
        elif name in ("scale", "var"):
            val = np.ones(v.shape)
        elif name in ("ttq_wp", "ttq_wn"):
            val = np.full(v.shape, 0.7 if name == "ttq_wp" else 1.3)
        elif name == "bias":
            val = 0.1 * rng.standard_normal(v.shape)
        else:
            val = np.zeros(v.shape)
        var.set_value(jnp.asarray(val, v.dtype))
    nnx.update(model, state)
    _fresh_rng_state(model)
    for _, layer in quant_layers(model):
        layer.deterministic = True
    return model


def _make(recipe, method, seed=0, **edges):
    """A quantized zoo model (method_rules(method, **edges)), initialised from NumPy."""

    def build():
        m = build_model(recipe["model"], recipe["num_classes"], recipe["input_shape"], nnx.Rngs(seed))
        quantize_model(m, method_rules(method, **edges))
        return m

    return _fill_numpy(nnx.eval_shape(build), seed)


def _normal(seed, shape):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def _layer(cls, *args, seed=0, **kwargs):
    return _fill_numpy(nnx.eval_shape(lambda: cls(*args, **kwargs, rngs=nnx.Rngs(0))), seed)


@nnx.jit
def _jit_call(layer, x):
    return layer(x)


@pytest.mark.parametrize("wq,iq", LINEAR_CASES)
def test_packed_linear_equals_quant_linear(wq, iq):
    layer = _layer(QuantLinear, 70, 24, kernel_quantizer=wq, input_quantizer=iq)
    x = _normal(2, (5, 3, 70))
    ref, got = _jit_call(layer, x), _jit_call(pack_layer(layer), x)
    assert got.shape == ref.shape == (5, 3, 24)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(ref))))


CONV_CASES = [  # (weight, input, padding, strides, pad_value)
    ("bwn", "xnor", "SAME", 1, 1.0),
    ("bwn", "xnor", ((1, 1), (1, 1)), 2, 1.0),
    ("bwn", "xnor", "VALID", 1, 1.0),
    ("bwn", "xnor", ((2, 0), (1, 2)), 1, 0.0),
    ("bc", "sign", "SAME", 2, 1.0),
    ("bwn", "fp", "SAME", 1, 1.0),
    ("twn", "fp", ((1, 1), (1, 1)), 2, 1.0),
    ("ttq", "fp", "SAME", 1, 1.0),
    ("bitnet", "sign", "SAME", 1, 1.0),
    ("int8", "int8", "SAME", 1, 1.0),
    ("fp", "xnor", "SAME", 1, 1.0),
]


@pytest.mark.parametrize("via_float", [True, False], ids=["cpu-float-conv", "kernels"])
@pytest.mark.parametrize("wq,iq,padding,strides,pad_value", CONV_CASES)
def test_packed_conv_equals_quant_conv(wq, iq, padding, strides, pad_value, via_float, monkeypatch):
    # the CPU's auto choice of packed-conv path: XLA's conv of the decoded filters, or the kernels
    monkeypatch.setitem(backends.AUTO, ("packed_conv", "cpu"), "conv" if via_float else "kernels")
    # Cin*kh*kw = 5*9 = 45: neither 16 nor 32 divides it, so padding bits of the words are exercised.
    layer = _layer(
        QuantConv, 5, 12, (3, 3), strides, padding=padding, kernel_quantizer=wq, input_quantizer=iq, pad_value=pad_value
    )
    x = _normal(4, (2, 9, 7, 5))
    ref, got = _jit_call(layer, x), _jit_call(pack_layer(layer), x)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(ref))))


def test_padding_value_matters():
    """The packed conv follows QuantConv's +1 padding of binary inputs, not zero padding."""
    layer = _layer(QuantConv, 4, 6, (3, 3), padding="SAME", kernel_quantizer="bwn", input_quantizer="xnor")
    x = _normal(6, (1, 5, 5, 4))
    packed = pack_layer(layer)
    zero_pad = PackedConv({**packed.config, "pad_value": 0.0}, {"w": packed.w[...], "alpha": packed.alpha[...]})
    border = (slice(None), 0, slice(None), slice(None))
    assert not np.allclose(zero_pad(x)[border], layer(x)[border])  # zero padding would differ ...
    np.testing.assert_allclose(packed(x), layer(x), rtol=1e-5, atol=1e-5)  # ... +1 padding agrees


def test_stored_codes_are_the_quantized_weights():
    """Unpacked words times the scales give back Q_w(W) exactly."""
    lin = _layer(QuantLinear, 40, 8, kernel_quantizer="bwn")
    p = pack_layer(lin)
    q = unpack_signs(p.w[...], 40, axis=-1).T * p.alpha[...]
    np.testing.assert_array_equal(q, lin.quantized_kernel())
    conv = _layer(QuantConv, 3, 4, (2, 2), kernel_quantizer="twn")
    p = pack_layer(conv)
    t = unpack_ternary(p.w[...], 12, axis=-1, dtype=jnp.float32).reshape(4, 3, 2, 2).transpose(2, 3, 1, 0)
    np.testing.assert_array_equal(t * p.alpha[...], conv.quantized_kernel())


# ------------------------------------------------------------------------------------ training
def _prep(data):
    mean, std = np.asarray(data.mean), np.asarray(data.std)
    f = lambda x: jnp.asarray((x.astype(np.float32) / 255.0 - mean) / std)  # noqa: E731
    return f(data.x_train), jnp.asarray(data.y_train), f(data.x_test), jnp.asarray(data.y_test)


def _train(model, x, y, *, epochs, batch_size=64, lr=3e-3, seed=0):
    optimizer = nnx.Optimizer(model, optax.adam(lr), wrt=nnx.Param)

    @nnx.jit
    def epoch(model, optimizer, perm):
        def step(carry, idx):
            model, optimizer = carry
            grads = nnx.grad(lambda m: optax.softmax_cross_entropy_with_integer_labels(m(x[idx]), y[idx]).mean())(model)
            optimizer.update(model, grads)
            clip_latent_weights(model)
            return (model, optimizer), None

        nnx.scan(step)((model, optimizer), perm)

    steps = len(x) // batch_size
    model.train()
    for e in range(epochs):
        perm = np.random.default_rng([seed, e]).permutation(len(x))
        epoch(model, optimizer, perm[: steps * batch_size].reshape(steps, batch_size))
    model.eval()
    return model


def _eval_logits(fn, x, batch=1000):
    return jnp.concatenate([fn(x[i : i + batch]) for i in range(0, len(x), batch)])


@pytest.fixture(scope="module")
def digits():
    from extremeq.data import load_digits

    return _prep(load_digits())


DIGITS_RECIPE = {
    "model": {"name": "mlp", "hidden": [128, 128], "activation": "hardtanh"},
    "num_classes": 10,
    "input_shape": [8, 8, 1],
}


@pytest.mark.parametrize("method", ["bwn", "xnor", "twn", "ttq"])
def test_trained_digits_mlp_exact(method, digits, tmp_path):
    x_tr, y_tr, x_te, y_te = digits
    model = _make(DIGITS_RECIPE, method, first="int8", last="fp")
    _train(model, x_tr, y_tr, epochs=4)
    ref = nnx.jit(lambda m, x: m(x))(model, x_te)
    packed = extremeq.export(model, recipe=DIGITS_RECIPE)
    got = packed(x_te)
    pred_ref, pred_got = jnp.argmax(ref, -1), jnp.argmax(got, -1)
    acc_ref, acc_got = float(jnp.mean(pred_ref == y_te)), float(jnp.mean(pred_got == y_te))
    assert acc_ref > 0.5  # trained, so agreement is not agreement on noise
    assert float(jnp.mean(pred_ref == pred_got)) >= 0.999
    assert abs(acc_ref - acc_got) <= 0.001
    if method in ("bwn", "twn", "ttq"):  # no binary activations: logits agree to float rounding
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    n = packed.save(tmp_path / "m.npz")
    assert n == os.path.getsize(tmp_path / "m.npz")
    again = load(tmp_path / "m.npz")
    np.testing.assert_array_equal(again(x_te), got)  # same arrays, same program
    assert again(x_te[:1]).shape == (1, 10)  # any batch size


def test_resnet_shortcuts_padding_strides(tmp_path):
    """A CIFAR ResNet-8 (option-A shortcuts, padded 3x3 XNOR convs, stride 2) on digits-sized input,
    rebuilt from a factory recipe (a network given by its constructor rather than a zoo name)."""
    recipe = {
        "factory": "extremeq.nn.models:CifarResNet",
        "kwargs": {"depth": 8, "in_features": 1, "num_classes": 10, "width": 4, "activation": "hardtanh"},
    }

    def build():
        m = extremeq.inference.build_from_recipe(recipe)
        quantize_model(m, method_rules("xnor"))
        return m

    model = _fill_numpy(nnx.eval_shape(build), 0)
    rng = np.random.default_rng(1)
    for _, bn in (m for m in nnx.iter_modules(model) if isinstance(m[1], nnx.BatchNorm)):
        bn.mean[...] = jnp.asarray(0.3 * rng.standard_normal(bn.mean[...].shape), jnp.float32)  # trained-looking
        bn.var[...] = jnp.asarray(np.exp(0.5 * rng.standard_normal(bn.var[...].shape)), jnp.float32)
    model.eval()
    x = jnp.asarray(rng.standard_normal((200, 8, 8, 1)), jnp.float32)
    ref = nnx.jit(lambda m, x: m(x))(model, x)
    packed = extremeq.export(model, recipe=recipe)
    packed.save(tmp_path / "r8.npz")
    packed = load(tmp_path / "r8.npz")
    assert sum(isinstance(m, PackedConv) for _, m in nnx.iter_modules(packed.module)) == 6
    got = packed(x)
    assert float(jnp.mean(jnp.argmax(ref, -1) == jnp.argmax(got, -1))) >= 0.995
    # the binary convs see the same signs, so the logits differ by float rounding only
    np.testing.assert_allclose(got, ref, rtol=1e-3, atol=1e-3 * float(jnp.max(jnp.abs(ref))))


# ------------------------------------------------------------------------------------ sizes
def test_binary_layers_take_a_32nd_and_file_matches_summary(tmp_path):
    recipe = {
        "model": {"name": "mlp", "hidden": [1024, 1024], "activation": "hardtanh"},
        "num_classes": 10,
        "input_shape": [28, 28, 1],
    }
    model = _make(recipe, "bwn", first="same", last="same")
    packed = extremeq.export(model, recipe=recipe)
    arrays = packed.arrays()
    words = arrays["blocks/0/dense/w"]
    assert words.dtype == np.uint32 and words.shape == (1024, 1024 // 32)
    assert words.nbytes * 32 == 1024 * 1024 * 4  # exactly 1/32 of float32
    for row in packed.size_rows():
        ratio = row.float32_bytes / row.file_bytes
        if row.path in ("stem", "blocks/0/dense"):  # ceil(K/32) words + one float32 alpha per output
            k = {"stem": 784, "blocks/0/dense": 1024}[row.path]
            assert ratio == pytest.approx(32 * k / (32 * -(-k // 32) + 32), rel=1e-6), (row.path, ratio)
        elif row.path == "head":
            assert ratio > 29, ratio
    s = summary(model, jnp.zeros((1, 28, 28, 1)))
    # the summary counts ceil(n/8) bytes; the words pad each row of 784 bits to 800
    assert packed.nbytes - s.packed_bytes == 1024 * (800 - 784) // 8
    n = packed.save(tmp_path / "m.npz")
    assert abs(n / s.packed_bytes - 1) < 0.03, (n, s.packed_bytes)
    report = packed.size_report()
    assert f"{n:,}" in report and f"{s.packed_bytes:,}" in report


# ------------------------------------------------------------------------------------ MNIST
@pytest.fixture(scope="module")
def mnist():
    from extremeq.data import default_mnist_path, load_npz

    path = default_mnist_path()
    if not os.path.exists(path):
        pytest.skip(f"MNIST not found at {path}")
    return _prep(load_npz(path, name="mnist"))


def test_mnist_xnor_mlp_exact(mnist, tmp_path):
    x_tr, y_tr, x_te, y_te = mnist
    recipe = {
        "model": {"name": "mlp", "hidden": [256, 256], "activation": "hardtanh"},
        "num_classes": 10,
        "input_shape": [28, 28, 1],
    }
    model = _make(recipe, "xnor")
    _train(model, x_tr[:10000], y_tr[:10000], epochs=2, batch_size=100)
    ref = _eval_logits(nnx.jit(lambda x: model(x)), x_te)
    packed = extremeq.export(model, recipe=recipe)
    packed.save(tmp_path / "mlp.npz")
    got = _eval_logits(load(tmp_path / "mlp.npz"), x_te)
    pred_ref, pred_got = jnp.argmax(ref, -1), jnp.argmax(got, -1)
    acc_ref, acc_got = float(jnp.mean(pred_ref == y_te)), float(jnp.mean(pred_got == y_te))
    assert acc_ref > 0.85
    assert float(jnp.mean(pred_ref == pred_got)) >= 0.999
    assert abs(acc_ref - acc_got) <= 0.001


# ------------------------------------------------------------------------------------ errors
@pytest.fixture()
def saved(tmp_path):
    model = _make(DIGITS_RECIPE, "xnor")
    path = tmp_path / "m.npz"
    extremeq.export(model, recipe=DIGITS_RECIPE).save(path)
    return path


def _rewrite_meta(src, dst, edit):
    import json

    with np.load(src) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(bytes(arrays["__extremeq__"]).decode())
    edit(meta)
    arrays["__extremeq__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(dst, **arrays)


def test_wrong_version_is_refused(saved, tmp_path):
    bad = tmp_path / "v99.npz"
    _rewrite_meta(saved, bad, lambda m: m.update(version=99))
    with pytest.raises(ExportFormatError, match="version 99.*reads version 1"):
        load(bad)


def test_truncated_file_is_refused(saved, tmp_path):
    data = saved.read_bytes()
    cut = tmp_path / "cut.npz"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ExportFormatError, match="truncated or corrupt"):
        load(cut)


def test_other_npz_and_mismatched_recipe_are_refused(saved, tmp_path):
    other = tmp_path / "other.npz"
    np.savez(other, a=np.zeros(3))
    with pytest.raises(ExportFormatError, match="not an extremeq export"):
        load(other)
    wrong = tmp_path / "wrong.npz"
    _rewrite_meta(saved, wrong, lambda m: m["recipe"]["model"].update(hidden=[64, 64]))
    with pytest.raises(ExportFormatError, match="needs float32"):
        load(wrong)
    assert zipfile.is_zipfile(saved)


def test_unknown_layer_and_missing_recipe_are_explained():
    class Scaler(nnx.Module):
        def __init__(self):
            self.gain = nnx.Param(jnp.ones(3))

    class Net(nnx.Module):
        def __init__(self):
            self.body = nnx.List([nnx.Linear(3, 3, rngs=nnx.Rngs(0)), Scaler()])

        def __call__(self, x):
            return self.body[1].gain * self.body[0](x)

    with pytest.raises(ValueError, match=r"'body/1' of type Scaler .*Supported layers: QuantLinear"):
        extremeq.export(nnx.eval_shape(Net))
    model = _make(DIGITS_RECIPE, "bwn")
    with pytest.raises(ValueError, match="no recipe"):
        extremeq.export(model).save("/nonexistent/never_written.npz")
    bad = {"model": {"name": "mlp", "hidden": [64]}, "num_classes": 10, "input_shape": [8, 8, 1]}
    with pytest.raises(ExportFormatError, match="does not describe|do not fit"):
        extremeq.export(model, recipe=bad)


def test_import_extremeq_stays_light():
    code = (
        "import sys, extremeq; assert 'jax' not in sys.modules, 'jax imported'; "
        "from extremeq import export; assert callable(export) and callable(extremeq.export); "
        "import extremeq.inference as inference; assert inference.PackedModel and inference.load"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_export_replaces_only_quantized_layers():
    model = _make(DIGITS_RECIPE, "xnor", first="int8")
    packed = extremeq.export(model)
    kinds = {p: spec["config"]["weight"] + "/" + spec["config"]["inputs"] for p, spec in packed.layers.items()}
    assert kinds == {"stem": "int8/int8", "blocks/0/dense": "bwn/xnor"}
    assert isinstance(packed.module.blocks[0].dense, PackedLinear)
    assert isinstance(model.blocks[0].dense, QuantLinear)  # the trained model is left as it was
