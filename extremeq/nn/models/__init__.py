"""Model zoo: the networks of the BinaryConnect / BNN / XNOR-Net / TWN / TTQ papers, in Flax NNX.

Every model is built only from ``nnx.Linear``, ``nnx.Conv``, ``nnx.BatchNorm``, ``nnx.Dropout``
and element-wise activations, so the precision policy (``extremeq.nn.quantize_model``) can swap
each Linear/Conv for its quantized twin in place. Conventions shared by all models:

* The first weight layer is the attribute ``stem`` and the last one ``head``; repeated units live
  in an ``nnx.List`` called ``blocks``, so layer paths read ``"stem"``, ``"blocks/3/conv1"``,
  ``"head"``. ``layer_order(model, x)`` lists the Linear/Conv paths in forward order.
* Order inside a unit: ``weight layer -> [max-pool] -> BatchNorm -> activation``. Pooling sits
  between the convolution and the BatchNorm, as in XNOR-Net's block (BN -> BinActiv -> BinConv ->
  Pool, read from the next block's point of view) and BinaryNet's Theano/Torch models (Conv ->
  MaxPool -> BN -> binary tanh): the BatchNorm then sees the values that the next layer's input
  quantizer binarizes, so the binarization threshold is learned by BN. The ResNet stems are the
  exception (conv -> BN -> ReLU -> max-pool, He et al. 2016); they stay full precision.
* Weight layers followed by BatchNorm carry no bias (BN's beta makes it redundant); ``head`` has
  one unless a BatchNorm follows it (``head_bn``, BinaryConnect/BinaryNet MLPs).
* ``activation``: ``"relu"`` (default), ``"hardtanh"`` (clip(x, -1, 1), BinaryNet's htanh) or
  ``"identity"``. A network whose next layer binarizes its inputs (methods ``bnn``, ``xnor``) must
  not use ReLU: sign(relu(x)) = +1 everywhere. Use ``"hardtanh"`` there (sign(htanh(x)) =
  sign(x), and its gradient 1_{|x|<=1} is the clipped straight-through estimator); the configs
  in ``configs/`` do this for those methods.

Train/eval mode (NNX idiom): BatchNorm (``use_running_average``) and Dropout (``deterministic``)
keep their mode as module attributes, set for the whole model by ``model.train()`` /
``model.eval()`` (or ``nnx.view``). A fresh model is in train mode. ``model(x, train=...)``
additionally accepts an explicit ``train: bool`` that overrides those attributes for one call;
``train=None`` (default) follows the mode attributes.

Files: ``blocks`` (activations, Dense/Conv/Basic blocks), ``mlp``, ``cnn`` (LeNet-5, VGG-7,
AlexNet), ``resnet`` (CIFAR ResNets, ResNet-18); this module builds them by name.

Inputs are NHWC float arrays; an NHW batch (e.g. MNIST) gets a channel axis appended. The MLP
flattens whatever it gets (permutation-invariant setting).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence

import jax
from flax import nnx

from extremeq.nn.models.blocks import (
    ACTIVATIONS,
    BasicBlock,
    ConvBlock,
    DenseBlock,
    _image_shape,
    hard_tanh,
)
from extremeq.nn.models.cnn import VGG7, AlexNet, LeNet5
from extremeq.nn.models.mlp import MLP
from extremeq.nn.models.reactnet import BiRealResNet
from extremeq.nn.models.resnet import CifarResNet, ResNet18

__all__ = [
    "ACTIVATIONS",
    "MLP",
    "MODEL_NAMES",
    "VGG7",
    "ZOO_CLASSES",
    "AlexNet",
    "BiRealResNet",
    "BasicBlock",
    "CifarResNet",
    "ConvBlock",
    "DenseBlock",
    "LeNet5",
    "ResNet18",
    "build_model",
    "hard_tanh",
    "layer_order",
]


def _build_mlp(kw, num_classes, input_shape, rngs):
    in_features = math.prod(int(s) for s in input_shape)
    if in_features < 1:
        raise ValueError(f"mlp needs a non-empty input_shape, got {tuple(input_shape)}")
    return MLP, dict(in_features=in_features, num_classes=num_classes, rngs=rngs), kw


def _build_image(cls, with_size):
    def build(kw, num_classes, input_shape, rngs):
        h, w, c = _image_shape(input_shape, cls.__name__)
        fixed = dict(in_features=c, num_classes=num_classes, rngs=rngs)
        if with_size:
            fixed["input_size"] = (h, w)
        return cls, fixed, kw

    return build


def _build_cifar_resnet(depth):
    def build(kw, num_classes, input_shape, rngs):
        _, _, c = _image_shape(input_shape, f"resnet{depth}")
        return CifarResNet, dict(depth=depth, in_features=c, num_classes=num_classes, rngs=rngs), kw

    return build


def _build_bireal(depth, block):
    def build(kw, num_classes, input_shape, rngs):
        _, _, c = _image_shape(input_shape, f"{block}_resnet{depth}")
        kw.setdefault("width", 64 if depth == 18 else 16)
        return BiRealResNet, dict(depth=depth, block=block, in_features=c, num_classes=num_classes, rngs=rngs), kw

    return build


def _scaled_width(cls, kw, multiplier, name: str) -> int:
    """Wider networks: the model's ``width`` (its channel plan's base) times ``width_multiplier``,
    rounded to a whole channel count (every stage scales with it)."""
    params = inspect.signature(cls.__init__).parameters
    if "width" not in params:
        raise ValueError(
            f"model {name!r} has no channel width to multiply; width_multiplier applies to "
            "the ResNets, VGG-7 and the Bi-Real/ReActNet ResNets"
        )
    if isinstance(multiplier, bool) or not isinstance(multiplier, (int, float)) or multiplier <= 0:
        raise ValueError(f"width_multiplier must be a positive number (e.g. 2 for a 2x-wide net), got {multiplier!r}")
    return max(1, round(kw.get("width", params["width"].default) * multiplier))


_BUILDERS = {
    "mlp": _build_mlp,
    "lenet5": _build_image(LeNet5, True),
    "vgg7": _build_image(VGG7, True),
    "resnet20": _build_cifar_resnet(20),
    "resnet32": _build_cifar_resnet(32),
    "resnet44": _build_cifar_resnet(44),
    "resnet56": _build_cifar_resnet(56),
    "resnet18": _build_image(ResNet18, False),
    "alexnet": _build_image(AlexNet, True),
    "bireal_resnet20": _build_bireal(20, "bireal"),
    "bireal_resnet18": _build_bireal(18, "bireal"),
    "reactnet_resnet20": _build_bireal(20, "reactnet"),
    "reactnet_resnet18": _build_bireal(18, "reactnet"),
}

MODEL_NAMES: tuple[str, ...] = tuple(_BUILDERS)

# The zoo's network classes: the builders a model file's recipe may name (extremeq.export.register_factory).
ZOO_CLASSES: tuple[type, ...] = (MLP, LeNet5, VGG7, CifarResNet, ResNet18, AlexNet, BiRealResNet)


def build_model(model_config, num_classes: int, input_shape: Sequence[int], rngs: nnx.Rngs | int) -> nnx.Module:
    """Builds a zoo model from ``config.model`` (a ConfigDict or mapping: ``name`` plus keyword
    arguments of the model class, e.g. ``hidden``, ``dropout``, ``activation``, ``shortcut``), plus
    ``width_multiplier`` (wider networks: the ResNets', VGG-7's and the Bi-Real/ReActNet ResNets'
    ``width`` times it, e.g. ``--config.model.width_multiplier=2``).

    ``input_shape`` is the shape of one example without the batch axis, (H, W, C) or (H, W) for
    images (the MLP flattens any shape). ``rngs`` is an ``nnx.Rngs`` or an integer seed.
    """
    if hasattr(model_config, "to_dict"):
        kwargs = dict(model_config.to_dict())
    elif isinstance(model_config, Mapping):
        kwargs = dict(model_config)
    else:
        raise TypeError(f"model_config must be a ConfigDict or a mapping with a 'name', got {type(model_config)}")
    name = kwargs.pop("name", None)
    if name not in _BUILDERS:
        raise ValueError(f"model {name!r} unknown; choose one of {sorted(_BUILDERS)}")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if isinstance(rngs, int):
        rngs = nnx.Rngs(rngs)
    for key in ("hidden", "input_size"):
        if isinstance(kwargs.get(key), list):
            kwargs[key] = tuple(kwargs[key])
    multiplier = kwargs.pop("width_multiplier", 1)
    cls, fixed, kw = _BUILDERS[name](kwargs, num_classes, tuple(input_shape), rngs)
    if multiplier != 1:
        kw["width"] = _scaled_width(cls, kw, multiplier, name)
    params = inspect.signature(cls.__init__).parameters
    allowed = sorted(
        k
        for k, p in params.items()
        if k != "self" and k not in fixed and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    )
    unknown = sorted(set(kw) - set(allowed))
    if unknown:
        raise ValueError(f"model {name!r} got unknown option(s) {unknown}; it accepts {allowed}")
    return cls(**fixed, **kw)


def _is_weight_layer(node) -> bool:
    return isinstance(node, (nnx.Linear, nnx.Conv)) or (
        isinstance(node, nnx.Module) and isinstance(getattr(node, "kernel", None), nnx.Param)
    )


def layer_order(model: nnx.Module, sample_input) -> list[str]:
    """Paths ("/"-joined attribute paths, as the precision policy matches them) of the model's
    Linear/Conv layers (and any module holding an ``nnx.Param`` ``kernel``, e.g. QuantLinear),
    in the order the forward pass first calls them.

    Runs the forward abstractly (``nnx.eval_shape``, eval mode: nothing is computed or updated)
    on ``sample_input``, an array or ``jax.ShapeDtypeStruct`` with a batch axis; the model may
    itself be abstract (built under ``nnx.eval_shape``). Layers the forward never calls are left
    out; a weight layer nested inside another one is reported as its parent.
    """
    order: list[str] = []
    paths: dict[int, str] = {}

    def recording(original):
        def __call__(self, *args, **kwargs):
            p = paths.get(id(self))
            if p is not None and p not in order:
                order.append(p)
            return original(self, *args, **kwargs)

        return __call__

    def forward(m, x):
        for path, node in nnx.iter_graph(m):
            if _is_weight_layer(node) and id(node) not in paths:
                paths[id(node)] = "/".join(str(p) for p in path)
        return m(x, train=False)

    originals = {}
    for _, node in nnx.iter_graph(model):
        t = type(node)
        if _is_weight_layer(node) and t not in originals:
            originals[t] = t.__dict__.get("__call__")
            t.__call__ = recording(t.__call__)
    try:
        spec = jax.ShapeDtypeStruct(tuple(sample_input.shape), sample_input.dtype)
        nnx.eval_shape(forward, model, spec)
    finally:
        for t, original in originals.items():
            if original is None:
                del t.__call__
            else:
                t.__call__ = original
    return [p for p in order if not any(p.startswith(q + "/") for q in order if q != p)]
