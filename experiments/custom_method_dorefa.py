"""A method of your own in one file: DoReFa-Net's k-bit weights (Zhou et al. 2016, arXiv:1606.06160, eq. 9).

    r   = tanh(w) / (2 max|tanh(w)|) + 1/2                 in [0, 1]
    w_k = 2 quantize_k(r) - 1,  quantize_k(r) = round((2^k - 1) r) / (2^k - 1)

The rounding passes the gradient straight through (the method's estimator, ``ste`` by default), so
dw_k/dw is the derivative of 2 r(w) - 1. The stored integers are the odd codes
c = 2 round((2^k - 1) r) - (2^k - 1) in [-(2^k - 1), 2^k - 1], w_k = alpha c with the constant
alpha = 1 / (2^k - 1): k bits a weight.

Importing this file registers the weight quantizers ``dorefa2`` and ``dorefa4`` and the methods of the
same names (k-bit weights, float inputs); nothing in ``extremeq`` is edited:

    import custom_method_dorefa  # noqa: F401  (registers the methods)
    quantize_model(model, method_rules("dorefa4"))
    print(summary(model, x))      # 4-bit params, "4-bit" MACs

or ``config.quant.method = "dorefa4"`` for ``extremeq.train`` (a config file that imports this one, for
the command line), then ``extremeq.export`` (README, "Adding a method").
"""

from __future__ import annotations

import jax.numpy as jnp

from extremeq import methods
from extremeq.ste import get_estimator, straight_through


def dorefa_codes_of(x, levels):
    """c = 2 round(levels (x + 1) / 2) - levels for x = 2 r - 1 in [-1, 1]: the odd integer codes."""
    return 2 * jnp.round(levels * (x + 1) / 2) - levels


def _dorefa_forward(x, levels):
    return dorefa_codes_of(x, levels) * (1 / levels)  # codes * alpha, alpha = 1 / (2^k - 1)


def dorefa_input(w):
    """x = 2 r - 1 = tanh(w) / max|tanh(w)|, the value the rounding quantizes (in [-1, 1])."""
    t = jnp.tanh(w)
    return t / jnp.max(jnp.abs(t))


def dorefa_weights(w, k: int, estimator="ste"):
    """w_k of DoReFa-Net with k-bit weights (the module docstring), straight-through rounding."""
    levels = jnp.asarray(2**k - 1, w.dtype)
    return straight_through(_dorefa_forward, get_estimator(estimator), dorefa_input(w), levels)


def _entries(k: int):
    levels = 2**k - 1

    def forward(w, spec, *, scales, key):
        del scales, key
        return dorefa_weights(w, k, spec.estimator)

    def encode(w, spec, scales):
        del scales
        alpha = 1 / jnp.asarray(levels, w.dtype)
        return methods.QArray(dorefa_codes_of(dorefa_input(w), levels), {"alpha": alpha}, spec.name)

    name = f"dorefa{k}"
    return (  # decode: the default codes * alpha; packing: the default "codes" (k-bit codebook indices + alpha)
        methods.WeightMethod(
            name=name, bits=k, precision=f"{k}-bit", forward=forward, encode=encode, doc=f"DoReFa-Net {k}-bit weights"
        ),
        methods.Method(name=name, kernel=name, input="fp", doc=f"DoReFa-Net, {k}-bit weights, float inputs"),
    )


methods.register(*_entries(2), *_entries(4))
