"""densify_model (DSD's re-dense step): float layers holding exactly the quantized weights."""

import jax
import numpy as np
from flax import nnx

from extremeq.nn import method_rules, quantize_model
from extremeq.nn.densify import densify_model
from extremeq.nn.models import build_model


def test_twn_lenet5_densifies_to_its_ternary_weights():
    model = build_model({"name": "lenet5"}, 10, (28, 28, 1), nnx.Rngs(0))
    quantize_model(model, method_rules("twn"))
    x = jax.random.normal(jax.random.key(0), (3, 28, 28, 1))
    model.eval()
    want_out = model(x)
    conv = model.blocks[0].conv
    w = np.asarray(conv.kernel[...])
    delta = 0.7 * np.mean(np.abs(w))  # TWN threshold, per tensor (Li & Liu 2016, Eq. 10)
    mask = np.abs(w) > delta
    alpha = np.abs(w)[mask].mean()
    paths = densify_model(model)
    assert "blocks/0/conv" in paths and "fc" in paths and "stem" not in paths and "head" not in paths
    dense = model.blocks[0].conv
    assert type(dense) is nnx.Conv
    np.testing.assert_allclose(dense.kernel[...], np.where(mask, np.sign(w) * alpha, 0.0), rtol=1e-6)
    assert 0.3 < 1 - mask.mean() < 0.7  # the "pruned" (zero) fraction DSD restores
    # Same function as the ternary net (its inputs were float): outputs agree.
    np.testing.assert_allclose(model(x), want_out, rtol=1e-4, atol=1e-5)
    # Nothing quantized is left.
    from extremeq.nn import quant_layers

    assert list(quant_layers(model)) == []
