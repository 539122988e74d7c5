"""Dense-Sparse-Dense's re-dense start: ``quant.init_weights = "quantized"`` loads a ternary run's
weights alpha * t (pruned ones at 0) into float layers."""

import os
import sys

import numpy as np
from flax import nnx

sys.path.insert(0, os.path.dirname(__file__))
from train_testing import leaves_by_path, load_raw, tiny_config

from extremeq.train import train_and_evaluate


def test_redense_starts_from_the_ternary_weights(tmp_path):
    from extremeq.train.config import validate_config
    from extremeq.train.model import create_model

    wd = str(tmp_path / "twn")
    train_and_evaluate(tiny_config("twn", num_epochs=1), wd)
    m, _, meta = load_raw(wd)
    latent = leaves_by_path(m, meta["model_paths"])["['params']['blocks'][1]['dense']['kernel']"]
    delta = 0.7 * np.mean(np.abs(latent))  # TWN (Li et al. 2016): per-tensor threshold and scale
    alpha = np.abs(latent)[np.abs(latent) > delta].mean()
    want = np.where(np.abs(latent) > delta, np.sign(latent) * alpha, 0.0)

    c = tiny_config("fp", num_epochs=1)
    c.quant.init_from = wd
    c.quant.init_weights = "quantized"
    model = create_model(validate_config(c), 10, (8, 8, 1))
    layer = model.blocks[1].dense
    assert type(layer) is nnx.Linear
    np.testing.assert_allclose(np.asarray(layer.kernel[...]), want, rtol=1e-6)

    c.quant.init_weights = "latent"  # the default keeps the quantized layers and their latent weights
    model = create_model(validate_config(c), 10, (8, 8, 1))
    np.testing.assert_array_equal(np.asarray(model.blocks[1].dense.kernel[...]), latent)
    assert type(model.blocks[1].dense) is not nnx.Linear
