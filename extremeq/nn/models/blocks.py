"""Building blocks of the zoo: activations, BatchNorm/dropout helpers and the Dense, Conv and
residual basic blocks (conventions in ``extremeq.nn.models``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from extremeq.nn.conv import conv_general_dilated


def conv(*args, **kwargs) -> nnx.Conv:
    """``nnx.Conv`` running :func:`extremeq.nn.conv.conv_general_dilated` (XLA's convolution, its
    input materialized on the CPU so that the filter gradient does not recompute it)."""
    return nnx.Conv(*args, conv_general_dilated=conv_general_dilated, **kwargs)


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


def _conv_bn(
    in_features: int,
    out_features: int,
    kernel_size: int,
    *,
    strides: int = 1,
    padding: int | str = "SAME",
    bn_momentum: float,
    bn_epsilon: float,
    rngs: nnx.Rngs,
) -> tuple[nnx.Conv, nnx.BatchNorm]:
    """The zoo's conv -> BatchNorm pair: a bias-free ``kernel_size`` x ``kernel_size`` :func:`conv`
    (BN's beta makes a bias redundant) and the ``nnx.BatchNorm`` of its ``out_features``, built in
    that order (the order their initializers draw from ``rngs``). ``padding``: an int ``p`` pads
    ``((p, p), (p, p))``; a string (``"SAME"``, ``"VALID"``) is passed on. The caller assigns the
    two to its own attributes (``conv``/``bn``, ``stem``/``stem_bn``, ...), which name the
    parameters in checkpoints and exported files."""
    pad = ((padding, padding), (padding, padding)) if isinstance(padding, int) else padding
    kernel = (kernel_size, kernel_size)
    c = conv(in_features, out_features, kernel, strides=strides, padding=pad, use_bias=False, rngs=rngs)
    return c, _batch_norm(out_features, bn_momentum, bn_epsilon, rngs)


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
        raise ValueError(f"{model} needs a per-example input_shape (H, W, C) or (H, W), got {tuple(input_shape)}")
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


class DenseBlock(nnx.Module):
    """dense -> BatchNorm -> activation -> dropout (one hidden layer of BinaryConnect's MLP)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        activation: str,
        dropout: float,
        bn_momentum: float,
        bn_epsilon: float,
        rngs: nnx.Rngs,
    ):
        self.dense = nnx.Linear(in_features, out_features, use_bias=False, rngs=rngs)
        self.bn = _batch_norm(out_features, bn_momentum, bn_epsilon, rngs)
        self.dropout = _dropout(dropout, rngs)
        self.activation = _check_activation(activation)

    def __call__(self, x: jax.Array, *, train: bool | None = None) -> jax.Array:
        x = ACTIVATIONS[self.activation](_bn(self.bn, self.dense(x), train))
        return _drop(self.dropout, x, train)


class ConvBlock(nnx.Module):
    """conv -> [max-pool(pool_window, pool_stride)] -> BatchNorm -> activation."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: int,
        *,
        strides: int = 1,
        padding: int | str = "SAME",
        pool: tuple[int, int] | None = None,
        activation: str,
        bn_momentum: float,
        bn_epsilon: float,
        rngs: nnx.Rngs,
    ):
        self.conv, self.bn = _conv_bn(
            in_features,
            out_features,
            kernel_size,
            strides=strides,
            padding=padding,
            bn_momentum=bn_momentum,
            bn_epsilon=bn_epsilon,
            rngs=rngs,
        )
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

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        strides: int = 1,
        shortcut: str = "A",
        activation: str,
        bn_momentum: float,
        bn_epsilon: float,
        rngs: nnx.Rngs,
    ):
        if shortcut not in ("A", "B"):
            raise ValueError(f"shortcut {shortcut!r} unknown; choose 'A' (zero-pad) or 'B' (1x1 projection)")
        bn = dict(bn_momentum=bn_momentum, bn_epsilon=bn_epsilon, rngs=rngs)
        self.conv1, self.bn1 = _conv_bn(in_features, out_features, 3, strides=strides, padding=1, **bn)
        self.conv2, self.bn2 = _conv_bn(out_features, out_features, 3, padding=1, **bn)
        self.activation = _check_activation(activation)
        self.strides = strides
        shortcut_conv = shortcut_bn = None
        pad_channels = 0
        if strides != 1 or in_features != out_features:
            if shortcut == "B":
                shortcut_conv, shortcut_bn = _conv_bn(
                    in_features, out_features, 1, strides=strides, padding="VALID", **bn
                )
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
