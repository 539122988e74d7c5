"""Wider networks from a config: ``config.model.width_multiplier`` passes validation and scales the
built model's channels (ResNet-20: stem 16 -> 32 output channels); a bad multiplier is a ConfigError."""

import pytest
from flax import nnx

from extremeq.train.config import ConfigError, load_config_file, validate_config
from extremeq.train.model import build_quantized_model


def test_width_multiplier_from_the_config():
    c = load_config_file("configs/cifar10_resnet.py:resnet20:xnor")
    c.model.width_multiplier = 2
    validate_config(c, num_devices=1)
    m = nnx.eval_shape(lambda: build_quantized_model(c, 10, (32, 32, 3)))
    assert m.stem.kernel.shape == (3, 3, 3, 32) and m.head.in_features == 4 * 32
    c.model.width_multiplier = 0
    with pytest.raises(ConfigError, match="width_multiplier must be a positive number"):
        build_quantized_model(c, 10, (32, 32, 3))
