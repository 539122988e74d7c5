"""Export a trained quantized model to packed weights, save/load it, run it through the kernels.

    import extremeq
    packed = extremeq.export(model, recipe={"model": {"name": "mlp", "hidden": (256, 256)},
                                            "num_classes": 10, "input_shape": (8, 8, 1)})
    logits = packed(x)                        # jitted, any batch size
    nbytes = packed.save("model.npz")         # bytes written
    print(packed.size_report())               # file vs extremeq.summary's prediction
    packed = extremeq.export.load("model.npz")

``extremeq.export`` is this module, and the module is callable: ``extremeq.export(model)`` is
:func:`export`, ``extremeq.export.load`` / ``extremeq.export.PackedModel`` the rest.

What export does
----------------
The packed model keeps the network's own NNX structure and ``__call__`` (so an MLP, a LeNet-5 or
a ResNet with shortcuts run their own forward code), with every ``QuantLinear`` / ``QuantConv``
replaced by a :class:`PackedLinear` / :class:`PackedConv` that holds

==================  =========================================  ===================================
weight quantizer    stored                                      forward (``extremeq.kernels``)
==================  =========================================  ===================================
bc, bwn             sign(W) as 1-bit words [N, ceil(K/32)]      binary inputs (sign, xnor):
(bc_stochastic:     (``extremeq.packing``: bit 1 = +1), alpha   XNOR-popcount ``xnor_linear`` /
its eval sign)      (bwn: float32 per output channel; bc: -)    ``xnor_matmul`` / ``xnor_conv``;
                                                                float inputs: ``binary_weight_matmul``
twn, bitnet         T(W) in {-1,0,+1} as 2-bit words           ``ternary_weight_matmul``
                    [N, ceil(K/16)], alpha (float32, per
                    tensor or per channel)
ttq                 T(W) as 2-bit words, W_p, W_n               two ``ternary_weight_matmul``: W_p
                                                                on the +1 codes, W_n on the -1 codes
int8                int8 codes [K, N] (HWIO for convs),         dequantize s * codes, float dot
                    float32 scales s                            (exactly the training forward)
fp                  float32 kernel                              float dot / conv
==================  =========================================  ===================================

K is in_features for a dense layer and kh*kw*Cin for a convolution, packed in the order of
``lax.conv_general_dilated_patches`` (``c*kh*kw + dh*kw + dw``, :func:`pack_conv_weights`);
convolutions with float inputs run as patches @ packed weights. Input quantizers are applied as in
training: int8 inputs by the same fake-quant, binary inputs by sign (with XNOR-Net's K-map for
``xnor``). Binary-input convolutions pad with the layer's ``pad_value`` (+1 or 0) after
binarization, as ``QuantConv`` does: for +1 the input is zero-padded explicitly and the kernel
called with VALID padding (sign(0) = +1, and |0| = 0 keeps the K-map of the zero-padded |x|).

Exactness: binary products are computed in integers, so the packed model is exact where the float
training graph rounds. Predictions agree with the training graph's (the tests ask >= 99.9%); logits
agree to float rounding where no activation is binary or int8. One place where they can differ: a
+-1 product that is exactly 0 and reaches the next sign() unchanged (e.g. batch norm with zero mean and
shift, as at initialisation) is +1 here but +-rounding noise in the float graph.

Float layers (``nnx.Linear``/``nnx.Conv``), batch norm and every other part of the network are
kept as they are (float32). Batch norm is **not** folded: in the model zoo it sits where the next
layer binarizes its input, or after a max-pool, so folding would not remove it from most places.

File format (``.npz``, numpy's uncompressed zip of ``.npy`` arrays), format version 1
-----------------------------------------------------------------------------------------
``__extremeq__``      uint8 array, UTF-8 JSON with
                      ``format`` = "extremeq.export", ``version`` = 1,
                      ``recipe`` (how to rebuild the network, below),
                      ``model_class`` (class name of the exported network),
                      ``layers``: {path: {"class": "PackedLinear" | "PackedConv", "config": {...}}},
                      ``arrays``: {name: [dtype, shape]} for every array in the file,
                      ``summary``: ``extremeq.summary``'s prediction (packed_bytes, float32_bytes,
                      per-layer packed bytes) or null.
``<path>/<name>``     one array per state variable of the packed network, named by its "/"-joined
                      attribute path: packed layers ``w`` (uint32 words, or int8 codes, or float32
                      kernel), ``alpha`` (float32 scales), ``ttq_wp``/``ttq_wn``, ``bias``;
                      float layers ``kernel``/``bias``; batch norm ``scale``/``bias``/``mean``/``var``.

The recipe rebuilds the structure, then the arrays fill it; nothing is unpickled. Either
``{"model": {"name": <zoo name>, **kwargs}, "num_classes": int, "input_shape": [..]}`` (the
arguments of ``extremeq.nn.models.build_model``), or ``{"factory": <registered name>,
"kwargs": {...}}`` for a network outside the zoo: the name must be one registered in Python with
:func:`register_factory` (the zoo's classes are, as ``extremeq.nn.models:CifarResNet`` etc.), and
``factory(**kwargs)``, plus ``rngs=nnx.Rngs(0)`` if it takes ``rngs``, returns the float network; its
Linear/Conv layers at the packed paths are then replaced by the stored layers.

A model file is data. Loading it never imports or calls anything the file names: a factory name not
in the registry is refused with :class:`ExportFormatError` before anything is imported.
Loading a file of another version, a truncated or corrupt file, or a file whose arrays do not fit
the rebuilt structure raises :class:`ExportFormatError` with what was wrong.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import os
import sys
import types
import zipfile
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import lax

from extremeq import kernels as K
from extremeq import quantizers as Q
from extremeq.nn.layers import QuantConv, QuantLinear, _Quantized, quantize_input
from extremeq.nn.policy import path_string
from extremeq.nn.specs import BINARY, TERNARY, as_spec
from extremeq.packing import np_pack_bits_reference, pack_signs, pack_ternary, unpack_signs, unpack_ternary

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "ExportFormatError",
    "PackedConv",
    "PackedLinear",
    "PackedModel",
    "export",
    "load",
]

FORMAT = "extremeq.export"
FORMAT_VERSION = 1
META_KEY = "__extremeq__"

#: Modules export knows. Other modules may hold sub-modules, but not parameters of their own.
SUPPORTED = (QuantLinear, QuantConv, nnx.Linear, nnx.Conv, nnx.BatchNorm, nnx.LayerNorm, nnx.Dropout)
_DN = ("NHWC", "HWIO", "NHWC")


class ExportFormatError(ValueError):
    """A file is not a loadable extremeq export (wrong version, truncated, mismatched)."""


class Packed(nnx.Variable):
    """An array of an exported layer: packed words, int8 codes, scales, bias."""


def _weight_kind(name: str) -> str:
    if name in BINARY:
        return "binary"
    if name == "ttq":
        return "ttq"
    if name in TERNARY:
        return "ternary"
    return name  # "int8" | "fp"


def _opt(a):
    return None if a is None else Packed(jnp.asarray(a))


# ------------------------------------------------------------------------------------------------
# Packing one layer's weights
# ------------------------------------------------------------------------------------------------
def _rows(q, is_conv: bool) -> np.ndarray:
    """Kernel [K, N] or HWIO -> [N, K] rows in the packing order of the kernels."""
    q = np.asarray(q)
    if is_conv:
        kh, kw, c, o = q.shape
        return q.transpose(3, 2, 0, 1).reshape(o, c * kh * kw)
    return q.T


def _np_pack_signs(rows: np.ndarray) -> np.ndarray:
    """``extremeq.packing.pack_signs(rows, axis=-1)`` in NumPy (no compilation at export time)."""
    return np_pack_bits_reference(np.ascontiguousarray(rows >= 0)).astype(np.uint32)


def _scale_from(q, per_channel: bool):
    """alpha of a kernel whose entries are in {-alpha, 0, +alpha} (per output channel or tensor)."""
    q = np.abs(np.asarray(q, np.float32))
    return q.reshape(-1, q.shape[-1]).max(axis=0) if per_channel else q.max()


def pack_layer_arrays(layer: _Quantized) -> tuple[str, dict]:
    """(weight kind, arrays) for a trained QuantLinear/QuantConv in eval mode.

    Binary: ``w`` = sign(Q_w(W)) as 1-bit words, ``alpha`` = |Q_w(W)| (bwn; bc has none).
    Ternary (twn, bitnet): ``w`` = sign(Q_w(W)) as 2-bit codes, ``alpha`` = max |Q_w(W)|.
    TTQ: codes from the latent W and Delta = t max|W| (TTQ eq. 6), ``ttq_wp``, ``ttq_wn``.
    int8: ``w`` = round(W / s) clipped to [-127, 127] as int8, ``alpha`` = s (as ``quantizers.int8``).
    fp: ``w`` = W.
    """
    spec = layer.kernel_quantizer
    kind = _weight_kind(spec.name)
    is_conv = isinstance(layer, QuantConv)
    w = np.asarray(layer.kernel[...], np.float32)
    arrays: dict[str, Any] = {}
    if kind == "binary":
        if spec.option("eval", "sign") == "mean":
            import warnings  # pylint: disable=g-import-not-at-top

            warnings.warn("export: a bc_stochastic layer evaluated with stochastic_eval='mean' (real-valued "
                          "weights) is packed as its deterministic sign, the 1-bit net; its predictions follow "
                          "that net, not the 'mean' evaluation", stacklevel=3)
            q = np.where(np.asarray(layer.kernel[...]) >= 0, 1.0, -1.0).astype(np.float32)
        else:
            q = np.asarray(layer.quantized_kernel(), np.float32)  # the exact values of the training forward
        arrays["w"] = _np_pack_signs(_rows(q, is_conv))
        if spec.name == "bwn":
            arrays["alpha"] = _scale_from(q, spec.option("per_channel", True))
    elif kind == "ternary":
        q = np.asarray(layer.quantized_kernel(), np.float32)
        arrays["w"] = np.asarray(pack_ternary(np.sign(_rows(q, is_conv)).astype(np.int8)))
        arrays["alpha"] = _scale_from(q, spec.name == "twn" and spec.option("per_channel", False))
    elif kind == "ttq":
        delta = np.float32(spec.option("t", Q.TTQ_THRESHOLD_FACTOR)) * np.abs(w).max()
        t = (w > delta).astype(np.int8) - (w < -delta).astype(np.int8)
        arrays["w"] = np.asarray(pack_ternary(_rows(t, is_conv)))
        arrays["ttq_wp"] = np.asarray(layer.ttq_wp[...], np.float32)
        arrays["ttq_wn"] = np.asarray(layer.ttq_wn[...], np.float32)
    elif kind == "int8":
        per_channel = spec.option("per_channel", True)
        axes = tuple(range(w.ndim - 1)) if per_channel else None
        s = Q.int8_scale(jnp.asarray(w), axes, keepdims=per_channel)  # as quantizers.int8 computes it
        arrays["w"] = np.asarray(jnp.clip(jnp.round(w / s), -Q.INT8_MAX, Q.INT8_MAX).astype(jnp.int8))
        arrays["alpha"] = np.asarray(s, np.float32).reshape(-1) if per_channel else np.asarray(s, np.float32)
    else:
        arrays["w"] = w
    if layer.bias is not None:
        arrays["bias"] = np.asarray(layer.bias[...], np.float32)
    return kind, arrays


def _ttq_split(words):
    """2-bit words -> (words of the +1 codes only, words of the -1 codes only)."""
    lo = words & jnp.uint32(0x55555555)
    hi = (words >> 1) & jnp.uint32(0x55555555)
    pos = lo & ~hi  # code 01
    neg = hi | (hi << 1)  # code 11
    return pos, neg


def _packed_weight_matmul(kind, x, w, alpha, wp, wn, bias_dtype=jnp.float32):
    """x [..., K] float @ the packed weights (rows = output channels) -> [..., N]."""
    if kind == "binary":
        return K.binary_weight_matmul(x, w, 1.0 if alpha is None else alpha)
    if kind == "ternary":
        return K.ternary_weight_matmul(x, w, alpha)
    if kind == "ttq":
        pos, neg = _ttq_split(w)
        return K.ternary_weight_matmul(x, pos, wp) + K.ternary_weight_matmul(x, neg, wn)
    raise AssertionError(kind)


# On the CPU, packed convolutions decode their weights and call XLA's float convolution (faster there
# than the patch-based kernels, see BENCHMARKS.md); set False to run the kernels on the CPU too.
CPU_CONV_VIA_FLOAT = True


def _decode_conv_kernel(kind, w, alpha, wp, wn, shape):
    """Packed rows [O, ceil(C kh kw / per_word)] -> the float HWIO kernel of the training forward."""
    kh, kw, c, o = shape
    n = c * kh * kw
    if kind == "binary":
        rows = unpack_signs(w, n, axis=-1)
    else:
        rows = unpack_ternary(w, n, axis=-1, dtype=jnp.float32)
        if kind == "ttq":
            rows = jnp.where(rows > 0, wp, jnp.where(rows < 0, -wn, 0.0))
    if kind != "ttq" and alpha is not None:
        rows = rows * (jnp.reshape(alpha, (-1, 1)) if jnp.ndim(alpha) == 1 else alpha)
    return rows.reshape(o, c, kh, kw).transpose(2, 3, 1, 0)


def _val(v):
    return None if v is None else v[...]


# ------------------------------------------------------------------------------------------------
# Packed inference layers
# ------------------------------------------------------------------------------------------------
class _PackedLayer(nnx.Module):
    """Shared state of the packed layers: the quantizer names, the words and their scales."""

    def _set_packed(self, config: Mapping, arrays: Mapping):
        self.weight = str(config["weight"])  # the training weight quantizer name
        self.kind = _weight_kind(self.weight)
        self.inputs = str(config["inputs"])  # input quantizer name
        self.w = Packed(jnp.asarray(arrays["w"]))
        self.alpha = _opt(arrays.get("alpha"))
        self.ttq_wp = _opt(arrays.get("ttq_wp"))
        self.ttq_wn = _opt(arrays.get("ttq_wn"))
        self.bias = _opt(arrays.get("bias"))


class PackedLinear(_PackedLayer):
    """Inference dense layer from packed weights: y = (Q_in(x) . W_q) * K + b (see module doc)."""

    def __init__(self, config: Mapping, arrays: Mapping):
        self.in_features = int(config["in_features"])
        self.out_features = int(config["out_features"])
        self._set_packed(config, arrays)

    @property
    def config(self) -> dict:
        return dict(in_features=self.in_features, out_features=self.out_features, weight=self.weight,
                    inputs=self.inputs)

    def __call__(self, x):
        if x.shape[-1] != self.in_features:
            raise ValueError(f"PackedLinear expects {self.in_features} input features, got shape {x.shape}")
        x = jnp.asarray(x, jnp.float32)
        w, alpha = self.w[...], _val(self.alpha)
        binary_in = self.inputs in ("sign", "xnor")
        if binary_in and self.kind == "binary":
            a = 1.0 if alpha is None else alpha
            if self.inputs == "xnor":  # (sign x . sign w) beta alpha, beta = mean|x| per row
                y = K.xnor_linear(x, w, a)
            else:
                lead = x.shape[:-1]
                x2 = x.reshape(math.prod(lead), self.in_features)
                y = K.xnor_matmul(pack_signs(x2, axis=-1), w, self.in_features, alpha_w=a)
                y = y.reshape(*lead, self.out_features)
        else:
            xq, k = quantize_input(as_spec(self.inputs, "input"), x)
            if self.kind in ("binary", "ternary", "ttq"):
                y = _packed_weight_matmul(self.kind, xq, w, alpha, _val(self.ttq_wp), _val(self.ttq_wn))
            elif self.kind == "int8":
                y = jnp.dot(xq, alpha * w.astype(jnp.float32))
            else:
                y = jnp.dot(xq, w)
            if k is not None:
                y = y * k
        if self.bias is not None:
            y = y + self.bias[...]
        return y


def _padding_config(padding):
    return padding if isinstance(padding, str) else [list(map(int, p)) for p in padding]


class PackedConv(_PackedLayer):
    """Inference 2-D convolution (NHWC) from packed weights (see module doc)."""

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
        return dict(in_features=self.in_features, out_features=self.out_features,
                    kernel_size=list(self.kernel_size), strides=list(self.strides),
                    padding=_padding_config(self.padding), feature_group_count=self.feature_group_count,
                    pad_value=self.pad_value, weight=self.weight, inputs=self.inputs)

    def _pads(self, spatial_shape):
        if isinstance(self.padding, str):
            return [tuple(p) for p in lax.padtype_to_pads(spatial_shape, self.kernel_size, self.strides,
                                                           self.padding)]
        return [tuple(p) for p in self.padding]

    def __call__(self, x):
        if x.ndim != 4 or x.shape[-1] != self.in_features:
            raise ValueError(f"PackedConv expects NHWC input with {self.in_features} channels, got {x.shape}")
        x = jnp.asarray(x, jnp.float32)
        pads = self._pads(x.shape[1:3])
        w, alpha = self.w[...], _val(self.alpha)
        nhwc_pads = [(0, 0), *pads, (0, 0)]
        binary_in = self.inputs in ("sign", "xnor")
        on_cpu = CPU_CONV_VIA_FLOAT and jax.default_backend() == "cpu"
        if binary_in and self.kind == "binary" and not on_cpu:
            a = 1.0 if alpha is None else alpha
            if self.inputs == "xnor":
                if self.pad_value == 1.0:  # sign(0) = +1 in the padding, |0| = 0 in the K-map
                    y = K.xnor_conv(jnp.pad(x, nhwc_pads), w, a, kernel_size=self.kernel_size,
                                    strides=self.strides, padding="VALID")
                else:  # pad_value 0: the kernel's own zero padding
                    y = K.xnor_conv(x, w, a, kernel_size=self.kernel_size, strides=self.strides,
                                    padding=tuple(pads))
            else:  # BinaryNet sign inputs: |x| = 1 everywhere, padding included, so K = 1 exactly
                xs = jnp.pad(jnp.where(x >= 0, 1.0, -1.0), nhwc_pads, constant_values=self.pad_value)
                y = K.xnor_conv(xs, w, a, kernel_size=self.kernel_size, strides=self.strides,
                                padding="VALID")
        else:
            xq, k = quantize_input(as_spec(self.inputs, "input"), x, kernel_size=self.kernel_size,
                                   strides=self.strides, padding=pads)
            if binary_in:
                xq = jnp.pad(xq, nhwc_pads, constant_values=self.pad_value)
                pads = [(0, 0), (0, 0)]
            if self.kind in ("binary", "ternary", "ttq") and on_cpu:
                # On the CPU, XLA's float convolution beats both the XNOR-popcount conv and patches @
                # packed weights (BENCHMARKS.md, Inference): decode the packed weights inside the
                # jitted call (a few thousand words), then convolve the (binarized) inputs.
                kernel = _decode_conv_kernel(self.kind, w, alpha, _val(self.ttq_wp), _val(self.ttq_wn),
                                             (*self.kernel_size, self.in_features, self.out_features))
                y = lax.conv_general_dilated(xq, kernel, window_strides=self.strides, padding=pads,
                                             dimension_numbers=_DN)
            elif self.kind in ("binary", "ternary", "ttq"):
                patches = lax.conv_general_dilated_patches(
                    xq, self.kernel_size, self.strides, pads, dimension_numbers=_DN,
                    precision=lax.Precision.HIGHEST)
                y = _packed_weight_matmul(self.kind, patches, w, alpha, _val(self.ttq_wp), _val(self.ttq_wn))
            else:
                kernel = alpha * w.astype(jnp.float32) if self.kind == "int8" else w
                y = lax.conv_general_dilated(xq, kernel, window_strides=self.strides, padding=pads,
                                             dimension_numbers=_DN,
                                             feature_group_count=self.feature_group_count)
            if k is not None:
                y = y * k
        if self.bias is not None:
            y = y + self.bias[...]
        return y


_PACKED_CLASSES = {"PackedLinear": PackedLinear, "PackedConv": PackedConv}


def pack_layer(layer: _Quantized, path: str = "?") -> PackedLinear | PackedConv:
    """The packed inference twin of a QuantLinear / QuantConv (eval-mode weights)."""
    kind, arrays = pack_layer_arrays(layer)
    common = dict(in_features=layer.in_features, out_features=layer.out_features,
                  weight=layer.kernel_quantizer.name, inputs=layer.input_quantizer.name)
    if isinstance(layer, QuantLinear):
        return PackedLinear(common, arrays)
    binary_in = layer.input_quantizer.is_binary
    if layer.feature_group_count != 1 and (kind in ("binary", "ternary", "ttq") or binary_in):
        raise ValueError(
            f"export: layer '{path}' is a grouped QuantConv (feature_group_count="
            f"{layer.feature_group_count}) with packed weights; the packed kernels support groups=1 only. "
            "Keep it float or int8 (precision policy rule with kernel='fp' or 'int8').")
    if binary_in and kind == "binary" and layer.pad_value not in (1.0, 0.0):
        raise ValueError(f"export: layer '{path}' pads its binary inputs with {layer.pad_value}; packed "
                         "binary convolutions support pad_value +1 (default) or 0.")
    if binary_in and kind == "binary" and layer.input_quantizer.name == "sign" and layer.pad_value != 1.0:
        raise ValueError(f"export: layer '{path}' (sign inputs) pads with {layer.pad_value}; packed "
                         "BinaryNet convolutions support pad_value +1 only.")
    config = dict(common, kernel_size=list(layer.kernel_size), strides=list(layer.strides),
                  padding=_padding_config(layer.padding), feature_group_count=layer.feature_group_count,
                  pad_value=float(layer.pad_value))
    return PackedConv(config, arrays)


# ------------------------------------------------------------------------------------------------
# Model-level export
# ------------------------------------------------------------------------------------------------
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
                "Build the network from these, or keep such a layer out of the model you export.")


def _set_at(root, path: tuple, new) -> None:
    parent = root
    for key in path[:-1]:
        parent = parent[key] if isinstance(key, int) else getattr(parent, key)
    if isinstance(path[-1], int):
        parent[path[-1]] = new
    else:
        setattr(parent, path[-1], new)


def _path_tuple(path: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in path.split("/"))


def _storable_state(module):
    """Flat {name: array} of every variable but the rng state (rebuilt by the recipe)."""
    state = nnx.state(module, nnx.Not(nnx.RngState))
    out = {}
    for path, var in nnx.to_flat_state(state):
        out["/".join(str(p) for p in path)] = var.get_value()
    return out


def _jsonable(obj):
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if hasattr(obj, "to_dict"):
        return _jsonable(obj.to_dict())
    raise TypeError(f"recipe value {obj!r} of type {type(obj).__name__} is not JSON-serialisable; "
                    "use numbers, strings, lists and dicts")


def _check_recipe(recipe):
    if recipe is None:
        return None
    recipe = _jsonable(recipe)
    if "model" in recipe:
        if not isinstance(recipe["model"], dict) or "name" not in recipe["model"]:
            raise ValueError("recipe['model'] must be a dict with the zoo 'name' and its keyword arguments")
        missing = {"num_classes", "input_shape"} - set(recipe)
        if missing:
            raise ValueError(f"a zoo recipe needs {sorted(missing)} too: "
                             "{'model': {...}, 'num_classes': 10, 'input_shape': [28, 28, 1]}")
    elif "factory" in recipe:
        _registered_factory(recipe["factory"], error=ValueError)
    else:
        raise ValueError("a recipe is {'model': {'name': ..., **kwargs}, 'num_classes': ..., 'input_shape': ...} "
                         "or {'factory': 'package.module:function', 'kwargs': {...}}")
    return recipe


_FACTORIES: dict[str, Any] = {}


def register_factory(name: str, fn) -> None:
    """Allow ``recipe={"factory": name, "kwargs": {...}}``: ``fn(**kwargs)`` builds the float network.

    Registration is code, run by the user's program before ``export``/``load``; a model file can only
    name a builder registered this way, never a module to import.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"a factory name is a non-empty string, got {name!r}")
    if not callable(fn):
        raise TypeError(f"register_factory({name!r}, fn): fn must be callable, got {type(fn).__name__}")
    _FACTORIES[name] = fn


