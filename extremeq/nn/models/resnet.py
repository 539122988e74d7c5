"""Residual networks: the CIFAR ResNet-(6n+2) and the ImageNet ResNet-18 (He et al. 2016)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from extremeq.nn.models.blocks import (
    ACTIVATIONS,
    BasicBlock,
    _as_nhwc,
    _bn,
    _check_activation,
    _conv_bn,
)


def _stages(c_in: int, widths, n: int, **block_kwargs) -> tuple[nnx.List, int]:
    """Stages of ``n`` basic blocks with ``widths`` channels, stride 2 at the first block of every
    stage but the first (He et al. 2016); returns the blocks and the last width."""
    blocks = []
    for stage, c_out in enumerate(widths):
        for i in range(n):
            strides = 2 if (stage > 0 and i == 0) else 1
            blocks.append(BasicBlock(c_in, c_out, strides=strides, **block_kwargs))
            c_in = c_out
    return nnx.List(blocks), c_in


class CifarResNet(nnx.Module):
    """CIFAR ResNet-(6n+2) of He et al. 2016, Sec. 4.2: 20, 32, 44, 56 layers for n = 3, 5, 7, 9.

    stem 3x3 conv (16) -> BN -> act; three stages of n basic blocks with 16, 32, 64 channels
    (stride 2 at the first block of stages 2 and 3); global average pool; ``head`` dense.
    Shortcuts are option A (parameter-free zero-padding) by default, as in the paper, which
    gives ResNet-20 its 0.27M parameters; ``shortcut="B"`` uses 1x1 projections instead.
    """

    def __init__(
        self,
        depth: int,
        in_features: int,
        num_classes: int,
        *,
        width: int = 16,
        shortcut: str = "A",
        activation: str = "relu",
        bn_momentum: float = 0.9,
        bn_epsilon: float = 1e-5,
        rngs: nnx.Rngs,
    ):
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, ...), got {depth}")
        n = (depth - 2) // 6
        self.activation = _check_activation(activation)
        self.stem, self.stem_bn = _conv_bn(
            in_features, width, 3, padding=1, bn_momentum=bn_momentum, bn_epsilon=bn_epsilon, rngs=rngs
        )
        self.blocks, c_out = _stages(
            width,
            (width, 2 * width, 4 * width),
            n,
            shortcut=shortcut,
            activation=activation,
            bn_momentum=bn_momentum,
            bn_epsilon=bn_epsilon,
            rngs=rngs,
        )
        self.head = nnx.Linear(c_out, num_classes, rngs=rngs)

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

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        width: int = 64,
        shortcut: str = "B",
        activation: str = "relu",
        bn_momentum: float = 0.9,
        bn_epsilon: float = 1e-5,
        rngs: nnx.Rngs,
    ):
        self.activation = _check_activation(activation)
        self.stem, self.stem_bn = _conv_bn(
            in_features, width, 7, strides=2, padding=3, bn_momentum=bn_momentum, bn_epsilon=bn_epsilon, rngs=rngs
        )
        self.blocks, c_out = _stages(
            width,
            (width, 2 * width, 4 * width, 8 * width),
            2,
            shortcut=shortcut,
            activation=activation,
            bn_momentum=bn_momentum,
            bn_epsilon=bn_epsilon,
            rngs=rngs,
        )
        self.head = nnx.Linear(c_out, num_classes, rngs=rngs)

    def __call__(self, x: jax.Array, *, train: bool | None = None) -> jax.Array:
        x = ACTIVATIONS[self.activation](_bn(self.stem_bn, self.stem(_as_nhwc(x)), train))
        x = nnx.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        for block in self.blocks:
            x = block(x, train=train)
        return self.head(jnp.mean(x, axis=(1, 2)))
