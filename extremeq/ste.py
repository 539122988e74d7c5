"""Straight-through estimators (STE) as ``jax.custom_vjp`` pure functions.

Every estimator has the same forward pass, the sign function with sign(0) = +1::

    sign(x) = +1 if x >= 0 else -1

and differs only in the surrogate derivative used on the backward pass:

================  ============================================  =========================
name              d sign(x) / dx is replaced by                 source
================  ============================================  =========================
``ste``           1                                             Hinton (2012), Bengio (2013)
``clipped``       1 if |x| <= clip_value else 0                 BinaryNet (Hubara 2016)
``tanh``          beta * sech^2(beta x)                         tanh-smooth sign
``approx_sign``   2 - 2|x| if |x| <= 1 else 0                   Bi-Real Net (Liu 2018)
``swish_sign``    beta (2 - beta x tanh(beta x / 2))            BNN+ (Darabi 2018)
                  / (1 + cosh(beta x))
================  ============================================  =========================

An :class:`Estimator` is a small frozen (hashable) value, so it can be passed to
quantizers and stored on layers. ``est(x)`` is the binarization; ``est.grad(x)``
is the closed-form surrogate derivative; :func:`straight_through` applies any
forward quantization with that surrogate gradient (used for ternary and TTQ).
All of them work under ``jit``, ``grad`` and ``vmap``.

Non-finite values (the rule every quantizer of extremeq follows, so that a training run's NaN guard
sees a diverged weight or activation instead of a silently finite output): a NaN input gives NaN
output at its position (``sign(nan) = nan``, not -1); a statistic a quantizer takes over the whole
tensor (a scale, a threshold) that is NaN or infinite makes every output it touches NaN
(:func:`nan_where`). +-inf inputs quantize like large finite values where no statistic is involved
(``sign(+inf) = +1``).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

ESTIMATORS = ("ste", "clipped", "tanh", "approx_sign", "swish_sign")


def sign_bit(x):
    """True where sign(x) = +1, i.e. x >= 0 (sign(0) = +1): the bit a packed sign stores, and what
    the flip ratio compares."""
    return jnp.asarray(x) >= 0


def sign(x):
    """sign(x) with sign(0) = +1, in the dtype of ``x``; sign(nan) = nan.

    The one definition of the binarization every quantizer, layer and packed format uses
    (a packed bit is 1 exactly where ``sign(x) = +1``, :func:`sign_bit`).
    """
    x = jnp.asarray(x)
    s = jnp.where(sign_bit(x), 1, -1).astype(x.dtype)
    if jnp.issubdtype(x.dtype, jnp.floating):
        s = nan_where(jnp.isnan(x), s)
    return s


def nan_where(bad, x):
    """``x`` with NaN wherever ``bad`` (broadcast) is True: the non-finite rule of the module docstring."""
    return jnp.where(bad, jnp.asarray(jnp.nan, x.dtype), x)


@dataclasses.dataclass(frozen=True)
class Estimator:
    """A straight-through estimator: forward sign, backward ``grad(x)``.

    Attributes:
      name: one of ``ESTIMATORS``.
      clip_value: gradient window of ``clipped`` (|x| <= clip_value passes).
      beta: sharpness of ``tanh`` and ``swish_sign``.
    """

    name: str = "ste"
    clip_value: float = 1.0
    beta: float = 1.0

    def __post_init__(self):
        if self.name not in ESTIMATORS:
            raise ValueError(f"estimator {self.name!r} unknown; choose one of {', '.join(ESTIMATORS)}")
        if self.clip_value <= 0:
            raise ValueError(f"clip_value must be > 0, got {self.clip_value}")
        if self.beta <= 0:
            raise ValueError(f"beta must be > 0, got {self.beta}")

    def grad(self, x):
        """Closed-form surrogate derivative of sign at ``x``."""
        x = jnp.asarray(x)
        one = jnp.ones_like(x)
        if self.name == "ste":
            return one
        if self.name == "clipped":
            return jnp.where(jnp.abs(x) <= self.clip_value, one, 0 * one)
        if self.name == "tanh":
            return self.beta / jnp.cosh(self.beta * x) ** 2
        if self.name == "approx_sign":
            return jnp.where(jnp.abs(x) <= 1, 2 - 2 * jnp.abs(x), 0 * one)
        b = self.beta  # swish_sign
        return b * (2 - b * x * jnp.tanh(b * x / 2)) / (1 + jnp.cosh(b * x))

    def __call__(self, x):
        """sign(x) forward, ``grad(x)`` backward."""
        return straight_through(_sign_forward, self, x, None)


def _sign_forward(x, aux):
    del aux
    return sign(x)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def straight_through(forward, estimator: Estimator, x, aux):
    """``forward(x, aux)`` on the way in; ``g * estimator.grad(x)`` on the way back.

    ``aux`` (a pytree of arrays, or None) carries quantities the forward needs
    (a threshold, a key); it receives a zero cotangent, i.e. it is treated as a
    constant, as in the TWN and BinaryConnect papers.
    """
    return forward(x, aux)


def _straight_through_fwd(forward, estimator, x, aux):
    return forward(x, aux), (x, aux)


def _straight_through_bwd(forward, estimator, residuals, g):
    x, aux = residuals
    zero_aux = jax.tree_util.tree_map(_zero_cotangent, aux)
    return (g * estimator.grad(x).astype(g.dtype), zero_aux)


def _zero_cotangent(a):
    a = jnp.asarray(a)
    if jnp.issubdtype(a.dtype, jnp.floating) or jnp.issubdtype(a.dtype, jnp.complexfloating):
        return jnp.zeros_like(a)
    # Integer and key inputs take float0 cotangents.
    return jnp.zeros(a.shape, dtype=jax.dtypes.float0)


straight_through.defvjp(_straight_through_fwd, _straight_through_bwd)


def get_estimator(spec="ste", **kwargs) -> Estimator:
    """An :class:`Estimator` from a name (plus ``clip_value``/``beta``) or an Estimator."""
    if isinstance(spec, Estimator):
        if kwargs:
            return dataclasses.replace(spec, **kwargs)
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"estimator must be a name or an Estimator, got {type(spec).__name__}")
    if spec == "swish_sign" and "beta" not in kwargs:
        kwargs["beta"] = 5.0  # BNN+ / Larq default
    unknown = set(kwargs) - {"clip_value", "beta"}
    if unknown:
        raise ValueError(
            f"estimator {spec!r} got unknown parameter(s) {sorted(unknown)}; estimators take clip_value and beta"
        )
    return Estimator(spec, **kwargs)


# Convenience functions, one per estimator, in the style of Larq's quantizers.
def ste_sign(x):
    """sign(x); backward: 1 (plain straight-through)."""
    return Estimator("ste")(x)


def clipped_ste_sign(x, clip_value: float = 1.0):
    """sign(x); backward: 1 where |x| <= clip_value, else 0."""
    return Estimator("clipped", clip_value=clip_value)(x)


def tanh_sign(x, beta: float = 1.0):
    """sign(x); backward: beta * sech^2(beta x)."""
    return Estimator("tanh", beta=beta)(x)


def approx_sign(x):
    """sign(x); backward: 2 - 2|x| on |x| <= 1 (Bi-Real Net)."""
    return Estimator("approx_sign")(x)


def swish_sign(x, beta: float = 5.0):
    """sign(x); backward: beta (2 - beta x tanh(beta x / 2)) / (1 + cosh(beta x)) (BNN+)."""
    return Estimator("swish_sign", beta=beta)(x)