def _registered_factory(name, error):
    if not _FACTORIES:
        from extremeq.nn import models

        for cls in models.ZOO_CLASSES:
            _FACTORIES.setdefault(f"extremeq.nn.models:{cls.__name__}", cls)
    if not isinstance(name, str) or name not in _FACTORIES:
        raise error(
            f"recipe factory {name!r} is not a registered model builder; a model file may only name one of "
            f"{sorted(_FACTORIES)}. Register your own with extremeq.export.register_factory(name, fn) in "
            "your program before exporting or loading (nothing named by a file is imported).")
    return _FACTORIES[name]


def build_from_recipe(recipe: Mapping):
    """The float network a recipe describes (zoo ``build_model`` or ``factory(**kwargs)``)."""
    if "model" in recipe:
        from extremeq.nn.models import build_model

        return build_model(dict(recipe["model"]), int(recipe["num_classes"]), tuple(recipe["input_shape"]),
                           nnx.Rngs(0))
    fn = _registered_factory(recipe.get("factory"), error=ExportFormatError)
    kwargs = dict(recipe.get("kwargs", {}))
    try:
        takes_rngs = "rngs" in inspect.signature(fn.__init__ if isinstance(fn, type) else fn).parameters
    except (TypeError, ValueError):
        takes_rngs = False
    if takes_rngs and "rngs" not in kwargs:
        kwargs["rngs"] = nnx.Rngs(0)
    return fn(**kwargs)


