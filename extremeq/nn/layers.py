"""Flax NNX layers with quantized weights and inputs: QuantLinear, QuantConv.

Both keep a float *latent* kernel (``kernel``, same layout as ``nnx.Linear``
[in, out] and ``nnx.Conv`` HWIO) and compute, in the forward pass,

    y = (Q_in(x) (*) Q_w(W)) * K + b

where Q_w is the weight quantizer, Q_in the input quantizer, and K the XNOR-Net
input scale (1 for every input quantizer except "xnor"). ``(*)`` is a matmul
or a convolution. ``quantized_kernel()`` returns Q_w(W), the weights the
forward pass really multiplies with.

TTQ layers own two learned scalars ``ttq_wp`` and ``ttq_wn`` (initialised from
the latent weights, TTQ's fine-tuning start). A stochastic BinaryConnect layer
draws its noise from the ``quant`` stream of the layer's ``nnx.Rngs`` while
training, and uses the deterministic sign after ``model.eval()``.

Binary-input convolutions pad with ``pad_value`` *after* binarization (default
+1, i.e. sign(0)), as Larq's ``pad_values=1``: a packed 1-bit inference kernel
cannot represent the 0 that float zero-padding would insert.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from extremeq import quantizers as Q
from extremeq.nn.specs import QuantizerSpec, as_spec

default_kernel_init = nnx.initializers.lecun_normal()


def quantize_weight(spec: QuantizerSpec, w, *, w_p=None, w_n=None, key=None):
    """Q_w(W) for a weight spec (pure function; the layers call it)."""
    est = spec.estimator
    name = spec.name
    if name == "fp":
        return w
    if name == "bc":
        return Q.binary_connect(w, est)
    if name == "bc_stochastic":
        if key is None:  # evaluation
            if spec.option("eval", "sign") == "mean":
                # E[w_b] = 2 hard_sigmoid(w) - 1 = clip(w, -1, 1): BinaryConnect's test-time use of
                # the real-valued weights for the stochastic variant (Courbariaux et al. 2015, Sec. 2.6).
                return jnp.clip(w, -1.0, 1.0)
            return Q.binary_connect(w, est)  # the deployable net: deterministic sign
        return Q.binary_connect_stochastic(w, key, est)
    if name == "bwn":
        return Q.bwn(w, est, per_channel=spec.option("per_channel", True))
    if name == "twn":
        return Q.twn(w, est, per_channel=spec.option("per_channel", False))
    if name == "ttq":
        return Q.ttq(w, w_p, w_n, t=spec.option("t", Q.TTQ_THRESHOLD_FACTOR), estimator=est)
    if name == "bitnet":
        return Q.bitnet(w, est)
    if name == "int8":
        return Q.int8(w, est, per_channel=spec.option("per_channel", True))
    raise AssertionError(name)


def quantize_input(spec: QuantizerSpec, x, *, kernel_size=None, strides=1, padding="SAME"):
    """(Q_in(x), K) for an input spec; K is None unless the spec is "xnor"."""
    if spec.name == "fp":
        return x, None
    if spec.name == "sign":
        return Q.sign_activation(x, spec.estimator), None
    if spec.name == "xnor":
        return Q.xnor_activation(x, spec.estimator, kernel_size, strides, padding)
    if spec.name == "int8":
        return Q.int8_activation(x, spec.estimator), None
    raise AssertionError(spec.name)


class _Quantized(nnx.Module):
    """Shared state and logic: latent kernel, specs, TTQ scales, rng stream."""

    def _setup_quantizers(self, kernel_quantizer, input_quantizer, ste, ste_kwargs, rngs):
        self.kernel_quantizer = as_spec(kernel_quantizer, "weight", ste, ste_kwargs)
        self.input_quantizer = as_spec(input_quantizer, "input", ste, ste_kwargs)
        self.deterministic = False  # flipped by model.eval()/model.train()
        if self.kernel_quantizer.name == "ttq":
            w_p, w_n = Q.ttq_init_scales(self.kernel[...], self.kernel_quantizer.option("t", Q.TTQ_THRESHOLD_FACTOR))
            self.ttq_wp = nnx.Param(jnp.asarray(w_p, jnp.float32))
            self.ttq_wn = nnx.Param(jnp.asarray(w_n, jnp.float32))
        if self.kernel_quantizer.name == "bc_stochastic":
            if rngs is None or "quant" not in rngs:
                raise ValueError(
                    "a 'bc_stochastic' layer needs a 'quant' rng stream: pass rngs=nnx.Rngs(0, quant=1)"
                )
            self.quant_rngs = rngs.quant.fork() if hasattr(rngs.quant, "fork") else rngs.quant

    def quantized_kernel(self):
        """Q_w(W): the weights the forward pass multiplies with."""
        spec = self.kernel_quantizer
        key = None
        if spec.name == "bc_stochastic" and not self.deterministic:
            key = self.quant_rngs()
        w_p = self.ttq_wp[...] if spec.name == "ttq" else None
        w_n = self.ttq_wn[...] if spec.name == "ttq" else None
        return quantize_weight(spec, self.kernel[...], w_p=w_p, w_n=w_n, key=key)


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
            border, jnp.sum(kernel, axis=2, keepdims=True), window_strides=self.strides,
            padding="VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )

    def explicit_padding(self, spatial_shape):
        """[(lo, hi), (lo, hi)] for the H and W axes."""
        if isinstance(self.padding, str):
            return jax.lax.padtype_to_pads(spatial_shape, self.kernel_size, self.strides, self.padding)
        return [tuple(p) for p in self.padding]

    def __call__(self, x):
        if x.ndim != 4 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"QuantConv expects NHWC input with {self.in_features} channels, got shape {x.shape}"
            )
        pads = self.explicit_padding(x.shape[1:3])
        xq, k = quantize_input(
            self.input_quantizer, x, kernel_size=self.kernel_size, strides=self.strides, padding=pads
        )
        kernel = self.quantized_kernel()
        pad_border = self.input_quantizer.is_binary and self.pad_value != 0 and any(map(any, pads))
        if pad_border and self.feature_group_count != 1:
            xq = jnp.pad(xq, [(0, 0), *pads, (0, 0)], constant_values=self.pad_value)
            pads, pad_border = [(0, 0), (0, 0)], False
        y = jax.lax.conv_general_dilated(
            xq, kernel, window_strides=self.strides, padding=pads,
            dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=self.feature_group_count,
        )
        if pad_border:
            y = y + self.pad_value * self._border_term(x.shape[1:3], kernel, pads)
        if k is not None:
            y = y * k
        if self.bias is not None:
            y = y + self.bias[...]
        return y
