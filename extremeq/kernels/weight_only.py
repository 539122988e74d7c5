"""Checks and dispatch shared by the weight-only entries (float activations, packed weights):
:func:`extremeq.kernels.binary_weight_matmul` and :func:`extremeq.kernels.ternary_weight_matmul`.

``y[m, n] = scale[n] * sum_k x[m, k] * q[n, k]``, q decoded from words packed along K. Paths:
``pallas`` / ``interpret`` (:mod:`extremeq.kernels.gpu.weight_only`,
:mod:`extremeq.kernels.tpu.weight_only`) and ``dot`` (:func:`extremeq.kernels.xla.weight_only_dot`).
"""

from __future__ import annotations

import math

import jax.numpy as jnp

from extremeq.kernels import common as C
from extremeq.kernels.backends import auto_tiles, check_backend, pallas_target, resolve
from extremeq.kernels.gpu.weight_only import weight_only_matmul_gpu
from extremeq.kernels.tpu.weight_only import weight_only_matmul_tpu
from extremeq.kernels.xla import weight_only_dot

__all__ = ["weight_only_matmul"]

WEIGHT_ONLY_BACKENDS = ("auto", "pallas", "interpret", "dot")


def weight_only_matmul(op, x, w_words, scale, *, per_word, decode, unpack, k, backend, block_kwargs):
    """Checks (dtype, words, the K contract, scale), backend choice, dispatch.

    ``decode(words, i)``: slot i in registers (Pallas); ``unpack(w_words, k, dtype)`` -> [N, K]
    (the XLA "dot" path); ``k``: the K the weights were packed from (None: x's K).
    """
    check_backend(backend, WEIGHT_ONLY_BACKENDS)
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{op}: x must be float (float32/bfloat16/float16), got dtype {x.dtype}.")
    C.check_words("w_words" if per_word == 16 else "w_bits", w_words)
    lead, kx = x.shape[:-1], x.shape[-1]
    n, w = w_words.shape
    C.check_k(op, kx, k, w, per_word)
    scale = C.check_scale("alpha", scale, n)
    shape = (math.prod(lead), n, kx)
    requested, backend = backend, resolve(op, backend, "weight_only_matmul", WEIGHT_ONLY_BACKENDS, shape)
    if block_kwargs and backend == "dot":
        raise ValueError(f"{op}: block options {sorted(block_kwargs)} apply only to Pallas backends.")
    block_kwargs = auto_tiles("weight_only_matmul", requested, block_kwargs, shape)
    x2 = x.reshape(math.prod(lead), kx)
    if backend in ("pallas", "interpret"):
        if pallas_target(backend) == "tpu":
            y = weight_only_matmul_tpu(x2, w_words, scale, decode=decode, per_word=per_word, name=op, **block_kwargs)
        else:
            y = weight_only_matmul_gpu(
                x2,
                w_words,
                scale,
                decode=decode,
                per_word=per_word,
                name=op,
                interpret=backend == "interpret",
                **block_kwargs,
            )
    else:
        y = weight_only_dot(x2, w_words, scale, unpack=unpack, k=kx)
    return y.reshape(*lead, n)
