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

Inputs are NHWC float arrays; an NHW batch (e.g. MNIST) gets a channel axis appended. The MLP
flattens whatever it gets (permutation-invariant setting).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = [
    "MLP",
    "LeNet5",
    "VGG7",
    "CifarResNet",
    "ResNet18",
    "AlexNet",
    "BasicBlock",
    "ConvBlock",
    "DenseBlock",
    "MODEL_NAMES",
    "build_model",
    "layer_order",
    "hard_tanh",
]


# --------------------------------------------------------------------------------------------
# Activations and small helpers
# --------------------------------------------------------------------------------------------


def hard_tanh(x: jax.Array) -> jax.Array:
    """htanh(x) = clip(x, -1, 1) (Courbariaux, Hubara et al. 2016, BinaryNet)."""
    return jnp.clip(x, -1.0, 1.0)


def _identity(x: jax.Array) -> jax.Array:
    return x


ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nnx.relu,
    "hardtanh": hard_tanh,
    "identity": _identity,
}


def _check_activation(name: str) -> str:
    if name not in ACTIVATIONS:
        raise ValueError(
            f"activation {name!r} unknown; choose one of {sorted(ACTIVATIONS)} "
            "(use 'hardtanh' or 'identity' when the next layer binarizes its inputs)"
        )
    return name


def _batch_norm(num_features: int, momentum: float, epsilon: float, rngs: nnx.Rngs) -> nnx.BatchNorm:
    return nnx.BatchNorm(num_features, momentum=momentum, epsilon=epsilon, rngs=rngs)


def _bn(bn: nnx.BatchNorm, x: jax.Array, train: bool | None) -> jax.Array:
    return bn(x, use_running_average=None if train is None else not train)


def _drop(drop: nnx.Dropout | None, x: jax.Array, train: bool | None) -> jax.Array:
    if drop is None:
        return x
    return drop(x, deterministic=None if train is None else not train)


def _dropout(rate: float, rngs: nnx.Rngs) -> nnx.Dropout | None:
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout rate must be in [0, 1), got {rate}")
    return nnx.Dropout(rate, rngs=rngs) if rate > 0 else None


def _max_pool(x: jax.Array, window: int, stride: int) -> jax.Array:
    return nnx.max_pool(x, (window, window), strides=(stride, stride), padding="VALID")


def _as_nhwc(x: jax.Array) -> jax.Array:
    if x.ndim == 3:
        return x[..., None]
    if x.ndim != 4:
        raise ValueError(f"expected an NHWC (or NHW) batch, got shape {x.shape}")
    return x


def _image_shape(input_shape: Sequence[int], model: str) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 2:
        shape = shape + (1,)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(
            f"{model} needs a per-example input_shape (H, W, C) or (H, W), got {tuple(input_shape)}"
        )
    return shape  # type: ignore[return-value]


def _conv_out(size: int, kernel: int, stride: int, pad: int) -> int:
    """Spatial size after a convolution/pooling: floor((size + 2*pad - kernel) / stride) + 1."""
    out = (size + 2 * pad - kernel) // stride + 1
    if out < 1:
        raise ValueError(
            f"input of spatial size {size} is too small for a {kernel}x{kernel} window "
            f"(stride {stride}, padding {pad}); use a larger input_shape"
        )
    return out


# --------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------


class DenseBlock(nnx.Module):
    """dense -> BatchNorm -> activation -> dropout (one hidden layer of BinaryConnect's MLP)."""

    def __init__(self, in_features: int, out_features: int, *, activation: str, dropout: float,
                 bn_momentum: float, bn_epsilon: float, rngs: nnx.Rngs):
        self.dense = nnx.Linear(in_features, out_features, use_bias=False, rngs=rngs)
        self.bn = _batch_norm(out_features, bn_momentum, bn_epsilon, rngs)
        self.dropout = _dropout(dropout, rngs)
        self.activation = _check_activation(activation)

    def __call__(self, x: jax.Array, *, train: bool | None = None) -> jax.Array:
        x = ACTIVATIONS[self.activation](_bn(self.bn, self.dense(x), train))
        return _drop(self.dropout, x, train)


