"""Adding a method takes one file (README, "Adding a method"): DoReFa-Net k-bit weights, defined in
``experiments/custom_method_dorefa.py`` outside the package, registered on import, then used by
``quantize_model`` / ``method_rules``, validated and trained from a config (training API and command
line), summarised, exported, saved, loaded and run packed, with no extremeq file edited."""

import os
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from extremeq.nn import method_rules, quant_layers, quantize_model
from extremeq.nn.models import MLP
from extremeq.summary import summary

USER_FILE = Path(__file__).resolve().parents[1] / "experiments" / "custom_method_dorefa.py"


@pytest.fixture(scope="module")
def dorefa():
    import custom_method_dorefa  # as in the README: experiments/ is on the path (tests/conftest.py)

    assert Path(custom_method_dorefa.__file__).resolve() == USER_FILE  # the file outside the package
    return custom_method_dorefa


def _np_dorefa(w, k):
    """DoReFa-Net eq. (9) in NumPy."""
    n = 2**k - 1
    r = np.tanh(w) / (2 * np.abs(np.tanh(w)).max()) + 0.5
    return 2 * np.round(n * r) / n - 1


def test_forward_matches_the_paper_and_has_2_to_the_k_levels(dorefa):
    w = np.random.default_rng(0).standard_normal((64, 32)).astype(np.float32)
    for k in (2, 4):
        got = np.asarray(dorefa.dorefa_weights(jnp.asarray(w), k))
        np.testing.assert_allclose(got, _np_dorefa(w, k), atol=1e-6)
        assert len(np.unique(np.round(got, 5))) == 2**k


def test_gradient_is_straight_through_the_rounding(dorefa):
    w = jnp.asarray(np.random.default_rng(1).standard_normal(50).astype(np.float32))
    c = jnp.asarray(np.random.default_rng(2).standard_normal(50).astype(np.float32))
    g = jax.grad(lambda v: jnp.sum(c * dorefa.dorefa_weights(v, 4)))(w)
    g_smooth = jax.grad(lambda v: jnp.sum(c * dorefa.dorefa_input(v)))(w)  # d(2 r - 1)/dw
    np.testing.assert_allclose(g, g_smooth, rtol=1e-6)


def test_quantize_model_method_rules_and_summary(dorefa):
    model = MLP(64, 10, hidden=(32, 32), rngs=nnx.Rngs(0))
    replaced = quantize_model(model, method_rules("dorefa4"))
    assert replaced == ["blocks/0/dense"]
    ((_, layer),) = quant_layers(model)
    w = np.asarray(layer.kernel[...])
    np.testing.assert_allclose(layer.quantized_kernel(), _np_dorefa(w, 4), atol=1e-6)
    q = layer.encoded_kernel()
    np.testing.assert_array_equal(q.dequantize(), layer.quantized_kernel())
    assert set(np.unique(q.codes)) <= set(range(-15, 16, 2))
    s = summary(model, jnp.zeros((1, 64)))
    row = {r.path: r for r in s.rows}["blocks/0/dense"]
    assert row.params == {4: 32 * 32} and row.packed_bytes == 32 * 32 * 4 // 8
    assert s.total_macs()["4-bit"] == 32 * 32 and "MACs 4-bit" in str(s)


def test_trains_on_digits(dorefa):
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = jnp.asarray(x[:1024] / 16.0, jnp.float32)
    y = jnp.asarray(y[:1024])
    model = MLP(64, 10, hidden=(64, 64), rngs=nnx.Rngs(0))
    quantize_model(model, method_rules("dorefa2"))
    opt = nnx.Optimizer(model, optax.adam(3e-3), wrt=nnx.Param)

    @nnx.jit
    def step(model, opt, x, y):
        def loss_fn(m):
            return optax.softmax_cross_entropy_with_integer_labels(m(x), y).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        opt.update(model, grads)
        return loss

    losses = [float(step(model, opt, x, y)) for _ in range(60)]
    model.eval()
    acc = float(jnp.mean(jnp.argmax(model(x), -1) == y))
    assert losses[-1] < 0.5 * losses[0] and acc > 0.8