def export(model, *, recipe: Mapping | None = None, sample_input=None) -> "PackedModel":
    """Pack a trained quantized NNX model for inference (the model itself is left unchanged).

    Args:
      model: an NNX network whose quantized layers are QuantLinear/QuantConv (precision policy).
      recipe: how to rebuild the network's structure when loading (see the module docstring);
        needed by :meth:`PackedModel.save`. A zoo recipe also gives the summary's input shape.
      sample_input: an input batch (or shape without batch axis is taken from the recipe), used only
        to record ``extremeq.summary``'s size prediction for :meth:`PackedModel.size_report`.

    Returns:
      a :class:`PackedModel`, callable on input batches of any size.
    """
    if not isinstance(model, nnx.Module):
        raise TypeError(f"export needs a Flax NNX module, got {type(model).__name__}")
    check_supported(model)
    recipe = _check_recipe(recipe)
    shape = None
    if sample_input is not None:
        shape = tuple(jnp.shape(sample_input)[1:])
    elif recipe is not None and "input_shape" in recipe:
        shape = tuple(recipe["input_shape"])
    predicted = None
    if shape is not None:
        from extremeq.summary import summary

        s = summary(model, jnp.zeros((1, *shape), jnp.float32))
        predicted = {"packed_bytes": s.packed_bytes, "float32_bytes": s.float32_bytes,
                     "rows": {r.path: r.packed_bytes for r in s.rows}}

    packed = nnx.clone(model)
    targets = [(path, layer) for path, layer in nnx.iter_modules(packed) if isinstance(layer, _Quantized)]
    for path, layer in targets:
        layer.deterministic = True  # bc_stochastic: the eval sign
        _set_at(packed, tuple(path), pack_layer(layer, path_string(path)))
    layers = {path_string(p): {"class": type(m).__name__, "config": m.config}
              for p, m in nnx.iter_modules(packed) if isinstance(m, (PackedLinear, PackedConv))}
    packed.eval()
    out = PackedModel(packed, recipe=recipe, layers=layers, summary=predicted)
    if recipe is not None:
        out._check_rebuild()
    return out