class ConvBlock(nnx.Module):
    """conv -> [max-pool(pool_window, pool_stride)] -> BatchNorm -> activation."""

    def __init__(self, in_features: int, out_features: int, kernel_size: int, *, strides: int = 1,
                 padding: int | str = "SAME", pool: tuple[int, int] | None = None, activation: str,
                 bn_momentum: float, bn_epsilon: float, rngs: nnx.Rngs):
        pad = ((padding, padding), (padding, padding)) if isinstance(padding, int) else padding
        self.conv = nnx.Conv(in_features, out_features, (kernel_size, kernel_size), strides=strides,
                             padding=pad, use_bias=False, rngs=rngs)
        self.bn = _batch_norm(out_features, bn_momentum, bn_epsilon, rngs)
        self.pool = pool
        self.activation = _check_activation(activation)

    def __call__(self, x: jax.Array, *, train: bool | None = None) -> jax.Array:
        x = self.conv(x)
        if self.pool is not None:
            x = _max_pool(x, *self.pool)
        return ACTIVATIONS[self.activation](_bn(self.bn, x, train))


class BasicBlock(nnx.Module):
    """Residual basic block (He et al. 2016): act(BN(conv2(act(BN(conv1(x))))) + shortcut(x)).

    ``shortcut`` decides what happens when the block changes shape (stride 2 or more channels):
    ``"A"``: parameter-free, x[:, ::s, ::s, :] zero-padded on the channel axis ((out - in) / 2
    zero channels on each side); used by He et al. for the CIFAR ResNets (their "option A").
    ``"B"``: projection, BN(conv1x1_stride_s(x)) (``shortcut_conv``, ``shortcut_bn``); used by
    the ImageNet ResNets and by TWN/TTQ's "ResNet-18B". Shape-preserving blocks use identity.
    """

    def __init__(self, in_features: int, out_features: int, *, strides: int = 1, shortcut: str = "A",
                 activation: str, bn_momentum: float, bn_epsilon: float, rngs: nnx.Rngs):
        if shortcut not in ("A", "B"):
            raise ValueError(f"shortcut {shortcut!r} unknown; choose 'A' (zero-pad) or 'B' (1x1 projection)")
        self.conv1 = nnx.Conv(in_features, out_features, (3, 3), strides=strides, padding=((1, 1), (1, 1)),
                              use_bias=False, rngs=rngs)
        self.bn1 = _batch_norm(out_features, bn_momentum, bn_epsilon, rngs)
        self.conv2 = nnx.Conv(out_features, out_features, (3, 3), padding=((1, 1), (1, 1)),
                              use_bias=False, rngs=rngs)
        self.bn2 = _batch_norm(out_features, bn_momentum, bn_epsilon, rngs)
        self.activation = _check_activation(activation)
        self.strides = strides
        shortcut_conv = shortcut_bn = None
        pad_channels = 0
        if strides != 1 or in_features != out_features:
            if shortcut == "B":
                shortcut_conv = nnx.Conv(in_features, out_features, (1, 1), strides=strides,
                                         padding="VALID", use_bias=False, rngs=rngs)
                shortcut_bn = _batch_norm(out_features, bn_momentum, bn_epsilon, rngs)
            else:
                if out_features < in_features or (out_features - in_features) % 2:
                    raise ValueError(
                        f"option-A shortcut needs out_features - in_features even and >= 0, got "
                        f"{in_features} -> {out_features}; use shortcut='B'"
                    )
                pad_channels = (out_features - in_features) // 2
        # Assigned once: NNX fixes an attribute as data or static on its first assignment.
        self.shortcut_conv = shortcut_conv
        self.shortcut_bn = shortcut_bn
        self.pad_channels = pad_channels

    def _shortcut(self, x: jax.Array, train: bool | None) -> jax.Array:
        if self.shortcut_conv is not None:
            return _bn(self.shortcut_bn, self.shortcut_conv(x), train)
        if self.strides != 1:
            x = x[:, :: self.strides, :: self.strides, :]
        if self.pad_channels:
            p = self.pad_channels
            x = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (p, p)))
        return x

    def __call__(self, x: jax.Array, *, train: bool | None = None) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        y = act(_bn(self.bn1, self.conv1(x), train))
        y = _bn(self.bn2, self.conv2(y), train)
        return act(y + self._shortcut(x, train))


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


