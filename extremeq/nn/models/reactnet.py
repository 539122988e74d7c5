"""Bi-Real Net and ReActNet building blocks: per-conv real-valued shortcuts, RSign, RPReLU.

* **Bi-Real Net** (Liu et al., ECCV 2018, "Bi-Real Net: Enhancing the Performance of 1-bit CNNs
  with Improved Representational Capability and Advanced Training Algorithm"): every binary
  convolution gets its own real-valued identity shortcut, so the real activations flow past
  each sign instead of past every second conv:

      y = BN(BinConv(sign(x))) + x

  A block that halves the resolution or doubles the channels takes its shortcut through
  AvgPool(2x2, stride 2) -> real 1x1 conv -> BN (``downsample``, ``downsample_bn``).
* **ReActNet** (Liu et al., ECCV 2020, "ReActNet: Towards Precise Binary Neural Network with
  Generalized Activation Functions") adds learnable shifts around the two non-linearities,
  per channel c:

      RSign:   x_b = sign(x_c - alpha_c)                     (learnable threshold alpha_c)
      RPReLU:  f(x_c) = x_c - gamma_c + zeta_c               if x_c > gamma_c
                        beta_c (x_c - gamma_c) + zeta_c      otherwise

  so a unit is ``RPReLU(BN(BinConv(RSign(x))) + x)``.

The convolutions are plain ``nnx.Conv`` like everywhere in the zoo: the precision policy
(``quantize_model``) makes them binary, and the sign of their *inputs* is the policy's input
quantizer (``"sign"``/``"xnor"``, with its estimator, e.g. Bi-Real's ``approx_sign``). The blocks
therefore apply only the RSign *shift* ``x - alpha`` before each conv (:meth:`RSign.shift`);
the quantized conv's input quantizer supplies the sign, so ``sign(x - alpha)`` is formed once
and the threshold gets the estimator's gradient ``-g * sign'(x - alpha)``. :func:`rsign` is the
stand-alone form of the same thing. Left unquantized (method ``fp``), the architecture is a
real-valued network with the same shortcuts.

Keep ``stem``, ``head`` and the ``downsample`` 1x1 convs real-valued, as both papers do.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from extremeq.nn.models.blocks import (
    ACTIVATIONS,
    _as_nhwc,
    _bn,
    _check_activation,
    _conv_bn,
)
from extremeq.ste import get_estimator

BLOCKS = ("bireal", "reactnet")


def rsign(x, threshold, estimator="approx_sign", **estimator_kwargs):
    """ReActNet's RSign: ``sign(x - threshold)`` (threshold per channel, last axis); backward
    through the straight-through ``estimator`` at ``x - threshold``, so
    d/d threshold = -g * estimator.grad(x - threshold)."""
    return get_estimator(estimator, **estimator_kwargs)(x - threshold)


def rprelu(x, gamma, beta, zeta):
    """ReActNet's RPReLU: ``PReLU_beta(x - gamma) + zeta`` per channel (last axis)."""
    z = x - gamma
    return jnp.where(z > 0, z, beta * z) + zeta


class RSign(nnx.Module):
    """Learnable per-channel threshold before a sign (ReActNet). ``threshold`` starts at 0."""

    def __init__(self, num_features: int, *, estimator: str = "approx_sign"):
        self.threshold = nnx.Param(jnp.zeros((num_features,), jnp.float32))
        self.estimator = estimator

    def shift(self, x: jax.Array) -> jax.Array:
        """``x - threshold``: what a binarizing conv's input quantizer then takes the sign of."""
        return x - self.threshold[...]

    def __call__(self, x: jax.Array) -> jax.Array:
        return rsign(x, self.threshold[...], self.estimator)


