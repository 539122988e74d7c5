"""Weight-only low-bit matmul on GPU (Triton lowering): float x [M, K] times packed weights.

``y[m, n] = scale[n] * sum_k x[m, k] q[n, k]``, q decoded in registers slot by slot
(:mod:`extremeq.kernels.slots`); the x planes of one row tile stay resident while the K loop walks
``block_words`` words per step. Small-M grids split the K loop (``split_k``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from extremeq.kernels import common as C
from extremeq.kernels import tiles as T
from extremeq.kernels.slots import slot_product, x_planes

__all__ = ["weight_only_matmul_gpu"]


def _kernel(xp_ref, w_ref, s_ref, o_ref, *, decode, per_word, block_words, num_steps, compute_dtype, split):
    bm, bn = xp_ref.shape[1], w_ref.shape[0]  # xp_ref: [E, block_m, Wp], w_ref: [block_n, Wp]
    first = pl.program_id(2) * num_steps if split else 0

    def step(s, acc):
        start = pl.multiple_of((first + s) * block_words, block_words)
        sl = pl.ds(start, block_words)
        return slot_product(xp_ref, w_ref[:, sl], decode, per_word, acc, compute_dtype, sl)

    acc = lax.fori_loop(0, num_steps, step, jnp.zeros((bm, bn), jnp.float32))
    if split:  # float32 partial sums of this K range; the wrapper adds them and scales
        o_ref[0] = acc
    else:
        o_ref[...] = (acc * s_ref[...]).astype(o_ref.dtype)


@C.backend_jit(
    (
        "decode",
        "per_word",
        "name",
        "block_m",
        "block_n",
        "block_words",
        "num_warps",
        "num_stages",
        "split_k",
        "interpret",
    )
)
def weight_only_matmul_gpu(
    x2,
    w_words,
    scale,
    *,
    decode,
    per_word: int,
    name: str = "weight_only_matmul",
    block_m=None,
    block_n=None,
    block_words=None,
    num_warps=None,
    num_stages=None,
    split_k=None,
    interpret=False,
):
    """x2 [M, K] float, w_words [N, W] uint32, scale [N] -> [M, N] in x2.dtype.

    ``decode(words, i)`` -> slot i as int32 (:func:`extremeq.kernels.slots.decode_sign_slot` with
    ``per_word`` 32, ``decode_ternary_slot`` with 16). ``block_m`` is clamped by
    :func:`extremeq.kernels.tiles.gpu_block_m`; defaults :data:`~extremeq.kernels.tiles.WEIGHT_ONLY_GPU_DEFAULT`.
    """
    d = T.WEIGHT_ONLY_GPU_DEFAULT
    m, _ = x2.shape
    n, w = w_words.shape
    compute_dtype = jnp.bfloat16 if x2.dtype == jnp.bfloat16 else jnp.float32
    bm = T.gpu_block_m(block_m, m)
    bn = T.gpu_tile(block_n, n, d.block_n)
    bw = T.gpu_block_words(block_words)
    mp, np_ = C.round_up(m, bm), C.round_up(n, bn)
    split = T.gpu_split_k(split_k, (mp // bm) * (np_ // bn), -(-w // bw))
    wp = C.round_up(w, bw * split)
    xp = x_planes(x2, per_word, wp, mp)
    ww = C.pad_to(w_words, (np_, wp))  # zero words; x is zero there too, so they add nothing
    sc = C.pad_to(scale.astype(jnp.float32)[None, :], (1, np_))
    if split > 1:
        out_shape = jax.ShapeDtypeStruct((split, mp, np_), jnp.float32)
        out_specs = pl.BlockSpec((1, bm, bn), lambda i, j, s: (s, i, j))
    else:
        out_shape = jax.ShapeDtypeStruct((mp, np_), x2.dtype)
        out_specs = pl.BlockSpec((bm, bn), lambda i, j, s: (i, j))
    kernel = functools.partial(
        _kernel,
        decode=decode,
        per_word=per_word,
        block_words=bw,
        num_steps=wp // bw // split,
        compute_dtype=compute_dtype,
        split=split > 1,
    )
    if interpret:
        params = None
    else:
        from jax.experimental.pallas import triton as plt

        params = plt.CompilerParams(num_warps=num_warps or d.num_warps, num_stages=num_stages or d.num_stages)
    out = pl.pallas_call(
        kernel,
        out_shape=out_shape,
        grid=(mp // bm, np_ // bn, split),
        in_specs=[
            pl.BlockSpec((per_word, bm, wp), lambda i, j, s: (0, i, 0)),
            pl.BlockSpec((bn, wp), lambda i, j, s: (j, 0)),
            pl.BlockSpec((1, bn), lambda i, j, s: (0, j)),
        ],
        out_specs=out_specs,
        compiler_params=params,
        interpret=interpret,
        name=name,
    )(xp, ww, sc)
    if split > 1:
        out = (jnp.sum(out, axis=0) * sc).astype(x2.dtype)
    return out[:m, :n]