class MLP(nnx.Module):
    """Permutation-invariant MLP of BinaryConnect (Courbariaux et al. 2015: 3x1024) and BinaryNet
    (Hubara et al. 2016: 3x4096).

    x -> flatten -> [dropout(input_dropout)] -> stem -> BN -> act -> [dropout]
      -> blocks[i] (dense -> BN -> act -> [dropout]) ... -> head -> [BN if head_bn].
    ``hidden`` lists the hidden widths; ``head_bn=True`` puts BatchNorm on the output layer as
    both papers' Theano code does (their L2-SVM output layer).
    """

    def __init__(self, in_features: int, num_classes: int, hidden: Sequence[int] = (1024, 1024, 1024), *,
                 activation: str = "relu", dropout: float = 0.0, input_dropout: float = 0.0,
                 head_bn: bool = False, bn_momentum: float = 0.9, bn_epsilon: float = 1e-5,
                 rngs: nnx.Rngs):
        hidden = [int(h) for h in hidden]
        if not hidden or min(hidden) < 1:
            raise ValueError(f"MLP needs at least one positive hidden width, got hidden={hidden}")
        self.activation = _check_activation(activation)
        self.input_dropout = _dropout(input_dropout, rngs)
        self.stem = nnx.Linear(in_features, hidden[0], use_bias=False, rngs=rngs)
        self.stem_bn = _batch_norm(hidden[0], bn_momentum, bn_epsilon, rngs)
        self.dropout = _dropout(dropout, rngs)
        self.blocks = nnx.List([
            DenseBlock(hidden[i], hidden[i + 1], activation=activation, dropout=dropout,
                       bn_momentum=bn_momentum, bn_epsilon=bn_epsilon, rngs=rngs)
            for i in range(len(hidden) - 1)
        ])
        self.head = nnx.Linear(hidden[-1], num_classes, use_bias=not head_bn, rngs=rngs)
        self.head_bn = _batch_norm(num_classes, bn_momentum, bn_epsilon, rngs) if head_bn else None

    def __call__(self, x: jax.Array, *, train: bool | None = None) -> jax.Array:
        x = x.reshape(x.shape[0], -1)
        x = _drop(self.input_dropout, x, train)
        x = ACTIVATIONS[self.activation](_bn(self.stem_bn, self.stem(x), train))
        x = _drop(self.dropout, x, train)
        for block in self.blocks:
            x = block(x, train=train)
        x = self.head(x)
        if self.head_bn is not None:
            x = _bn(self.head_bn, x, train)
        return x


class LeNet5(nnx.Module):
    """LeNet-5 of the TWN paper (Li et al. 2016): 32C5-MP2-64C5-MP2-512FC-classifier.

    Convolutions are unpadded (Caffe LeNet), so a 28x28 input gives 24 -> 12 -> 8 -> 4 and a
    4*4*64 = 1024-wide flatten. Every weight layer but ``head`` is followed by BatchNorm.
    """

    def __init__(self, in_features: int, num_classes: int, *, input_size: tuple[int, int] = (28, 28),
                 activation: str = "relu", dropout: float = 0.0, bn_momentum: float = 0.9,
                 bn_epsilon: float = 1e-5, rngs: nnx.Rngs):
        self.activation = _check_activation(activation)
        common = dict(activation=activation, bn_momentum=bn_momentum, bn_epsilon=bn_epsilon, rngs=rngs)
        self.stem = nnx.Conv(in_features, 32, (5, 5), padding="VALID", use_bias=False, rngs=rngs)
        self.stem_bn = _batch_norm(32, bn_momentum, bn_epsilon, rngs)
        self.blocks = nnx.List([ConvBlock(32, 64, 5, padding="VALID", pool=(2, 2), **common)])
        h, w = input_size
        for _ in range(2):  # conv5 (valid) then max-pool 2
            h, w = _conv_out(_conv_out(h, 5, 1, 0), 2, 2, 0), _conv_out(_conv_out(w, 5, 1, 0), 2, 2, 0)
        self.fc = nnx.Linear(h * w * 64, 512, use_bias=False, rngs=rngs)
        self.fc_bn = _batch_norm(512, bn_momentum, bn_epsilon, rngs)
        self.dropout = _dropout(dropout, rngs)
        self.head = nnx.Linear(512, num_classes, rngs=rngs)

    def __call__(self, x: jax.Array, *, train: bool | None = None) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        x = _max_pool(self.stem(_as_nhwc(x)), 2, 2)
        x = act(_bn(self.stem_bn, x, train))
        for block in self.blocks:
            x = block(x, train=train)
        x = x.reshape(x.shape[0], -1)
        x = act(_bn(self.fc_bn, self.fc(x), train))
        return self.head(_drop(self.dropout, x, train))


