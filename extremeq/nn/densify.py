"""Re-densify a quantized model: the last step of Dense-Sparse-Dense (Han et al., ICLR 2017,
"DSD: Dense-Sparse-Dense Training for Deep Neural Networks").

DSD trains dense, then sparse (pruned; here: pruned and quantized, e.g. TWN's ternary weights
whose zeros are the pruned ones), then dense again: the pruned weights come back, starting at
zero, and every weight trains in full precision from the sparse solution. :func:`densify_model`
makes that starting point: each quantized layer becomes a plain ``nnx.Linear`` / ``nnx.Conv``
whose kernel is the layer's quantized kernel ``Q_w(W)`` (e.g. ``alpha * t`` for TWN, so the
pruned weights are exactly 0), biases kept; inputs are no longer quantized.
"""

from __future__ import annotations

from flax import nnx

from extremeq.nn.layers import QuantConv, QuantLinear, _Quantized
from extremeq.nn.policy import path_string, set_at


def _dense_twin(layer, rngs: nnx.Rngs):
    use_bias = layer.bias is not None
    if isinstance(layer, QuantLinear):
        new = nnx.Linear(layer.in_features, layer.out_features, use_bias=use_bias, rngs=rngs)
    elif isinstance(layer, QuantConv):
        new = nnx.Conv(
            layer.in_features,
            layer.out_features,
            layer.kernel_size,
            strides=layer.strides,
            padding=layer.padding,
            feature_group_count=layer.feature_group_count,
            use_bias=use_bias,
            rngs=rngs,
        )
    else:
        raise TypeError(f"densify_model: unsupported layer {type(layer).__name__}")
    new.kernel[...] = layer.quantized_kernel()
    if use_bias:
        new.bias[...] = layer.bias[...]
    return new


def densify_model(model) -> list[str]:
    """Replace every quantized layer of ``model`` (in place) by a float layer holding its
    quantized weights (see module docstring). Returns the replaced paths."""
    rngs = nnx.Rngs(0)
    targets = [(path, layer) for path, layer in nnx.iter_modules(model) if isinstance(layer, _Quantized)]
    for path, layer in targets:
        set_at(model, path, _dense_twin(layer, rngs))
    return [path_string(p) for p, _ in targets]
