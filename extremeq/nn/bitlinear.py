"""BitLinear: the linear layer of BitNet b1.58 (Ma et al., 2024) and of the original 1-bit BitNet
(Wang et al., 2023, "BitNet: Scaling 1-bit Transformers for Large Language Models").

Forward pass, for input x [..., K] and a latent float kernel W [K, N] (no bias)::

    x_n   = RMSNorm(x)                                  (learned per-feature scale)
    s     = max_k |x_n[..., k]| / 127                   one absmax scale per token (feature axis)
    c_x   = RoundClip(x_n / s, -127, 127)               8-bit activation codes
    c_W   = RoundClip(W / gamma, -1, 1),  gamma = mean|W| + eps       "bitnet" (b1.58, ternary)
            sign(W - mean(W)),            gamma = mean|W|             "bitnet_1bit" (1-bit)
    y     = ((c_x @ c_W) * gamma) * s

so ``y`` equals ``Q_8(x_n) @ Q_w(W)``, the fake-quantized product, but is computed with the scales
factored out: ``c_x @ c_W`` is a product of small integers, exact in float32 for K < 2^24 / 127, so
the packed decoder (2-bit or 1-bit words through ``ternary_weight_matmul`` / ``binary_weight_matmul``,
which return ``(c_x @ c_W) * gamma``) gives bit-identical outputs whatever order it sums in.

Gradients (straight-through, Bengio et al., 2013): rounding, clipping and sign pass the gradient
unchanged; the scales s, gamma and mean(W) are constants on the backward pass. Hence, with
g = dL/dy::

    dL/dW   = Q_8(x_n)^T g          (Q_8(x_n) = s c_x, the quantized input)
    dL/dx_n = g Q_w(W)^T            (Q_w(W) = gamma c_W), then back through the RMSNorm.

Weight quantizers reuse :mod:`extremeq.quantizers` (``bitnet`` absmean, ``bwn_scale``); the
per-token activation scale reuses ``int8_scale``.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
from flax import nnx

from extremeq import quantizers as Q
from extremeq.ste import get_estimator

#: BitLinear variants: weight format, bits per stored weight.
BITLINEAR_METHODS = {"bitnet": ("ternary", 2), "bitnet_1bit": ("binary", 1)}
ACTIVATION_BITS = 8
_DEFAULT_INIT = nnx.initializers.normal(0.02)  # GPT-2 / nanoGPT


def _check_method(method: str) -> str:
    if method not in BITLINEAR_METHODS:
        raise ValueError(f"BitLinear method {method!r} unknown; choose one of {', '.join(BITLINEAR_METHODS)}")
    return method


def activation_codes(x, estimator="ste"):
    """Per-token 8-bit absmax codes: (c, s) with c = RoundClip(x / s, -127, 127), s = max|x| / 127.

    The scale s is taken over the last (feature) axis, one per token, and is a constant on the
    backward pass; dc/dx = 1 / s (straight through the rounding). ``s * c`` is the quantized x.
    Formulas: ``Q.int8_scale`` and ``Q.int8_codes``.
    """
    s = jax.lax.stop_gradient(Q.int8_scale(x, axes=-1, keepdims=True))
    return Q.int8_codes(x, s, get_estimator(estimator)), s


def weight_codes(w, method: str = "bitnet", estimator="ste"):
    """(c_W, gamma) of a kernel: ternary absmean codes (b1.58) or centred signs (1-bit BitNet).

    ``bitnet``: c_W = RoundClip(W / gamma, -1, 1), gamma = mean|W| + eps (``Q.bitnet_codes``;
    ``gamma * c_W`` is ``Q.bitnet(W)``). ``bitnet_1bit``: c_W = sign(W - mean(W)) (sign(0) = +1),
    gamma = mean|W| per tensor (``Q.bitnet_1bit_codes``), Wang et al. (2023), Eq. 1-3. The codes
    are exact integers (no division by gamma after the rounding), so products with them are exact;
    the gradient goes straight through with the scales held constant.
    """
    _check_method(method)
    if method == "bitnet":
        return Q.bitnet_codes(w, estimator=get_estimator(estimator))
    return Q.bitnet_1bit_codes(w, get_estimator(estimator))


def bitlinear_output(c_x, s, product_with_gamma):
    """y = ((c_x @ c_W) * gamma) * s: the one place the scales are applied, for both the training
    graph and the packed decoder (``product_with_gamma(c_x)`` returns ``(c_x @ c_W) * gamma``)."""
    return product_with_gamma(c_x) * s


class BitLinear(nnx.Module):
    """y = Q_8(RMSNorm(x)) @ Q_w(W), no bias; ``method`` "bitnet" (ternary) or "bitnet_1bit"."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        method: str = "bitnet",
        ste="ste",
        kernel_init=_DEFAULT_INIT,
        norm_epsilon: float = 1e-6,
        rngs: nnx.Rngs,
    ):
        self.in_features = in_features
        self.out_features = out_features
        self.method = _check_method(method)
        self.ste = get_estimator(ste)
        self.kernel = nnx.Param(kernel_init(rngs.params(), (in_features, out_features), jnp.float32))
        self.norm = nnx.RMSNorm(in_features, epsilon=norm_epsilon, rngs=rngs)

    @property
    def weight_bits(self) -> int:
        return BITLINEAR_METHODS[self.method][1]

    def quantized_kernel(self):
        """Q_w(W) = gamma * c_W, the weights the forward pass multiplies with."""
        codes, gamma = weight_codes(self.kernel[...], self.method, self.ste)
        return codes * gamma

    def __call__(self, x):
        if x.shape[-1] != self.in_features:
            raise ValueError(f"BitLinear expects {self.in_features} input features, got shape {x.shape}")
        c_x, s = activation_codes(self.norm(x), self.ste)
        codes, gamma = weight_codes(self.kernel[...], self.method, self.ste)
        return bitlinear_output(c_x, s, lambda c: jnp.dot(c, codes) * gamma)


