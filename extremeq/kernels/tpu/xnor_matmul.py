"""XNOR-popcount matmul on the TPU MXU (Mosaic lowering).

The bit-slice product of :mod:`extremeq.kernels.slots` over a (M, N, K-steps) grid with a VMEM
accumulator; bf16 +-1 slices by default (exact: the f32 accumulator holds integers below 2^24).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from extremeq.kernels import common as C
from extremeq.kernels import tiles as T
from extremeq.kernels.slots import bit_slice_product, xnor_epilogue

__all__ = ["xnor_matmul_tpu"]


def _kernel(a_ref, b_ref, *refs, pad_bits, slice_dtype, acc_dtype):
    *scale_refs, o_ref, acc_ref = refs  # a_ref: [block_m, block_words], b_ref: [block_n, block_words]
    s = pl.program_id(2)

    @pl.when(s == 0)
    def _():
        acc_ref[...] = jnp.zeros_like(acc_ref)

    acc_ref[...] += bit_slice_product(a_ref[...], b_ref[...], slice_dtype, acc_dtype)

    @pl.when(s == pl.num_programs(2) - 1)
    def _():
        xnor_epilogue(acc_ref[...], pad_bits, scale_refs, o_ref)


@C.backend_jit(("k", "block_m", "block_n", "block_words", "slice_dtype", "interpret"))
def xnor_matmul_tpu(
    a_bits,
    b_bits,
    alpha_x=None,
    alpha_w=None,
    *,
    k: int,
    block_m=None,
    block_n=None,
    block_words=None,
    slice_dtype=None,
    interpret=False,
):
    """a_bits [M, W], b_bits [N, W] uint32 -> int32 ``K - 2 popcount(A ^ B)`` [M, N], or float32
    with scales. Tiles: ``block_m % 8 == 0``, ``block_n``, ``block_words`` multiples of 128
    (defaults :data:`extremeq.kernels.tiles.XNOR_TPU_DEFAULT`)."""
    from jax.experimental.pallas import tpu as pltpu

    d = T.XNOR_TPU_DEFAULT
    m, w = a_bits.shape
    n = b_bits.shape[0]
    scaled = alpha_x is not None
    bm = T.tpu_tile(block_m, m, d.block_m, 8, "block_m")
    bn = T.tpu_tile(block_n, n, d.block_n, 128, "block_n")
    bw = T.tpu_tile(block_words, w, d.block_words, 128, "block_words")
    slice_dtype = jnp.dtype(jnp.bfloat16 if slice_dtype is None else slice_dtype)
    acc_dtype = jnp.int32 if jnp.issubdtype(slice_dtype, jnp.integer) else jnp.float32
    mp, np_, wp = C.round_up(m, bm), C.round_up(n, bn), C.round_up(w, bw)
    operands = [C.pad_to(a_bits, (mp, wp)), C.pad_to(b_bits, (np_, wp))]
    in_specs = [pl.BlockSpec((bm, bw), lambda i, j, s: (i, s)), pl.BlockSpec((bn, bw), lambda i, j, s: (j, s))]
    if scaled:
        operands += [
            C.pad_to(alpha_x.astype(jnp.float32)[:, None], (mp, 1)),
            C.pad_to(alpha_w.astype(jnp.float32)[None, :], (1, np_)),
        ]
        in_specs += [pl.BlockSpec((bm, 1), lambda i, j, s: (i, 0)), pl.BlockSpec((1, bn), lambda i, j, s: (0, j))]
    kernel = functools.partial(_kernel, pad_bits=C.WORD_BITS * wp - k, slice_dtype=slice_dtype, acc_dtype=acc_dtype)
    out = pl.pallas_call(
        kernel,
        out_shape=jax.ShapeDtypeStruct((mp, np_), jnp.float32 if scaled else jnp.int32),
        grid=(mp // bm, np_ // bn, wp // bw),
        in_specs=in_specs,
        out_specs=pl.BlockSpec((bm, bn), lambda i, j, s: (i, j)),
        scratch_shapes=[pltpu.VMEM((bm, bn), acc_dtype)],
        compiler_params=pltpu.CompilerParams(dimension_semantics=("parallel", "parallel", "arbitrary")),
        interpret=interpret,
        name="xnor_matmul",
    )(*operands)
    return out[:m, :n]
