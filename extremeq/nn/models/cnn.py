"""Plain convolutional networks: LeNet-5 and VGG-7 (TWN), AlexNet (XNOR-Net / BWN)."""

from __future__ import annotations

import jax
from flax import nnx

from extremeq.nn.models.blocks import (
    ACTIVATIONS,
    ConvBlock,
    _as_nhwc,
    _batch_norm,
    _bn,
    _check_activation,
    _conv_bn,
    _conv_out,
    _drop,
    _dropout,
    _max_pool,
)


class LeNet5(nnx.Module):
    """LeNet-5 of the TWN paper (Li et al. 2016): 32C5-MP2-64C5-MP2-512FC-classifier.

    Convolutions are unpadded (Caffe LeNet), so a 28x28 input gives 24 -> 12 -> 8 -> 4 and a
    4*4*64 = 1024-wide flatten. Every weight layer but ``head`` is followed by BatchNorm.
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        input_size: tuple[int, int] = (28, 28),
        activation: str = "relu",
        dropout: float = 0.0,
        bn_momentum: float = 0.9,
        bn_epsilon: float = 1e-5,
        rngs: nnx.Rngs,
    ):
        self.activation = _check_activation(activation)
        bn = dict(bn_momentum=bn_momentum, bn_epsilon=bn_epsilon, rngs=rngs)
        common = dict(activation=activation, **bn)
        self.stem, self.stem_bn = _conv_bn(in_features, 32, 5, padding="VALID", **bn)
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

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        input_size: tuple[int, int] = (32, 32),
        width: int = 128,
        fc_features: int = 1024,
        activation: str = "relu",
        dropout: float = 0.0,
        bn_momentum: float = 0.9,
        bn_epsilon: float = 1e-5,
        rngs: nnx.Rngs,
    ):
        self.activation = _check_activation(activation)
        c1, c2, c3 = width, 2 * width, 4 * width
        bn = dict(bn_momentum=bn_momentum, bn_epsilon=bn_epsilon, rngs=rngs)
        common = dict(activation=activation, **bn)
        self.stem, self.stem_bn = _conv_bn(in_features, c1, 3, padding=1, **bn)
        self.blocks = nnx.List(
            [
                ConvBlock(c1, c1, 3, padding=1, pool=(2, 2), **common),
                ConvBlock(c1, c2, 3, padding=1, **common),
                ConvBlock(c2, c2, 3, padding=1, pool=(2, 2), **common),
                ConvBlock(c2, c3, 3, padding=1, **common),
                ConvBlock(c3, c3, 3, padding=1, pool=(2, 2), **common),
            ]
        )
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


class AlexNet(nnx.Module):
    """AlexNet with BatchNorm, as trained in XNOR-Net / BWN (Rastegari et al. 2016).

    Krizhevsky et al. 2012 single-tower channel plan: 96C11/4(pad 2)-MP3/2-256C5-MP3/2-384C3-
    384C3-256C3-MP3/2-4096FC-4096FC-classifier, BatchNorm after every weight layer but ``head``,
    dropout before the last two dense layers. A 224x224 input gives 55 -> 27 -> 13 -> 6, i.e. a
    6*6*256 = 9216-wide flatten.
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        input_size: tuple[int, int] = (224, 224),
        fc_features: int = 4096,
        activation: str = "relu",
        dropout: float = 0.5,
        bn_momentum: float = 0.9,
        bn_epsilon: float = 1e-5,
        rngs: nnx.Rngs,
    ):
        self.activation = _check_activation(activation)
        bn = dict(bn_momentum=bn_momentum, bn_epsilon=bn_epsilon, rngs=rngs)
        common = dict(activation=activation, **bn)
        self.stem, self.stem_bn = _conv_bn(in_features, 96, 11, strides=4, padding=2, **bn)
        self.blocks = nnx.List(
            [
                ConvBlock(96, 256, 5, padding=2, pool=(3, 2), **common),
                ConvBlock(256, 384, 3, padding=1, **common),
                ConvBlock(384, 384, 3, padding=1, **common),
                ConvBlock(384, 256, 3, padding=1, pool=(3, 2), **common),
            ]
        )
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
