"""Flax NNX layers with quantized weights and inputs: QuantLinear, QuantConv.

Both keep a float *latent* kernel (``kernel``, same layout as ``nnx.Linear``
[in, out] and ``nnx.Conv`` HWIO) and compute, in the forward pass,

    y = (Q_in(x) (*) Q_w(W)) * K + b

where Q_w is the weight quantizer, Q_in the input quantizer, and K the XNOR-Net
input scale (1 for every input quantizer except "xnor"). ``(*)`` is a matmul
or a convolution. ``quantized_kernel()`` returns Q_w(W), the weights the
forward pass really multiplies with.

Every method-specific fact comes from the method's registry entry (``extremeq.methods``):
the forward, its learned scales (TTQ layers own two learned scalars ``ttq_wp`` and
``ttq_wn``, initialised from the latent weights, TTQ's fine-tuning start), whether it is
stochastic (a stochastic BinaryConnect layer draws its noise from the ``quant`` stream of
the layer's ``nnx.Rngs`` while training, and uses the deterministic sign after
``model.eval()``).

Binary-input convolutions pad with ``pad_value`` *after* binarization (default
+1, i.e. sign(0)), as Larq's ``pad_values=1``: a packed 1-bit inference kernel
cannot represent the 0 that float zero-padding would insert.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from extremeq.nn.conv import conv_general_dilated
from extremeq.nn.specs import QuantizerSpec, as_spec

default_kernel_init = nnx.initializers.lecun_normal()


def quantize_weight(spec: QuantizerSpec, w, *, w_p=None, w_n=None, key=None, scales=None):
    """Q_w(W) for a weight spec (pure function; the layers call it): the registered method's forward.

    ``scales``: the method's learned scales by name (TTQ: ``ttq_wp``, ``ttq_wn``, also accepted as
    ``w_p``/``w_n``); ``key``: a PRNG key while training a stochastic method, else None.
    """
    scales = dict(scales or {})
    if w_p is not None:
        scales["ttq_wp"] = w_p
    if w_n is not None:
        scales["ttq_wn"] = w_n
    return spec.method.forward(w, spec, scales=scales, key=key)


def quantize_input(spec: QuantizerSpec, x, *, kernel_size=None, strides=1, padding="SAME"):
    """(Q_in(x), K) for an input spec; K is None unless the method has an input scale ("xnor")."""
    return spec.method.forward(x, spec, kernel_size=kernel_size, strides=strides, padding=padding)


def _check_features(cls: str, in_features: int, out_features: int):
    for name, n in (("in_features", in_features), ("out_features", out_features)):
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"{cls} needs {name} >= 1 (an int), got {n!r}")


class _Quantized(nnx.Module):
    """Shared state and logic: latent kernel, specs, learned scales (TTQ), rng stream."""

    def _setup_quantizers(self, kernel_quantizer, input_quantizer, ste, ste_kwargs, rngs):
        self.kernel_quantizer = as_spec(kernel_quantizer, "weight", ste, ste_kwargs)
        self.input_quantizer = as_spec(input_quantizer, "input", ste, ste_kwargs)
        self.deterministic = False  # flipped by model.eval()/model.train()
        method = self.kernel_quantizer.method
        for name in method.learned_scales:
            setattr(self, name, nnx.Param(jnp.zeros((), jnp.float32)))
        self.init_learned_scales()
        if method.stochastic:
            if rngs is None or "quant" not in rngs:
                raise ValueError(
                    f"a {self.kernel_quantizer.name!r} layer needs a 'quant' rng stream: pass rngs=nnx.Rngs(0, quant=1)"
                )
            self.quant_rngs = rngs.quant.fork() if hasattr(rngs.quant, "fork") else rngs.quant

    def init_learned_scales(self):
        """Set the method's learned scales from the current latent kernel (TTQ's fine-tuning start)."""
        method = self.kernel_quantizer.method
        if method.learned_scales:
            values = method.init_scales(self.kernel[...], self.kernel_quantizer)
            for name in method.learned_scales:
                getattr(self, name)[...] = jnp.asarray(values[name], jnp.float32)

    def learned_scales(self) -> dict:
        """The method's learned scales by name (empty for all but TTQ among the built-ins)."""
        return {name: getattr(self, name)[...] for name in self.kernel_quantizer.method.learned_scales}

    def quantized_kernel(self):
        """Q_w(W): the weights the forward pass multiplies with."""
        spec = self.kernel_quantizer
        key = self.quant_rngs() if spec.method.stochastic and not self.deterministic else None
        return quantize_weight(spec, self.kernel[...], key=key, scales=self.learned_scales())

    def encoded_kernel(self):
        """The integer codes and scales of the evaluation forward (``methods.QArray``), or None
        for a float kernel; ``encoded_kernel().dequantize()`` equals ``quantized_kernel()`` after
        ``model.eval()``."""
        spec = self.kernel_quantizer
        if spec.method.encode is None:
            return None
        return spec.method.encode(self.kernel[...], spec, self.learned_scales())


