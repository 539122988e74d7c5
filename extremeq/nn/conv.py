"""The convolution every zoo and quantized layer trains with: XLA's, with its input materialized
once on the CPU.

XLA:CPU computes a convolution's filter gradient as a dot of transposed copies of the input and of
the output gradient, and its fusion pass duplicates the elementwise producers of that input (the
BatchNorm, ReLU and residual additions of the layers before) into the transposing copy, so every
filter gradient recomputes the chain behind it, blocks deep. The step profile of a CIFAR ResNet-20
(``experiments/profile_train.py``) spent about half of its time in those copies.

:func:`materialize` returns its input unchanged through an identity ``lax.cond`` on a runtime
predicate: fusion cannot cross a conditional, so the value is computed once and the copies read it.
It is a no-op on every other platform (``lax.platform_dependent``) and returns its input bit for bit
(unless its first element is NaN: then -0.0 entries come back as +0.0).
"""

from __future__ import annotations

import jax
from jax import lax

__all__ = ["MATERIALIZE_ON_CPU", "conv_general_dilated", "materialize"]

#: Read when a function is traced; False gives XLA's own fusion (benchmarks compare the two).
MATERIALIZE_ON_CPU = True


def _through_cond(x):
    probe = x.reshape(-1)[0] if x.size else None
    if probe is None:
        return x
    # x == x is False only when x's first element is NaN; that branch adds 0.0 (-0.0 becomes +0.0,
    # nothing else changes). Two identical branches would be merged and the effect lost.
    return lax.cond(probe == probe, lambda v: v, lambda v: v + 0.0, x)  # noqa: PLR0124


def materialize(x: jax.Array) -> jax.Array:
    """``x`` itself; on the CPU computed once, not recomputed inside each consumer's fusion."""
    if not MATERIALIZE_ON_CPU:
        return x
    return lax.platform_dependent(x, cpu=_through_cond, default=lambda v: v)


def conv_general_dilated(lhs, rhs, *args, **kwargs):
    """``jax.lax.conv_general_dilated`` of ``materialize(lhs)`` (same signature and result)."""
    return lax.conv_general_dilated(materialize(lhs), rhs, *args, **kwargs)
