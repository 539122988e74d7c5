"""Packed inference layers: PackedLinear and PackedConv, the twins of QuantLinear / QuantConv.

Each holds its packed weights as NNX variables named as in the file (the ``FIELDS`` of its packed
kind: ``w``, ``alpha``, TTQ's ``ttq_wp``/``ttq_wn``; and ``bias``) and rebuilds the typed
:class:`~extremeq.inference.weights.PackedWeights` from them on each call. The forward is the training layer's,

    y = (Q_in(x) (*) W_q) * K + b,

with Q_in and K from the same input quantizer (:func:`extremeq.nn.layers.quantize_input`) and the
product computed by ``extremeq.kernels``: binary weights with binary inputs run XNOR-popcount
(exact in integers); everything else the packed-weight matmul / convolution, whose
``backend="auto"`` chooses the path per platform. Binary-input convolutions pad with the layer's
``pad_value`` (+1 = sign(0) or 0), as ``QuantConv`` does.
"""

from __future__ import annotations

from typing import Mapping

import jax.numpy as jnp
from flax import nnx
from jax import lax

from extremeq.inference.weights import BinaryWeights, PackedWeights, packed_kind
from extremeq.nn.layers import quantize_input
from extremeq.nn.specs import as_spec

__all__ = ["Packed", "PackedLinear", "PackedConv", "PACKED_CLASSES", "padding_config"]


class Packed(nnx.Variable):
    """An array of an exported layer: packed words, int8 codes, scales, bias."""


def _opt(a):
    return None if a is None else Packed(jnp.asarray(a))


def _val(v):
    return None if v is None else v[...]


def padding_config(padding):
    return padding if isinstance(padding, str) else [list(map(int, p)) for p in padding]


class _PackedLayer(nnx.Module):
    """Shared state of the packed layers: the quantizer names, the packed weights, the bias."""

    def _set_packed(self, config: Mapping, arrays: Mapping):
        self.weight = str(config["weight"])  # the training weight quantizer name (a registered method)
        self.inputs = str(config["inputs"])  # input quantizer name
        self._names = tuple(packed_kind(self.weight).FIELDS.values())  # the arrays of its packed kind
        for name in self._names:
            setattr(self, name, _opt(arrays.get(name)))
        self.bias = _opt(arrays.get("bias"))

    def packed_weights(self) -> PackedWeights:
        """The typed packed weights of this layer (its variables' current values)."""
        arrays = {name: _val(getattr(self, name)) for name in self._names}
        return packed_kind(self.weight).from_arrays(arrays, self.weight)

    def _add_bias(self, y):
        return y if self.bias is None else y + self.bias[...]


class PackedLinear(_PackedLayer):
    """Inference dense layer from packed weights: y = (Q_in(x) . W_q) * K + b."""

    def __init__(self, config: Mapping, arrays: Mapping):
        self.in_features = int(config["in_features"])
        self.out_features = int(config["out_features"])
        self._set_packed(config, arrays)

    @property
    def config(self) -> dict:
        return dict(
            in_features=self.in_features, out_features=self.out_features, weight=self.weight, inputs=self.inputs
        )

    def __call__(self, x):
        if x.shape[-1] != self.in_features:
            raise ValueError(f"PackedLinear expects {self.in_features} input features, got shape {x.shape}")
        spec = as_spec(self.inputs, "input")
        xq, k = quantize_input(spec, jnp.asarray(x, jnp.float32))
        weights = self.packed_weights()
        if spec.is_binary and isinstance(weights, BinaryWeights):
            y = weights.xnor_matmul(xq, k=self.in_features)
        else:
            y = weights.matmul(xq, k=self.in_features)
        return self._add_bias(y if k is None else y * k)


class PackedConv(_PackedLayer):
    """Inference 2-D convolution (NHWC) from packed weights: y = (Q_in(x) (*) W_q) * K + b."""

    def __init__(self, config: Mapping, arrays: Mapping):
        self.in_features = int(config["in_features"])
        self.out_features = int(config["out_features"])
        self.kernel_size = tuple(int(k) for k in config["kernel_size"])
        self.strides = tuple(int(s) for s in config["strides"])
        p = config["padding"]
        self.padding = p if isinstance(p, str) else tuple(tuple(int(v) for v in pp) for pp in p)
        self.feature_group_count = int(config.get("feature_group_count", 1))
        self.pad_value = float(config.get("pad_value", 1.0))
        self._set_packed(config, arrays)

    @property
    def config(self) -> dict:
        return dict(
            in_features=self.in_features,
            out_features=self.out_features,
            kernel_size=list(self.kernel_size),
            strides=list(self.strides),
            padding=padding_config(self.padding),
            feature_group_count=self.feature_group_count,
            pad_value=self.pad_value,
            weight=self.weight,
            inputs=self.inputs,
        )

    def _pads(self, spatial_shape):
        if isinstance(self.padding, str):
            return tuple(
                tuple(p) for p in lax.padtype_to_pads(spatial_shape, self.kernel_size, self.strides, self.padding)
            )
        return tuple(tuple(p) for p in self.padding)

    def __call__(self, x):
        if x.ndim != 4 or x.shape[-1] != self.in_features:
            raise ValueError(f"PackedConv expects NHWC input with {self.in_features} channels, got {x.shape}")
        spec = as_spec(self.inputs, "input")
        pads = self._pads(x.shape[1:3])
        xq, k = quantize_input(
            spec, jnp.asarray(x, jnp.float32), kernel_size=self.kernel_size, strides=self.strides, padding=pads
        )
        shape = (*self.kernel_size, self.in_features // self.feature_group_count, self.out_features)
        y = self.packed_weights().conv(
            xq,
            shape=shape,
            strides=self.strides,
            pads=pads,
            pad_value=self.pad_value if spec.is_binary else 0.0,
            feature_group_count=self.feature_group_count,
            binary_inputs=spec.is_binary,
        )
        return self._add_bias(y if k is None else y * k)


PACKED_CLASSES = {"PackedLinear": PackedLinear, "PackedConv": PackedConv}