def test_end_to_end_config_train_summary_export_load_run_packed(dorefa, tmp_path):
    """README, "Adding a method", step by step: the user's method trained from a config by the training
    API, summarised, exported, saved, loaded and run packed, no extremeq file edited."""
    import extremeq
    from extremeq import data
    from extremeq.inference import CodesWeights, load
    from extremeq.train import default_config, train_and_evaluate, validate_config
    from extremeq.train.model import load_model_vars, restore_model_vars

    c = default_config()  # digits, an MLP
    c.model.hidden = (64, 64)
    c.quant.method = "dorefa4"  # the registered name: config validation reads the registry
    c.quant.first = c.quant.last = "weights"  # the stem and head get 4-bit weights too (float inputs)
    c.optimizer.update(name="adam", learning_rate=3e-3)
    c.num_epochs, c.progress_bar = 3, False
    assert validate_config(c).quant.method == "dorefa4"
    c.quant.method = "dorefa3"
    with pytest.raises(extremeq.train.ConfigError, match="dorefa4"):  # the error lists registered names
        validate_config(c)
    c.quant.method = "dorefa4"
    result = train_and_evaluate(c, str(tmp_path / "run"))
    assert result["finished"] and result["test_accuracy"] > 0.85

    # The trained network, from the run's checkpoint; the test images, normalised as in training.
    ds = data.load_from_config(c.dataset)
    cfg, model, variables = restore_model_vars(str(tmp_path / "run"), ds.num_classes, ds.image_shape)
    load_model_vars(model, variables)
    model.eval()
    x = data.normalize(ds.x_test, ds.mean, ds.std)

    s = summary(model, x[:1])
    assert {r.path: r.weight for r in s.rows if r.weight != "fp"} == {
        "stem": "dorefa4",
        "blocks/0/dense": "dorefa4",
        "head": "dorefa4",
    }
    assert s.total_params()[4] == 64 * 64 + 64 * 64 + 64 * 10 and s.total_macs()["4-bit"] == s.total_params()[4]

    packed = extremeq.export(
        model, recipe={"model": cfg.model.to_dict(), "num_classes": ds.num_classes, "input_shape": ds.image_shape}
    )
    packed.save(tmp_path / "model.npz")
    loaded = load(tmp_path / "model.npz")  # the method must be registered in the loading process too

    layers = dict(quant_layers(model))
    for path, layer in layers.items():
        stored = loaded.module
        for key in path.split("/"):
            stored = stored[int(key)] if key.isdigit() else getattr(stored, key)
        weights = stored.packed_weights()
        k, n = layer.in_features, layer.out_features
        assert isinstance(weights, CodesWeights) and weights.words.shape == (n, -(-k // 8))  # 8 4-bit codes a word
        assert set(np.asarray(weights.codebook)) <= set(range(-15, 16, 2))  # the odd codes, at most 16
        # The loaded file's weights are, bit for bit, those the training graph multiplies with.
        np.testing.assert_array_equal(np.asarray(weights.kernel((k, n))), np.asarray(layer.quantized_kernel()))

    # 4 bits a weight, as the summary counts them; the file adds each layer's codebook and alpha.
    assert 0 < packed.nbytes - s.packed_bytes <= 3 * (16 + 4)

    ref = np.asarray(model(x))  # the training graph in evaluation mode
    got = np.asarray(loaded(x))
    # Same weights bit for bit (above) and the same float32 ops in the same order (dot, batch norm,
    # ReLU); only XLA's fusion of the jitted packed graph against the eager training graph may
    # round differently, a few float32 ulps of the logits (|logits| ~ 10).
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    assert np.array_equal(got.argmax(-1), ref.argmax(-1))


class _ConvNet(nnx.Module):
    def __init__(self, kernel_quantizer, rngs):
        from extremeq.nn import QuantConv

        self.conv = QuantConv(3, 8, 3, strides=2, kernel_quantizer=kernel_quantizer, rngs=rngs)

    def __call__(self, x):
        return self.conv(x)


def test_a_user_method_in_a_convolution_runs_packed(dorefa):
    import extremeq

    net = _ConvNet("dorefa2", nnx.Rngs(0))
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 9, 9, 3)).astype(np.float32))
    packed = extremeq.export(net)
    weights = packed.module.conv.packed_weights()
    assert weights.words.shape == (8, -(-27 // 16))  # 2-bit indices, 16 a word, K = 3*3*3
    np.testing.assert_array_equal(weights.kernel((3, 3, 3, 8)), net.conv.quantized_kernel())
    np.testing.assert_allclose(packed(x), net(x), rtol=1e-5, atol=1e-5)  # float rounding of the conv only


def test_more_distinct_codes_than_the_bits_allow_is_refused():
    import extremeq
    from extremeq import methods

    def forward(w, spec, *, scales, key):
        return jnp.round(jnp.clip(w * 2, -2, 2))  # 5 levels

    def encode(w, spec, scales):
        return methods.QArray(forward(w, spec, scales=scales, key=None), {}, spec.name)

    methods.register(
        methods.WeightMethod(name="five_levels_for_test", bits=2, precision="2-bit", forward=forward, encode=encode),
        replace=True,
    )
    net = _ConvNet("five_levels_for_test", nnx.Rngs(0))
    net.conv.kernel[...] = jnp.linspace(-2, 2, 216).reshape(3, 3, 3, 8)  # all five levels
    with pytest.raises(ValueError, match="five_levels_for_test.*bits=2.*5 distinct codes"):
        extremeq.export(net)


def test_the_command_line_trains_a_user_method_named_by_a_config_file(tmp_path):
    """README, "Adding a method": a config file that imports the method's file; the CLI as for any method."""
    import json
    import subprocess

    config = tmp_path / "dorefa_config.py"
    config.write_text(
        "import custom_method_dorefa  # noqa: F401  (registers dorefa2, dorefa4)\n"
        "from extremeq.train.config import default_config\n\n\n"
        "def get_config(method='dorefa4'):\n"
        "    c = default_config()\n"
        "    c.quant.method = method\n"
        "    c.progress_bar = False\n"
        "    return c\n"
    )
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(USER_FILE.parent), os.environ["PYTHONPATH"]]), JAX_PLATFORMS="cpu"
    )
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "extremeq.train",
            f"--config={config}:dorefa2",
            f"--workdir={tmp_path / 'run'}",
            "--config.max_steps=2",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads((tmp_path / "run" / "final.json").read_text())["step"] == 2
    assert json.loads((tmp_path / "run" / "config.json").read_text())["quant"]["method"] == "dorefa2"


def test_a_method_without_codes_is_stored_as_its_evaluation_forward():
    import extremeq
    from extremeq import methods
    from extremeq.inference import FloatWeights

    entry = methods.WeightMethod(
        name="halve_export_for_test", bits=32, precision="float", forward=lambda w, spec, *, scales, key: w / 2
    )
    assert entry.packing == "float"  # no encode: the default packing stores the float kernel
    methods.register(entry, replace=True)
    net = _ConvNet("halve_export_for_test", nnx.Rngs(0))
    packed = extremeq.export(net)
    weights = packed.module.conv.packed_weights()
    assert isinstance(weights, FloatWeights)
    np.testing.assert_array_equal(weights.w, net.conv.kernel[...] / 2)  # Q_w(W), not the latent W
    with pytest.raises(ValueError, match="packing 'codes' stores integer codes, so it needs an encode"):
        methods.WeightMethod(name="x", bits=4, precision="4-bit", forward=entry.forward, packing="codes")
