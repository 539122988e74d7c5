"""Packed inference: export a trained quantized model to 1-bit / 2-bit words, save and load it, run it
through ``extremeq.kernels``.

    import extremeq
    from extremeq.inference import load

    packed = extremeq.export(model, recipe={"model": {"name": "mlp", "hidden": (256, 256)},
                                            "num_classes": 10, "input_shape": (8, 8, 1)})
    logits = packed(x)                        # jitted, any batch size
    nbytes = packed.save("model.npz")         # bytes written
    print(packed.size_report())               # file vs extremeq.summary's prediction
    packed = load("model.npz")

Modules, one concept each:

* :mod:`~extremeq.inference.weights`: typed packed weights, one dataclass per storage format
  (``WeightMethod.packing`` of the method registry, ``extremeq.methods``), built from the method's
  ``encode``, with forwards. No module here knows a method by name: a method registered from a file
  of your own is exported, saved, loaded (after the same registration) and run like a built-in one.
* :mod:`~extremeq.inference.layers`: ``PackedLinear`` / ``PackedConv``.
* :mod:`~extremeq.inference.exporter`: ``export(model)``, ``pack_layer``.
* :mod:`~extremeq.inference.model`: ``PackedModel``, ``load``.
* :mod:`~extremeq.inference.file_format`: the ``.npz`` format, its version and checksums.
* :mod:`~extremeq.inference.recipes`: recipes and the registry of model builders
  (``register_factory``); a model file is data and never names code to import.
* :mod:`~extremeq.inference.rebuild`: rebuilding the network from a recipe and the stored arrays.

Exactness: binary products are computed in integers, so the packed model is exact where the float
training graph rounds. Predictions agree with the training graph's (the tests ask >= 99.9%); logits
agree to float rounding where no activation is binary or int8. One place where they can differ: a
+-1 product that is exactly 0 and reaches the next sign() unchanged (e.g. batch norm with zero mean
and shift, as at initialisation) is +1 here but +-rounding noise in the float graph.
"""

from extremeq.inference.exporter import SUPPORTED, check_supported, export, pack_layer
from extremeq.inference.file_format import (
    FORMAT,
    FORMAT_VERSION,
    META_KEY,
    ExportFormatError,
)
from extremeq.inference.layers import PackedConv, PackedLinear
from extremeq.inference.model import PackedModel, SizeRow, load
from extremeq.inference.rebuild import fresh_rng_state
from extremeq.inference.recipes import build_from_recipe, register_factory
from extremeq.inference.weights import (
    BinaryWeights,
    CodesWeights,
    FloatWeights,
    Int8Weights,
    PackedWeights,
    TernaryWeights,
    TTQWeights,
)

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "META_KEY",
    "SUPPORTED",
    "BinaryWeights",
    "CodesWeights",
    "ExportFormatError",
    "FloatWeights",
    "Int8Weights",
    "PackedConv",
    "PackedLinear",
    "PackedModel",
    "PackedWeights",
    "SizeRow",
    "TTQWeights",
    "TernaryWeights",
    "build_from_recipe",
    "check_supported",
    "export",
    "fresh_rng_state",
    "load",
    "pack_layer",
    "register_factory",
]
