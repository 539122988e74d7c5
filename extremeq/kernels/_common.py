"""Shared plumbing for the kernels: backend choice, input checks, padding.

Nothing here knows about models; every function takes and returns arrays.
"""

from __future__ import annotations

import functools
import warnings

import jax
import jax.numpy as jnp

WORD_BITS = 32

#: Backends every public kernel function understands.
#:  * ``"auto"``: the fastest path measured for the current platform (see BENCHMARKS.md).
#:  * ``"pallas"``: the fused Pallas kernel (Triton lowering on GPU, Mosaic on TPU).
#:  * ``"interpret"``: the same Pallas kernel body run by the Pallas interpreter (CPU tests).
#:  * ``"xla_popcount"``: XOR + ``lax.population_count`` in plain XLA (XNOR kernels only).
#:  * ``"dot"``: unpack the bits to +-1 (or ternary) values in XLA, then one ``dot_general``.
BACKENDS = ("auto", "pallas", "interpret", "xla_popcount", "dot")


class KernelFallbackWarning(UserWarning):
    """A requested backend could not run this call; another backend was used instead."""


def platform() -> str:
    """``"cpu"``, ``"gpu"`` or ``"tpu"``: the platform of the default device."""
    p = jax.default_backend()
    return "gpu" if p in ("cuda", "rocm", "gpu") else p


def check_backend(backend: str, allowed=BACKENDS) -> str:
    if backend not in allowed:
        raise ValueError(f"backend {backend!r} unknown; choose one of {', '.join(map(repr, allowed))}.")
    return backend


def fallback(op: str, requested: str, used: str, why: str) -> str:
    warnings.warn(
        f"{op}: backend {requested!r} cannot run this call ({why}); using {used!r} instead.",
        KernelFallbackWarning,
        stacklevel=3,
    )
    return used


def check_words(name: str, words, ndim: int = 2):
    """uint32 words of rank ``ndim``, else a TypeError/ValueError saying how to get them."""
    dtype = getattr(words, "dtype", None)
    if dtype != jnp.uint32:
        raise TypeError(
            f"{name} must hold uint32 words (from extremeq.packing.pack_signs / pack_ternary), "
            f"got dtype {dtype}."
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


def is_power_of_2(n: int) -> bool:
    return n > 0 and (n & (n - 1)) == 0


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


def gpu_split_k(split_k, programs: int, num_steps: int, target_programs: int = 256) -> int:
    """K splits for a GPU grid of ``programs`` output tiles with ``num_steps`` K steps each.

    Small-M shapes (decoding, batch-1 inference) give too few output tiles to fill a GPU
    (an H100 has 132 SMs), so the K loop is split over extra programs whose partial sums
    are added afterwards. ``split_k=None`` picks the largest power of two that brings the
    grid to about ``target_programs`` without exceeding ``num_steps``.
    """
    if split_k is not None:
        if int(split_k) < 1:
            raise ValueError(f"split_k must be >= 1, got {split_k}.")
        return min(int(split_k), num_steps)
    s = 1
    while programs * s * 2 <= target_programs and s * 2 <= num_steps:
        s *= 2
    return s
