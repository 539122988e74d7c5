"""Symmetric int8 (8 bits) for weights (per output channel) and inputs (per example).

weights  s clip(round(W / s), -127, 127), s = max|W| / 127      codes in [-127, 127], alpha = s
inputs   the same with one absmax scale per example
"""

from __future__ import annotations

from extremeq import quantizers as Q
from extremeq.methods.registry import (
    InputMethod,
    QArray,
    WeightMethod,
    per_channel_scales,
    register,
)


def _per_channel(spec) -> bool:
    return spec.option("per_channel", True)


def _int8_weights(w, spec, *, scales, key):
    del scales, key
    return Q.int8(w, spec.estimator, per_channel=_per_channel(spec))


def _int8_encode(w, spec, scales):
    del scales
    s = Q.int8_weight_scale(w, _per_channel(spec))
    return QArray(Q.int8_codes(w, s), {"alpha": s}, spec.name)


def _int8_inputs(x, spec, *, kernel_size=None, strides=1, padding="SAME"):
    del kernel_size, strides, padding
    return Q.int8_activation(x, spec.estimator), None


register(
    WeightMethod(
        name="int8",
        bits=8,
        precision="int8",
        forward=_int8_weights,
        encode=_int8_encode,
        packing="int8",
        scale_count=per_channel_scales(True),
        doc="symmetric int8, per output channel",
    ),
    InputMethod(
        name="int8", bits=8, precision="int8", forward=_int8_inputs, doc="symmetric int8, one absmax scale per example"
    ),
)