class VGG7(nnx.Module):
    """VGG-7 of the TWN paper: 2x(128C3)-MP2-2x(256C3)-MP2-2x(512C3)-MP2-1024FC-classifier.

    3x3 SAME convolutions, BatchNorm after every weight layer but ``head``; ``width`` scales the
    128/256/512 channel plan (width=128 is the paper's). 32x32 inputs give a 4*4*512 flatten.
    """

    def __init__(self, in_features: int, num_classes: int, *, input_size: tuple[int, int] = (32, 32),
                 width: int = 128, fc_features: int = 1024, activation: str = "relu", dropout: float = 0.0,
                 bn_momentum: float = 0.9, bn_epsilon: float = 1e-5, rngs: nnx.Rngs):
        self.activation = _check_activation(activation)
        c1, c2, c3 = width, 2 * width, 4 * width
        common = dict(activation=activation, bn_momentum=bn_momentum, bn_epsilon=bn_epsilon, rngs=rngs)
        self.stem = nnx.Conv(in_features, c1, (3, 3), padding=((1, 1), (1, 1)), use_bias=False, rngs=rngs)
        self.stem_bn = _batch_norm(c1, bn_momentum, bn_epsilon, rngs)
        self.blocks = nnx.List([
            ConvBlock(c1, c1, 3, padding=1, pool=(2, 2), **common),
            ConvBlock(c1, c2, 3, padding=1, **common),
            ConvBlock(c2, c2, 3, padding=1, pool=(2, 2), **common),
            ConvBlock(c2, c3, 3, padding=1, **common),
            ConvBlock(c3, c3, 3, padding=1, pool=(2, 2), **common),
        ])
        h, w = input_size
        for _ in range(3):
            h, w = _conv_out(h, 2, 2, 0), _conv_out(w, 2, 2, 0)
        self.fc = nnx.Linear(h * w * c3, fc_features, use_bias=False, rngs=rngs)
        self.fc_bn = _batch_norm(fc_features, bn_momentum, bn_epsilon, rngs)
        self.dropout = _dropout(dropout, rngs)
        self.head = nnx.Linear(fc_features, num_classes, rngs=rngs)

    def __call__(self, x: jax.Array, *, train: bool | None = None) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        x = act(_bn(self.stem_bn, self.stem(_as_nhwc(x)), train))
        for block in self.blocks:
            x = block(x, train=train)
        x = x.reshape(x.shape[0], -1)
        x = act(_bn(self.fc_bn, self.fc(x), train))
        return self.head(_drop(self.dropout, x, train))


