"""Adding a method takes one file (README, "Adding a method"): DoReFa-Net k-bit weights, defined in
``experiments/custom_method_dorefa.py`` outside the package, registered on import, then used by
``quantize_model`` / ``method_rules``, summarised and trained, with no extremeq file edited."""

import importlib.util
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
    name = "custom_method_dorefa"
    if name not in sys.modules:  # import once per process: registering twice is refused
        spec = importlib.util.spec_from_file_location(name, USER_FILE)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]


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