class RPReLU(nnx.Module):
    """ReActNet's RPReLU with per-channel ``gamma`` (shift in, 0), ``beta`` (slope, 0.25, the
    PReLU default) and ``zeta`` (shift out, 0)."""

    def __init__(self, num_features: int, *, slope: float = 0.25):
        self.gamma = nnx.Param(jnp.zeros((num_features,), jnp.float32))
        self.beta = nnx.Param(jnp.full((num_features,), slope, jnp.float32))
        self.zeta = nnx.Param(jnp.zeros((num_features,), jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        return rprelu(x, self.gamma[...], self.beta[...], self.zeta[...])


class BiRealUnit(nnx.Module):
    """One binary conv with its own real shortcut: ``[RPReLU](BN(conv([RSign shift](x))) + s(x))``.

    ``s`` is the identity, or AvgPool(2) -> 1x1 conv -> BN when the unit strides or changes
    the channel count (Bi-Real Net's downsampling shortcut).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        strides: int = 1,
        block: str = "bireal",
        bn_momentum: float = 0.9,
        bn_epsilon: float = 1e-5,
        rngs: nnx.Rngs,
    ):
        if block not in BLOCKS:
            raise ValueError(f"block {block!r} unknown; choose one of {', '.join(BLOCKS)}")
        if strides not in (1, 2):
            raise ValueError(f"strides must be 1 or 2, got {strides}")
        react = block == "reactnet"
        self.rsign = RSign(in_features) if react else None
        bn = dict(bn_momentum=bn_momentum, bn_epsilon=bn_epsilon, rngs=rngs)
        self.conv, self.bn = _conv_bn(in_features, out_features, 3, strides=strides, padding=1, **bn)
        self.rprelu = RPReLU(out_features) if react else None
        self.strides = strides
        reshape = strides != 1 or in_features != out_features
        self.downsample, self.downsample_bn = (
            _conv_bn(in_features, out_features, 1, padding="VALID", **bn) if reshape else (None, None)
        )

    def _shortcut(self, x: jax.Array, train: bool | None) -> jax.Array:
        if self.downsample is None:
            return x
        if self.strides == 2:
            x = nnx.avg_pool(x, (2, 2), strides=(2, 2), padding="VALID")
        return _bn(self.downsample_bn, self.downsample(x), train)

    def __call__(self, x: jax.Array, *, train: bool | None = None) -> jax.Array:
        z = self.rsign.shift(x) if self.rsign is not None else x
        y = _bn(self.bn, self.conv(z), train) + self._shortcut(x, train)
        return self.rprelu(y) if self.rprelu is not None else y


class BiRealBlock(nnx.Module):
    """A basic block of two :class:`BiRealUnit` (``unit1`` strides/changes channels, ``unit2``
    keeps them): each of the two binary convs has its own shortcut."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        strides: int = 1,
        block: str = "bireal",
        bn_momentum: float = 0.9,
        bn_epsilon: float = 1e-5,
        rngs: nnx.Rngs,
    ):
        kw = {"block": block, "bn_momentum": bn_momentum, "bn_epsilon": bn_epsilon, "rngs": rngs}
        self.unit1 = BiRealUnit(in_features, out_features, strides=strides, **kw)
        self.unit2 = BiRealUnit(out_features, out_features, **kw)

    def __call__(self, x: jax.Array, *, train: bool | None = None) -> jax.Array:
        return self.unit2(self.unit1(x, train=train), train=train)


def _stage_plan(depth: int, width: int):
    """(channels, blocks) per stage: CIFAR ResNet-(6n+2) (3 stages, width 2^s w) or ResNet-18
    (4 stages of 2 blocks, 64-128-256-512 for width 64)."""
    if depth == 18:
        return [(width * 2**s, 2) for s in range(4)]
    if depth >= 8 and (depth - 2) % 6 == 0:
        return [(width * 2**s, (depth - 2) // 6) for s in range(3)]
    raise ValueError(f"depth must be 18 or 6n+2 (20, 32, 44, 56), got {depth}")


class BiRealResNet(nnx.Module):
    """CIFAR ResNet with Bi-Real (``block="bireal"``) or ReActNet (``"reactnet"``) units.

    ``depth`` 20/32/44/56: He et al.'s CIFAR plan (3 stages, ``width``-2w-4w, 16-32-64 for the
    default 16) with every conv in a :class:`BiRealUnit`; ``depth`` 18: ResNet-18's 4 stages
    (w-2w-4w-8w; the zoo builds it with width 64, i.e. 64-128-256-512) with the CIFAR stem (3x3 conv, stride 1, no max-pool), as Bi-Real/ReActNet-style
    CIFAR experiments use. stem conv -> BN; blocks; global average pool; ``head``. The stem
    has no ReLU: the next conv takes the sign of its output (sign(relu(x)) would be +1).
    ``activation`` (default ``"identity"``, both papers) is applied after every block.
    """

    def __init__(
        self,
        depth: int,
        in_features: int,
        num_classes: int,
        *,
        width: int = 16,
        block: str = "bireal",
        activation: str = "identity",
        bn_momentum: float = 0.9,
        bn_epsilon: float = 1e-5,
        rngs: nnx.Rngs,
    ):
        width = int(width)
        if width < 1:
            raise ValueError(f"width must be a positive channel count, got {width}")
        plan = _stage_plan(depth, width)
        self.activation = _check_activation(activation)
        self.stem, self.stem_bn = _conv_bn(
            in_features, width, 3, padding=1, bn_momentum=bn_momentum, bn_epsilon=bn_epsilon, rngs=rngs
        )
        blocks, c_in = [], width
        for stage, (c_out, n) in enumerate(plan):
            for i in range(n):
                blocks.append(
                    BiRealBlock(
                        c_in,
                        c_out,
                        strides=2 if (stage > 0 and i == 0) else 1,
                        block=block,
                        bn_momentum=bn_momentum,
                        bn_epsilon=bn_epsilon,
                        rngs=rngs,
                    )
                )
                c_in = c_out
        self.blocks = nnx.List(blocks)
        self.head = nnx.Linear(c_in, num_classes, rngs=rngs)

    def __call__(self, x: jax.Array, *, train: bool | None = None) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        x = _bn(self.stem_bn, self.stem(_as_nhwc(x)), train)
        for b in self.blocks:
            x = act(b(x, train=train))
        return self.head(jnp.mean(x, axis=(1, 2)))


#: Layers both papers keep real-valued (regexes over layer paths, for the precision policy).
REAL_VALUED_LAYERS = ("stem", "head", r".*/downsample")
