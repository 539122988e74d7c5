"""Shared plumbing of the kernels: input checks (the K contract), padding, the jit wrapper.

Nothing here knows about models; every function takes and returns arrays.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

WORD_BITS = 32


def check_words(name: str, words, ndim: int = 2):
    """uint32 words of rank ``ndim``, else a TypeError/ValueError saying how to get them."""
    dtype = getattr(words, "dtype", None)
    if dtype != jnp.uint32:
        raise TypeError(
            f"{name} must hold uint32 words (from extremeq.packing.pack_signs / pack_ternary), got dtype {dtype}."
        )
    if words.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {words.shape}.")


def check_scale(name: str, scale, length: int):
    scale = jnp.asarray(scale)
    if not jnp.issubdtype(scale.dtype, jnp.floating):
        raise TypeError(f"{name} must be a float array, got dtype {scale.dtype}.")
    if scale.ndim == 0:
        return jnp.broadcast_to(scale, (length,))
    if scale.shape != (length,):
        raise ValueError(f"{name} must have shape ({length},) (or be a scalar), got {scale.shape}.")
    return scale


def check_k(op: str, x_k: int, k, words: int, per_word: int) -> int:
    """The K contract of an entry with float inputs [..., K] and packed weights [N, W].

    ``k`` is the K the weights were packed from (None: take x's K, the caller vouches for it).
    Words carry no length, so K = 40 against weights packed from K = 33 (both 2 words) is caught
    only through ``k``: x's K must equal it, and ``ceil(K / per_word)`` must equal W.
    """
    if k is not None and int(k) != x_k:
        raise ValueError(
            f"{op}: x has K={x_k} but the weights were packed from k={int(k)}; "
            "the inputs must have exactly the K the weights were packed from."
        )
    need = -(-x_k // per_word)
    if words != need:
        raise ValueError(
            f"{op}: x has K={x_k}, which packs into ceil(K/{per_word}) = {need} words per output "
            f"channel, but the weights have {words}. Pack the weights along K (rows = output channels)."
        )
    return x_k


def mask_padding_bits(words, k: int, bits_per_element: int = 1):
    """Zero the bits past element ``k`` in the last word of every row (``words``: [..., W]).

    pack_signs / pack_ternary already write 0 there; masking again makes the
    kernels correct for words from any other source.
    """
    used = (k * bits_per_element) % WORD_BITS
    if used == 0:
        return words
    mask = jnp.uint32((1 << used) - 1)
    return words.at[..., -1].set(words[..., -1] & mask)


def pad_to(x, shape):
    """Zero-pad ``x`` at the end of every axis up to ``shape``."""
    pads = [(0, t - s) for s, t in zip(x.shape, shape)]
    if all(p == (0, 0) for p in pads):
        return x
    return jnp.pad(x, pads)


def round_up(n: int, m: int) -> int:
    return -(-n // m) * m


# The interpreter exists for tests on CPU; its programs are tiny, and XLA's optimising
# passes over 32 unrolled bit-slice dots cost more than running them (about 2x compile time).
INTERPRET_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}


def backend_jit(static_argnames):
    """``jax.jit`` that compiles cheaply when called with ``backend="interpret"`` or
    ``interpret=True`` and normally otherwise."""

    def wrap(fn):
        fast = jax.jit(fn, static_argnames=static_argnames)
        cheap = jax.jit(fn, static_argnames=static_argnames, compiler_options=INTERPRET_COMPILER_OPTIONS)

        @functools.wraps(fn)
        def run(*args, **kwargs):
            interp = kwargs.get("backend") == "interpret" or kwargs.get("interpret") is True
            nested = any(isinstance(v, jax.core.Tracer) for v in jax.tree_util.tree_leaves((args, kwargs)))
            return (cheap if interp and not nested else fast)(*args, **kwargs)

        return run

    return wrap