def bitlinear_from_linear(
    layer, method: str = "bitnet", ste="ste", rngs: nnx.Rngs | None = None, name: str = ""
) -> BitLinear:
    """A :class:`BitLinear` with the kernel of ``layer`` (an ``nnx.Linear``); the conversion that
    ``quantize_model``'s ``{"bitlinear": method}`` rules and :func:`to_bitlinear` apply. Biases are
    dropped (BitNet has none), so a Linear with a nonzero bias is refused."""
    _check_method(method)
    if not isinstance(layer, nnx.Linear):
        raise TypeError(
            f"{name or 'layer'} is a {type(layer).__name__}; a {{'bitlinear': ...}} rule converts "
            "nnx.Linear layers only: match it with another rule (or None to keep it)"
        )
    if layer.bias is not None and bool(jnp.any(layer.bias[...] != 0)):
        raise ValueError(
            f"{name or 'layer'} has a nonzero bias, which BitLinear does not have; exclude it "
            "(a None rule, or to_bitlinear's exclude=...) or train it with use_bias=False."
        )
    new = BitLinear(layer.in_features, layer.out_features, method=method, ste=ste, rngs=rngs or nnx.Rngs(0))
    new.kernel[...] = layer.kernel[...]
    return new


def to_bitlinear(
    model,
    pattern: str = ".*",
    method: str = "bitnet",
    ste="ste",
    exclude: str | None = None,
    rngs: nnx.Rngs | None = None,
) -> list[str]:
    """Swap the ``nnx.Linear`` layers of ``model`` whose path ("/"-joined) fully matches ``pattern``
    (and not ``exclude``) for :class:`BitLinear` in place, keeping their kernels. Biases are
    dropped (BitNet has none): a Linear with a nonzero bias is refused. Returns the replaced paths.

    The same as ``quantize_model(model, [(exclude, None), (pattern, {"bitlinear": method})])``
    restricted to Linear layers (which is what it calls).
    """
    # policy imports this module, so this import waits for the call
    from extremeq.nn.policy import path_string, quantize_model

    _check_method(method)
    want, skip = re.compile(pattern), re.compile(exclude) if exclude else None
    names = [
        path_string(path)
        for path, module in nnx.iter_modules(model)
        if path
        and isinstance(module, nnx.Linear)
        and want.fullmatch(path_string(path))
        and not (skip and skip.fullmatch(path_string(path)))
    ]
    rules = [(re.escape(n), {"bitlinear": method, "ste": ste}) for n in names]
    return quantize_model(model, rules, rngs=rngs or nnx.Rngs(0)) if rules else []
