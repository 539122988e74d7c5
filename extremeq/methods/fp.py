"""Float: no quantization (32 bits), for weights, inputs and the float baseline method."""

from __future__ import annotations

from extremeq.methods.registry import InputMethod, Method, WeightMethod, register


def _identity_weights(w, spec, *, scales, key):
    del spec, scales, key
    return w


def _identity_inputs(x, spec, *, kernel_size=None, strides=1, padding="SAME"):
    del spec, kernel_size, strides, padding
    return x, None


FP = WeightMethod(
    name="fp", bits=32, precision="float", forward=_identity_weights, packing="float", doc="float, no quantization"
)
FP_INPUT = InputMethod(name="fp", bits=32, precision="float", forward=_identity_inputs, doc="float")

register(FP, FP_INPUT, Method(name="fp", kernel="fp", input="fp", doc="float baseline"))
