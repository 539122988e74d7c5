"""Flax NNX layers with quantized weights/inputs, quantizer specs and the precision policy."""

from extremeq.nn.layers import QuantConv, QuantLinear, quantize_input, quantize_weight
from extremeq.nn.policy import (
    METHODS,
    clip_latent_weights,
    method_rules,
    quant_layers,
    quantize_model,
)
from extremeq.nn.specs import INPUT_QUANTIZERS, WEIGHT_QUANTIZERS, QuantizerSpec, as_spec

__all__ = [
    "QuantConv",
    "QuantLinear",
    "quantize_input",
    "quantize_weight",
    "METHODS",
    "clip_latent_weights",
    "method_rules",
    "quant_layers",
    "quantize_model",
    "INPUT_QUANTIZERS",
    "WEIGHT_QUANTIZERS",
    "QuantizerSpec",
    "as_spec",
]
