"""quant.keep_fp: layer-path regexes kept float ahead of the method's rules."""

import os
import sys

import pytest
from flax import nnx

sys.path.insert(0, os.path.dirname(__file__))
from train_testing import tiny_config

from extremeq.train.config import ConfigError, validate_config


def test_keep_fp_leaves_the_named_layers_float():
    from extremeq.nn import quant_layers
    from extremeq.train.model import build_quantized_model

    c = tiny_config("bwn", num_epochs=1)
    c.quant.keep_fp = ("blocks/1/.*",)
    model = build_quantized_model(validate_config(c), 10, (8, 8, 1))
    quantized = [p for p, _ in quant_layers(model)]
    assert type(model.blocks[1].dense) is nnx.Linear
    assert "blocks/0/dense" in quantized and not any(p.startswith("blocks/1/") for p in quantized)


def test_keep_fp_rejects_a_bad_regex():
    c = tiny_config("bwn", num_epochs=1)
    c.quant.keep_fp = ("blocks/(",)
    with pytest.raises(ConfigError, match="quant.keep_fp"):
        validate_config(c)
