"""Quantization methods, one place each: ``from extremeq import methods``.

``methods.weight_method("bwn")`` is everything extremeq knows about BWN weights (forward with its
estimator, bits, precision, scales, integer codes and decode); ``methods.input_method("xnor")`` and
``methods.method("xnor")`` the same for inputs and for a paper's recipe. The layers
(``extremeq.nn``), the precision policy, the summary, the config validation and the exporter read
these entries and nothing else. Families: :mod:`~extremeq.methods.fp`,
:mod:`~extremeq.methods.binary`, :mod:`~extremeq.methods.ternary`, :mod:`~extremeq.methods.int8`.

A method of your own: build a :class:`WeightMethod` (and a :class:`Method` so that
``method_rules`` and the configs accept its name) in one file and call :func:`register`; see the
README, "Adding a method".
"""

from extremeq.methods.registry import (
    BINARY,
    BINARY_INPUT_METHODS,
    BINARY_METHODS,
    INPUT_QUANTIZERS,
    METHODS,
    PACKINGS,
    PRECISIONS,
    TERNARY,
    WEIGHT_QUANTIZERS,
    InputMethod,
    Method,
    QArray,
    WeightMethod,
    input_method,
    method,
    no_scales,
    per_channel_scales,
    register,
    scaled_decode,
    weight_method,
)

# The built-in families register themselves on import (order = the order of the tables).
from extremeq.methods import fp, binary, ternary, int8  # noqa: F401  isort: skip

__all__ = [
    "BINARY",
    "BINARY_INPUT_METHODS",
    "BINARY_METHODS",
    "INPUT_QUANTIZERS",
    "METHODS",
    "PACKINGS",
    "PRECISIONS",
    "TERNARY",
    "WEIGHT_QUANTIZERS",
    "InputMethod",
    "Method",
    "QArray",
    "WeightMethod",
    "input_method",
    "method",
    "no_scales",
    "per_channel_scales",
    "register",
    "scaled_decode",
    "weight_method",
]
