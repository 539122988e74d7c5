"""``export(model)``: pack a trained quantized NNX model for inference.

The packed model keeps the network's own NNX structure and ``__call__`` (so an MLP, a LeNet-5 or a
ResNet with shortcuts run their own forward code), with every ``QuantLinear`` / ``QuantConv``
replaced by a :class:`~extremeq.inference.layers.PackedLinear` /
:class:`~extremeq.inference.layers.PackedConv` holding typed packed weights
(:mod:`extremeq.inference.weights`): each layer's weight method (``extremeq.methods``) encodes its
kernel into integer codes and scales, stored as the method's ``packing``. A method registered from
a file of your own is exported like a built-in one.

Float layers (``nnx.Linear``/``nnx.Conv``), batch norm and every other part of the network are
kept as they are (float32). Batch norm is **not** folded: in the model zoo it sits where the next
layer binarizes its input, or after a max-pool, so folding would not remove it from most places.
"""

from __future__ import annotations

import warnings
from typing import Mapping

import jax.numpy as jnp
import numpy as np
from flax import nnx

from extremeq.inference.layers import PackedConv, PackedLinear, padding_config
from extremeq.inference.model import PackedModel
from extremeq.inference.rebuild import path_tuple, set_at
from extremeq.inference.recipes import check_recipe
from extremeq.inference.weights import numpy_arrays, pack_weights
from extremeq.nn.layers import QuantConv, QuantLinear
from extremeq.nn.models.reactnet import RPReLU, RSign
from extremeq.nn.policy import path_string, quant_layers

__all__ = ["export", "pack_layer", "check_supported", "SUPPORTED"]

#: Modules export knows. Other modules may hold sub-modules, but not parameters of their own.
#: ReActNet's RSign and RPReLU (per-channel float parameters) are stored as they are, like BatchNorm.
SUPPORTED = (QuantLinear, QuantConv, nnx.Linear, nnx.Conv, nnx.BatchNorm, nnx.LayerNorm, nnx.Dropout, RSign, RPReLU)


def pack_layer(layer: QuantLinear | QuantConv, path: str = "?") -> PackedLinear | PackedConv:
    """The packed inference twin of a QuantLinear / QuantConv (eval-mode weights).

    Warns when the packed weights differ from the layer's evaluation forward (e.g. ``bc_stochastic``
    evaluated with ``stochastic_eval='mean'``: real-valued weights, packed as the 1-bit sign net).
    """
    spec = layer.kernel_quantizer
    weights = pack_weights(
        spec, layer.kernel[...], layer.learned_scales(), layer.quantized_kernel(), is_conv=isinstance(layer, QuantConv)
    )
    _warn_if_not_the_eval_forward(layer, path)
    arrays = numpy_arrays(weights)
    if layer.bias is not None:
        arrays["bias"] = np.asarray(layer.bias[...], np.float32)
    common = dict(
        in_features=layer.in_features,
        out_features=layer.out_features,
        weight=spec.name,
        inputs=layer.input_quantizer.name,
    )
    if isinstance(layer, QuantLinear):
        return PackedLinear(common, arrays)
    if layer.feature_group_count != 1 and not weights.GROUPED_CONV:
        raise ValueError(
            f"export: layer '{path}' is a grouped QuantConv (feature_group_count="
            f"{layer.feature_group_count}) with packed weights; the packed kernels support groups=1 only. "
            "Keep it float or int8 (precision policy rule with kernel='fp' or 'int8')."
        )
    config = dict(
        common,
        kernel_size=list(layer.kernel_size),
        strides=list(layer.strides),
        padding=padding_config(layer.padding),
        feature_group_count=layer.feature_group_count,
        pad_value=float(layer.pad_value),
    )
    return PackedConv(config, arrays)


def _warn_if_not_the_eval_forward(layer, path: str) -> None:
    q = layer.encoded_kernel()
    if q is None:
        return
    packed, forward = np.asarray(q.dequantize()), np.asarray(layer.quantized_kernel())
    if not np.array_equal(packed, forward, equal_nan=True):
        spec = layer.kernel_quantizer
        warnings.warn(
            f"export: layer '{path}' ({spec.name}, options {dict(spec.options)}) is packed as its method's "
            f"codes, which differ from its evaluation forward by up to {np.nanmax(np.abs(packed - forward)):.3g}; "
            "the packed model's predictions follow the codes (a bc_stochastic layer evaluated with "
            "stochastic_eval='mean' is packed as its deterministic sign, the 1-bit net)",
            stacklevel=4,
        )


def _own_params(module) -> list[str]:
    return [k for k, v in vars(module).items() if isinstance(v, nnx.Variable) and isinstance(v, nnx.Param)]


def check_supported(model) -> None:
    """Raise a ValueError naming the first module export cannot handle."""
    for path, module in nnx.iter_modules(model):
        if isinstance(module, SUPPORTED + (PackedLinear, PackedConv)):
            continue
        own = _own_params(module)
        if own:
            where = path_string(path) or "<root>"
            raise ValueError(
                f"export: layer '{where}' of type {type(module).__name__} holds parameters {own} that export "
                f"does not know how to store. Supported layers: "
                f"{', '.join(c.__name__ for c in SUPPORTED)} (modules that only contain these are fine). "
                "Build the network from these, or keep such a layer out of the model you export."
            )


def export(model, *, recipe: Mapping | None = None, sample_input=None) -> PackedModel:
    """Pack a trained quantized NNX model for inference (the model itself is left unchanged).

    Args:
      model: an NNX network whose quantized layers are QuantLinear/QuantConv (precision policy).
      recipe: how to rebuild the network's structure when loading (:mod:`extremeq.inference.recipes`);
        needed by :meth:`PackedModel.save`. A zoo recipe also gives the summary's input shape.
      sample_input: an input batch (or shape without batch axis is taken from the recipe), used only
        to record ``extremeq.summary``'s size prediction for :meth:`PackedModel.size_report`.

    Returns:
      a :class:`PackedModel`, callable on input batches of any size.
    """
    if not isinstance(model, nnx.Module):
        raise TypeError(f"export needs a Flax NNX module, got {type(model).__name__}")
    check_supported(model)
    recipe = check_recipe(recipe)
    shape = None
    if sample_input is not None:
        shape = tuple(jnp.shape(sample_input)[1:])
    elif recipe is not None and "input_shape" in recipe:
        shape = tuple(recipe["input_shape"])
    predicted = None
    if shape is not None:
        from extremeq.summary import summary

        s = summary(model, jnp.zeros((1, *shape), jnp.float32))
        predicted = {
            "packed_bytes": s.packed_bytes,
            "float32_bytes": s.float32_bytes,
            "rows": {r.path: r.packed_bytes for r in s.rows},
        }

    packed = nnx.clone(model)
    for path, layer in list(quant_layers(packed)):
        layer.deterministic = True  # bc_stochastic: the eval sign
        set_at(packed, path_tuple(path), pack_layer(layer, path))
    layers = {
        path_string(p): {"class": type(m).__name__, "config": m.config}
        for p, m in nnx.iter_modules(packed)
        if isinstance(m, (PackedLinear, PackedConv))
    }
    packed.eval()
    out = PackedModel(packed, recipe=recipe, layers=layers, summary=predicted)
    if recipe is not None:
        out.check_rebuild()
    return out