class QuantLinear(_Quantized):
    """Dense layer y = (Q_in(x) @ Q_w(W)) * K + b, W latent [in, out]."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        kernel_quantizer="fp",
        input_quantizer="fp",
        ste=None,
        ste_kwargs=None,
        use_bias: bool = True,
        kernel_init=default_kernel_init,
        bias_init=nnx.initializers.zeros_init(),
        rngs: nnx.Rngs,
    ):
        _check_features("QuantLinear", in_features, out_features)
        self.in_features = in_features
        self.out_features = out_features
        self.use_bias = use_bias
        self.kernel = nnx.Param(kernel_init(rngs.params(), (in_features, out_features), jnp.float32))
        self.bias = nnx.Param(bias_init(rngs.params(), (out_features,), jnp.float32)) if use_bias else None
        self._setup_quantizers(kernel_quantizer, input_quantizer, ste, ste_kwargs, rngs)

    def __call__(self, x):
        if x.shape[-1] != self.in_features:
            raise ValueError(f"QuantLinear expects {self.in_features} input features, got shape {x.shape}")
        xq, k = quantize_input(self.input_quantizer, x)
        y = jnp.dot(xq, self.quantized_kernel())
        if k is not None:
            y = y * k
        if self.bias is not None:
            y = y + self.bias[...]
        return y


def _pair(v, n=2):
    return (v,) * n if isinstance(v, int) else tuple(v)


class QuantConv(_Quantized):
    """2-D convolution (NHWC, HWIO kernel) with quantized weights and inputs."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: int | Sequence[int],
        strides: int | Sequence[int] = 1,
        *,
        padding="SAME",
        feature_group_count: int = 1,
        kernel_quantizer="fp",
        input_quantizer="fp",
        ste=None,
        ste_kwargs=None,
        pad_value: float = 1.0,
        use_bias: bool = True,
        kernel_init=default_kernel_init,
        bias_init=nnx.initializers.zeros_init(),
        rngs: nnx.Rngs,
    ):
        _check_features("QuantConv", in_features, out_features)
        self.in_features = in_features
        self.out_features = out_features
        self.kernel_size = _pair(kernel_size)
        self.strides = _pair(strides)
        self.padding = padding if isinstance(padding, str) else tuple(tuple(p) for p in padding)
        self.feature_group_count = feature_group_count
        self.pad_value = pad_value
        self.use_bias = use_bias
        shape = (*self.kernel_size, in_features // feature_group_count, out_features)
        self.kernel = nnx.Param(kernel_init(rngs.params(), shape, jnp.float32))
        self.bias = nnx.Param(bias_init(rngs.params(), (out_features,), jnp.float32)) if use_bias else None
        self._setup_quantizers(kernel_quantizer, input_quantizer, ste, ste_kwargs, rngs)

    def _border_term(self, spatial_shape, kernel, pads):
        """conv(B, W) for B = 1 on the padded border, 0 inside: what padding with 1 instead of 0 adds.

        Padding the binarized input explicitly costs a copy of every activation (and its gradient);
        this 1-channel convolution of the border mask with sum_c W is the same sum, far cheaper.
        """
        inside = jnp.ones((1, *spatial_shape, 1), kernel.dtype)
        border = 1.0 - jnp.pad(inside, [(0, 0), *pads, (0, 0)])
        return jax.lax.conv_general_dilated(
            border,
            jnp.sum(kernel, axis=2, keepdims=True),
            window_strides=self.strides,
            padding="VALID",
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )

    def explicit_padding(self, spatial_shape):
        """[(lo, hi), (lo, hi)] for the H and W axes."""
        if isinstance(self.padding, str):
            return jax.lax.padtype_to_pads(spatial_shape, self.kernel_size, self.strides, self.padding)
        return [tuple(p) for p in self.padding]

    def __call__(self, x):
        if x.ndim != 4 or x.shape[-1] != self.in_features:
            raise ValueError(f"QuantConv expects NHWC input with {self.in_features} channels, got shape {x.shape}")
        pads = self.explicit_padding(x.shape[1:3])
        xq, k = quantize_input(
            self.input_quantizer, x, kernel_size=self.kernel_size, strides=self.strides, padding=pads
        )
        kernel = self.quantized_kernel()
        pad_border = self.input_quantizer.is_binary and self.pad_value != 0 and any(map(any, pads))
        if pad_border and self.feature_group_count != 1:
            xq = jnp.pad(xq, [(0, 0), *pads, (0, 0)], constant_values=self.pad_value)
            pads, pad_border = [(0, 0), (0, 0)], False
        y = conv_general_dilated(  # XLA's, input materialized on the CPU (extremeq.nn.conv)
            xq,
            kernel,
            window_strides=self.strides,
            padding=pads,
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            feature_group_count=self.feature_group_count,
        )
        if pad_border:
            y = y + self.pad_value * self._border_term(x.shape[1:3], kernel, pads)
        if k is not None:
            y = y * k
        if self.bias is not None:
            y = y + self.bias[...]
        return y
