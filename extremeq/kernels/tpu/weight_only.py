"""Weight-only low-bit matmul on TPU (Mosaic lowering): float x [M, K] times packed weights, slot by
slot (:mod:`extremeq.kernels.slots`) over a (M, N, K-steps) grid with a float32 VMEM accumulator."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from extremeq.kernels import common as C
from extremeq.kernels import tiles as T
from extremeq.kernels.slots import slot_product, x_planes

__all__ = ["weight_only_matmul_tpu"]


def _kernel(xp_ref, w_ref, s_ref, o_ref, acc_ref, *, decode, per_word, compute_dtype):
    s = pl.program_id(2)  # xp_ref: [E, block_m, block_words], w_ref: [block_n, block_words]

    @pl.when(s == 0)
    def _():
        acc_ref[...] = jnp.zeros_like(acc_ref)

    acc_ref[...] = slot_product(xp_ref, w_ref[...], decode, per_word, acc_ref[...], compute_dtype, None)

    @pl.when(s == pl.num_programs(2) - 1)
    def _():
        o_ref[...] = (acc_ref[...] * s_ref[...]).astype(o_ref.dtype)


@C.backend_jit(("decode", "per_word", "name", "block_m", "block_n", "block_words", "interpret"))
def weight_only_matmul_tpu(
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
    interpret=False,
):
    """x2 [M, K] float, w_words [N, W] uint32, scale [N] -> [M, N] in x2.dtype. Tiles: block_m a
    multiple of 8 (16 for bfloat16), block_n and block_words of 128."""
    from jax.experimental.pallas import tpu as pltpu

    d = T.WEIGHT_ONLY_TPU_DEFAULT
    m, _ = x2.shape
    n, w = w_words.shape
    compute_dtype = jnp.bfloat16 if x2.dtype == jnp.bfloat16 else jnp.float32
    bm = T.tpu_tile(block_m, m, d.block_m, 16 if compute_dtype == jnp.bfloat16 else 8, "block_m")
    bn = T.tpu_tile(block_n, n, d.block_n, 128, "block_n")
    bw = T.tpu_tile(block_words, w, d.block_words, 128, "block_words")
    mp, np_, wp = C.round_up(m, bm), C.round_up(n, bn), C.round_up(w, bw)
    kernel = functools.partial(_kernel, decode=decode, per_word=per_word, compute_dtype=compute_dtype)
    out = pl.pallas_call(
        kernel,
        out_shape=jax.ShapeDtypeStruct((mp, np_), x2.dtype),
        grid=(mp // bm, np_ // bn, wp // bw),
        in_specs=[
            pl.BlockSpec((per_word, bm, bw), lambda i, j, s: (0, i, s)),
            pl.BlockSpec((bn, bw), lambda i, j, s: (j, s)),
            pl.BlockSpec((1, bn), lambda i, j, s: (0, j)),
        ],
        out_specs=pl.BlockSpec((bm, bn), lambda i, j, s: (i, j)),
        scratch_shapes=[pltpu.VMEM((bm, bn), jnp.float32)],
        compiler_params=pltpu.CompilerParams(dimension_semantics=("parallel", "parallel", "arbitrary")),
        interpret=interpret,
        name=name,
    )(
        x_planes(x2, per_word, wp, mp),
        C.pad_to(w_words, (np_, wp)),
        C.pad_to(scale.astype(jnp.float32)[None, :], (1, np_)),
    )
    return out[:m, :n]