class CifarResNet(nnx.Module):
    """CIFAR ResNet-(6n+2) of He et al. 2016, Sec. 4.2: 20, 32, 44, 56 layers for n = 3, 5, 7, 9.

    stem 3x3 conv (16) -> BN -> act; three stages of n basic blocks with 16, 32, 64 channels
    (stride 2 at the first block of stages 2 and 3); global average pool; ``head`` dense.
    Shortcuts are option A (parameter-free zero-padding) by default, as in the paper, which
    gives ResNet-20 its 0.27M parameters; ``shortcut="B"`` uses 1x1 projections instead.
    """

    def __init__(self, depth: int, in_features: int, num_classes: int, *, width: int = 16,
                 shortcut: str = "A", activation: str = "relu", bn_momentum: float = 0.9,
                 bn_epsilon: float = 1e-5, rngs: nnx.Rngs):
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, ...), got {depth}")
        n = (depth - 2) // 6
        self.activation = _check_activation(activation)
        self.stem = nnx.Conv(in_features, width, (3, 3), padding=((1, 1), (1, 1)), use_bias=False, rngs=rngs)
        self.stem_bn = _batch_norm(width, bn_momentum, bn_epsilon, rngs)
        blocks = []
        c_in = width
        for stage, c_out in enumerate((width, 2 * width, 4 * width)):
            for i in range(n):
                strides = 2 if (stage > 0 and i == 0) else 1
                blocks.append(BasicBlock(c_in, c_out, strides=strides, shortcut=shortcut, activation=activation,
                                         bn_momentum=bn_momentum, bn_epsilon=bn_epsilon, rngs=rngs))
                c_in = c_out
        self.blocks = nnx.List(blocks)
        self.head = nnx.Linear(c_in, num_classes, rngs=rngs)

    def __call__(self, x: jax.Array, *, train: bool | None = None) -> jax.Array:
        x = ACTIVATIONS[self.activation](_bn(self.stem_bn, self.stem(_as_nhwc(x)), train))
        for block in self.blocks:
            x = block(x, train=train)
        return self.head(jnp.mean(x, axis=(1, 2)))


class ResNet18(nnx.Module):
    """ImageNet ResNet-18 (He et al. 2016, Table 1), projection ("B") shortcuts.

    stem 7x7/2 conv (64) -> BN -> act -> 3x3/2 max-pool; stages of 2 basic blocks with 64, 128,
    256, 512 channels (stride 2 at the first block of stages 2-4); global average pool; ``head``.
    11,689,512 parameters for 1000 classes (BN scale and bias included, running stats not).
    This is TWN/TTQ's "ResNet-18B".
    """

    def __init__(self, in_features: int, num_classes: int, *, width: int = 64, shortcut: str = "B",
                 activation: str = "relu", bn_momentum: float = 0.9, bn_epsilon: float = 1e-5,
                 rngs: nnx.Rngs):
        self.activation = _check_activation(activation)
        self.stem = nnx.Conv(in_features, width, (7, 7), strides=2, padding=((3, 3), (3, 3)), use_bias=False,
                             rngs=rngs)
        self.stem_bn = _batch_norm(width, bn_momentum, bn_epsilon, rngs)
        blocks = []
        c_in = width
        for stage, c_out in enumerate((width, 2 * width, 4 * width, 8 * width)):
            for i in range(2):
                strides = 2 if (stage > 0 and i == 0) else 1
                blocks.append(BasicBlock(c_in, c_out, strides=strides, shortcut=shortcut, activation=activation,
                                         bn_momentum=bn_momentum, bn_epsilon=bn_epsilon, rngs=rngs))
                c_in = c_out
        self.blocks = nnx.List(blocks)
        self.head = nnx.Linear(c_in, num_classes, rngs=rngs)

    def __call__(self, x: jax.Array, *, train: bool | None = None) -> jax.Array:
        x = ACTIVATIONS[self.activation](_bn(self.stem_bn, self.stem(_as_nhwc(x)), train))
        x = nnx.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        for block in self.blocks:
            x = block(x, train=train)
        return self.head(jnp.mean(x, axis=(1, 2)))