# ------------------------------------------------------------------------------------------------
# The packed model
# ------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class SizeRow:
    path: str
    stored_as: str
    file_bytes: int
    float32_bytes: int
    predicted_bytes: int | None


class PackedModel:
    """An exported network: packed layers inside the network's own structure, run jitted.

    ``packed(x)`` -> logits (eval mode, any batch size); ``save(path)`` -> bytes written;
    ``PackedModel.load(path)`` (or ``extremeq.export.load``); ``size_report()``.
    Attributes: ``module`` (the NNX network with packed layers), ``recipe``, ``layers``
    (path -> packed layer config), ``summary`` (extremeq.summary's size prediction or None).
    """

    def __init__(self, module, *, recipe=None, layers=None, summary=None):
        self.module = module
        self.recipe = recipe
        self.layers = dict(layers or {})
        self.summary = summary
        self.file_bytes: int | None = None
        graphdef, state = nnx.split(module)
        self._state = state

        def forward(state, x):
            return nnx.merge(graphdef, state)(x)

        self._forward = jax.jit(forward)

    def __call__(self, x):
        return self._forward(self._state, jnp.asarray(x, jnp.float32))

    def arrays(self) -> dict[str, np.ndarray]:
        """Every stored array by name (what :meth:`save` writes besides the metadata)."""
        return {k: np.asarray(v) for k, v in _storable_state(self.module).items()}

    @property
    def nbytes(self) -> int:
        """Payload bytes: the sum of the stored arrays' sizes."""
        return sum(a.nbytes for a in self.arrays().values())

    def metadata(self, arrays=None) -> dict:
        arrays = self.arrays() if arrays is None else arrays
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "recipe": self.recipe,
            "model_class": type(self.module).__name__,
            "layers": self.layers,
            "arrays": {k: [str(a.dtype), list(a.shape)] for k, a in arrays.items()},
            "summary": self.summary,
        }

    def save(self, path) -> int:
        """Write the npz file (format in the module docstring); returns the bytes written."""
        if self.recipe is None:
            raise ValueError(
                "this PackedModel has no recipe, so a file could not be loaded back: export with "
                "recipe={'model': {'name': 'mlp', ...}, 'num_classes': 10, 'input_shape': [8, 8, 1]} "
                "(the build_model arguments) or recipe={'factory': <a name registered with register_factory>, 'kwargs': {...}}")
        arrays = self.arrays()
        meta = json.dumps(self.metadata(arrays), separators=(",", ":")).encode()
        if META_KEY in arrays:
            raise AssertionError(META_KEY)
        path = os.fspath(path)
        with open(path, "wb") as f:
            np.savez(f, **{META_KEY: np.frombuffer(meta, np.uint8)}, **arrays)
        self.file_bytes = os.path.getsize(path)
        return self.file_bytes

    @classmethod
    def load(cls, path) -> "PackedModel":
        return load(path)

    def _check_rebuild(self):
        """Fail at export time (not at load time) when the recipe does not rebuild this structure."""
        arrays = self.arrays()
        skeleton = _skeleton(self.recipe, self.layers, arrays)
        _fill(skeleton, arrays, "the recipe")

    def size_rows(self) -> list[SizeRow]:
        arrays = self.arrays()
        by_layer: dict[str, list] = {}
        for name, a in arrays.items():
            by_layer.setdefault(name.rsplit("/", 1)[0], []).append(a)
        predicted = (self.summary or {}).get("rows", {})
        rows = []
        for layer, arrs in by_layer.items():
            conf = self.layers.get(layer)
            stored = f"{conf['config']['weight']}/{conf['config']['inputs']}" if conf else "float32"
            if conf:  # float32 size of the layer it replaced: kernel, bias, TTQ's W_p and W_n
                c = conf["config"]
                n = c["in_features"] * c["out_features"]
                if "kernel_size" in c:
                    n = math.prod(c["kernel_size"]) * (c["in_features"] // c["feature_group_count"]) * c["out_features"]
                names = {k.rsplit("/", 1)[1] for k in arrays if k.rsplit("/", 1)[0] == layer}
                f32 = 4 * (n + (c["out_features"] if "bias" in names else 0) + (2 if "ttq_wp" in names else 0))
            else:
                f32 = sum(4 * a.size for a in arrs)
            rows.append(SizeRow(layer, stored, sum(a.nbytes for a in arrs), f32, predicted.get(layer)))
        return rows

    def size_report(self) -> str:
        """Table: per layer the bytes stored, its float32 size and extremeq.summary's prediction."""
        rows = self.size_rows()
        lines = [("layer", "stored as", "bytes", "float32", "ratio", "summary")]
        for r in rows:
            lines.append((r.path, r.stored_as, f"{r.file_bytes:,}", f"{r.float32_bytes:,}",
                          f"{r.float32_bytes / max(r.file_bytes, 1):.1f}x",
                          "-" if r.predicted_bytes is None else f"{r.predicted_bytes:,}"))
        payload = sum(r.file_bytes for r in rows)
        pred = (self.summary or {}).get("packed_bytes")
        lines.append(("total arrays", "", f"{payload:,}", f"{sum(r.float32_bytes for r in rows):,}",
                      "", "-" if pred is None else f"{pred:,}"))
        widths = [max(len(row[i]) for row in lines) for i in range(len(lines[0]))]
        text = [" | ".join(c.ljust(w) for c, w in zip(row, widths)) for row in lines]
        text.insert(1, "-+-".join("-" * w for w in widths))
        if self.file_bytes is not None:
            tail = f"file on disk: {self.file_bytes:,} bytes"
            if pred:
                tail += f"; summary predicted {pred:,} bytes ({100 * (self.file_bytes / pred - 1):+.2f}%)"
            text.append(tail)
        elif pred:
            text.append(f"arrays {payload:,} bytes; summary predicted {pred:,} "
                        f"({100 * (payload / pred - 1):+.2f}%); save() to measure the file")
        return "\n".join(text)


def _skeleton(recipe, layers: Mapping, arrays: Mapping):
    """Rebuild the network from the recipe and put packed layers (holding ``arrays``) at their paths."""
    if not isinstance(recipe, Mapping) or ("model" not in recipe and "factory" not in recipe):
        raise ExportFormatError(f"the file's recipe {recipe!r} names neither a zoo 'model' nor a 'factory'")
    if "factory" in recipe:  # refused before anything is built, imported or called
        _registered_factory(recipe["factory"], error=ExportFormatError)
    try:  # abstract: no weight is initialised, the file's arrays fill the structure
        model = nnx.eval_shape(lambda: build_from_recipe(recipe))
    except Exception as e:  # noqa: BLE001 - re-raised with the recipe named
        raise ExportFormatError(f"could not rebuild the network from the recipe {recipe}: {e}") from e
    for path, spec in layers.items():
        cls = _PACKED_CLASSES.get(spec.get("class"))
        if cls is None:
            raise ExportFormatError(f"layer '{path}' has unknown class {spec.get('class')!r}; "
                                    f"this version knows {sorted(_PACKED_CLASSES)}")
        prefix = path + "/"
        own = {k[len(prefix):]: v for k, v in arrays.items()
               if k.startswith(prefix) and "/" not in k[len(prefix):]}
        if "w" not in own:
            raise ExportFormatError(f"the file has no weights for layer '{path}' (array '{path}/w' missing)")
        try:
            _set_at(model, _path_tuple(path), cls(spec["config"], own))
        except (AttributeError, IndexError, KeyError) as e:
            raise ExportFormatError(f"the rebuilt network has no layer at '{path}' ({e}); the recipe "
                                    "does not describe the exported network") from e
    _fresh_rng_state(model)
    model.eval()
    return model


def _fresh_rng_state(model):
    """Concrete rng keys (key(0)) and counts (0) for an abstract model's rng streams (not stored)."""
    state = nnx.state(model, nnx.RngState)
    for _, var in nnx.to_flat_state(state):
        old = var.get_value()
        if jax.dtypes.issubdtype(old.dtype, jax.dtypes.prng_key):
            n = math.prod(old.shape)
            new = jax.random.key(0) if old.shape == () else jax.random.split(jax.random.key(0), n).reshape(old.shape)
        else:
            new = jnp.zeros(old.shape, old.dtype)
        var.set_value(new)
    nnx.update(model, state)


def _fill(model, arrays: Mapping, source: str):
    """Replace every variable of ``model`` (rng state aside) by the array of the same name."""
    state = nnx.state(model, nnx.Not(nnx.RngState))
    flat = list(nnx.to_flat_state(state))
    names = {"/".join(str(p) for p in path) for path, _ in flat}
    missing = sorted(names - set(arrays))
    extra = sorted(set(arrays) - names)
    if missing or extra:
        raise ExportFormatError(
            f"the arrays do not fit the network rebuilt from {source}: missing {missing[:5]}"
            f"{' ...' if len(missing) > 5 else ''}, unexpected {extra[:5]}{' ...' if len(extra) > 5 else ''}")
    for path, var in flat:
        name = "/".join(str(p) for p in path)
        old, new = var.get_value(), arrays[name]
        if tuple(old.shape) != tuple(new.shape) or np.dtype(old.dtype) != np.dtype(new.dtype):
            raise ExportFormatError(f"array '{name}' is {np.dtype(new.dtype)} {tuple(new.shape)} but the "
                                    f"network rebuilt from {source} needs {np.dtype(old.dtype)} {tuple(old.shape)}")
        var.set_value(jnp.asarray(new))
    nnx.update(model, state)
    return model


def _read_npz(path) -> tuple[dict, dict]:
    path = os.fspath(path)
    size = os.path.getsize(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            if META_KEY not in z.files:
                raise ExportFormatError(f"{path} is an npz file but not an extremeq export (no '{META_KEY}' entry)")
            meta = json.loads(bytes(z[META_KEY]).decode())
            arrays = {k: z[k] for k in z.files if k != META_KEY}
    except ExportFormatError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, json.JSONDecodeError) as e:
        raise ExportFormatError(
            f"{path} ({size:,} bytes) is truncated or corrupt and cannot be read as an extremeq export "
            f"({type(e).__name__}: {e}); save the model again") from e
    return meta, arrays


def load(path) -> PackedModel:
    """Read a file written by :meth:`PackedModel.save` and rebuild the packed model."""
    meta, arrays = _read_npz(path)
    if meta.get("format") != FORMAT:
        raise ExportFormatError(f"{path}: format {meta.get('format')!r} is not {FORMAT!r}")
    version = meta.get("version")
    if version != FORMAT_VERSION:
        raise ExportFormatError(
            f"{path} has extremeq export format version {version}, this extremeq reads version "
            f"{FORMAT_VERSION}; export the model again with this version (or load it with the extremeq "
            "that wrote it)")
    listed = meta.get("arrays", {})
    if set(listed) != set(arrays):
        raise ExportFormatError(f"{path}: arrays listed in the metadata and present in the file differ "
                                f"(missing {sorted(set(listed) - set(arrays))[:5]}); the file is incomplete")
    for name, (dtype, shape) in listed.items():
        a = arrays[name]
        if str(a.dtype) != dtype or list(a.shape) != list(shape):
            raise ExportFormatError(f"{path}: array '{name}' is {a.dtype} {a.shape}, the metadata says "
                                    f"{dtype} {tuple(shape)}; the file is corrupt")
    model = _skeleton(meta["recipe"], meta["layers"], arrays)
    if type(model).__name__ != meta.get("model_class"):
        raise ExportFormatError(f"{path}: the recipe rebuilt a {type(model).__name__}, the file holds a "
                                f"{meta.get('model_class')}")
    _fill(model, arrays, f"the recipe in {path}")
    out = PackedModel(model, recipe=meta["recipe"], layers=meta["layers"], summary=meta.get("summary"))
    out.file_bytes = os.path.getsize(os.fspath(path))
    return out


class _CallableModule(types.ModuleType):
    """``extremeq.export(model, ...)`` calls :func:`export`; the module's other names stay reachable."""

    def __call__(self, *args, **kwargs):
        return export(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