class AlexNet(nnx.Module):
    """AlexNet with BatchNorm, as trained in XNOR-Net / BWN (Rastegari et al. 2016).

    Krizhevsky et al. 2012 single-tower channel plan: 96C11/4(pad 2)-MP3/2-256C5-MP3/2-384C3-
    384C3-256C3-MP3/2-4096FC-4096FC-classifier, BatchNorm after every weight layer but ``head``,
    dropout before the last two dense layers. A 224x224 input gives 55 -> 27 -> 13 -> 6, i.e. a
    6*6*256 = 9216-wide flatten.
    """

    def __init__(self, in_features: int, num_classes: int, *, input_size: tuple[int, int] = (224, 224),
                 fc_features: int = 4096, activation: str = "relu", dropout: float = 0.5,
                 bn_momentum: float = 0.9, bn_epsilon: float = 1e-5, rngs: nnx.Rngs):
        self.activation = _check_activation(activation)
        common = dict(activation=activation, bn_momentum=bn_momentum, bn_epsilon=bn_epsilon, rngs=rngs)
        self.stem = nnx.Conv(in_features, 96, (11, 11), strides=4, padding=((2, 2), (2, 2)), use_bias=False,
                             rngs=rngs)
        self.stem_bn = _batch_norm(96, bn_momentum, bn_epsilon, rngs)
        self.blocks = nnx.List([
            ConvBlock(96, 256, 5, padding=2, pool=(3, 2), **common),
            ConvBlock(256, 384, 3, padding=1, **common),
            ConvBlock(384, 384, 3, padding=1, **common),
            ConvBlock(384, 256, 3, padding=1, pool=(3, 2), **common),
        ])
        h, w = input_size
        h, w = _conv_out(h, 11, 4, 2), _conv_out(w, 11, 4, 2)
        for _ in range(3):
            h, w = _conv_out(h, 3, 2, 0), _conv_out(w, 3, 2, 0)
        self.dropout = _dropout(dropout, rngs)
        self.fc6 = nnx.Linear(h * w * 256, fc_features, use_bias=False, rngs=rngs)
        self.fc6_bn = _batch_norm(fc_features, bn_momentum, bn_epsilon, rngs)
        self.fc7 = nnx.Linear(fc_features, fc_features, use_bias=False, rngs=rngs)
        self.fc7_bn = _batch_norm(fc_features, bn_momentum, bn_epsilon, rngs)
        self.head = nnx.Linear(fc_features, num_classes, rngs=rngs)

    def __call__(self, x: jax.Array, *, train: bool | None = None) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        x = _max_pool(self.stem(_as_nhwc(x)), 3, 2)
        x = act(_bn(self.stem_bn, x, train))
        for block in self.blocks:
            x = block(x, train=train)
        x = x.reshape(x.shape[0], -1)
        x = act(_bn(self.fc6_bn, self.fc6(_drop(self.dropout, x, train)), train))
        x = act(_bn(self.fc7_bn, self.fc7(_drop(self.dropout, x, train)), train))
        return self.head(x)


# --------------------------------------------------------------------------------------------
# Factory
# --------------------------------------------------------------------------------------------


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
}

MODEL_NAMES: tuple[str, ...] = tuple(_BUILDERS)

# The zoo's network classes: the builders a model file's recipe may name (extremeq.export.register_factory).
ZOO_CLASSES: tuple[type, ...] = (MLP, LeNet5, VGG7, CifarResNet, ResNet18, AlexNet)


def build_model(model_config, num_classes: int, input_shape: Sequence[int], rngs: nnx.Rngs | int) -> nnx.Module:
    """Builds a zoo model from ``config.model`` (a ConfigDict or mapping: ``name`` plus keyword
    arguments of the model class, e.g. ``hidden``, ``dropout``, ``activation``, ``shortcut``).

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
    cls, fixed, kw = _BUILDERS[name](kwargs, num_classes, tuple(input_shape), rngs)
    params = inspect.signature(cls.__init__).parameters
    allowed = sorted(k for k, p in params.items() if k != "self" and k not in fixed
                     and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))
    unknown = sorted(set(kw) - set(allowed))
    if unknown:
        raise ValueError(f"model {name!r} got unknown option(s) {unknown}; it accepts {allowed}")
    return cls(**fixed, **kw)


# --------------------------------------------------------------------------------------------
# Forward order of the weight layers
# --------------------------------------------------------------------------------------------


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
