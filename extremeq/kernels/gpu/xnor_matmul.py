"""XNOR-popcount matmul on GPU tensor cores (Triton lowering).

Both operands stay packed in HBM. A tile of ``block_words`` words per row is loaded, and for each
bit position j = 0..31 bit j of every word becomes a +-1 int8 slice; ``dot(A_j, B_j^T)``
accumulates on the int8 tensor cores (:func:`extremeq.kernels.slots.bit_slice_product`). Zero
padding words (equal in A and B) add +1 per padding bit, subtracted in the epilogue.
``block_words`` is the K of every int8 dot: it must be >= 32, because an int8 dot with K = 16
returned wrong numbers silently on an H100. Small-M grids split the K loop (``split_k``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from extremeq.kernels import common as C
from extremeq.kernels import tiles as T
from extremeq.kernels.slots import bit_slice_product, xnor_epilogue

__all__ = ["xnor_matmul_gpu"]


def _kernel(a_ref, b_ref, *refs, block_words, num_steps, pad_bits, slice_dtype, acc_dtype, split):
    *scale_refs, o_ref = refs
    bm, bn = a_ref.shape[0], b_ref.shape[0]  # a_ref: [block_m, Wp], b_ref: [block_n, Wp]
    first = pl.program_id(2) * num_steps if split else 0

    def step(s, acc):
        start = pl.multiple_of((first + s) * block_words, block_words)
        a = a_ref[:, pl.ds(start, block_words)]
        b = b_ref[:, pl.ds(start, block_words)]
        return acc + bit_slice_product(a, b, slice_dtype, acc_dtype)

    acc = lax.fori_loop(0, num_steps, step, jnp.zeros((bm, bn), acc_dtype))
    if split:  # partial sums of this K range; the wrapper adds them and applies the epilogue
        o_ref[0] = acc.astype(jnp.int32)
    else:
        xnor_epilogue(acc, pad_bits, scale_refs, o_ref)


@C.backend_jit(
    ("k", "block_m", "block_n", "block_words", "num_warps", "num_stages", "slice_dtype", "split_k", "interpret")
)
def xnor_matmul_gpu(
    a_bits,
    b_bits,
    alpha_x=None,
    alpha_w=None,
    *,
    k: int,
    block_m=None,
    block_n=None,
    block_words=None,
    num_warps=None,
    num_stages=None,
    slice_dtype=None,
    split_k=None,
    interpret=False,
):
    """a_bits [M, W], b_bits [N, W] uint32 -> int32 ``K - 2 popcount(A ^ B)`` [M, N], or float32
    ``C * alpha_x[:, None] * alpha_w[None, :]`` with scales. Tile options are keyword arguments
    (``None``: :data:`extremeq.kernels.tiles.XNOR_GPU_DEFAULT`); ``split_k``: K splits (None: auto)."""
    d = T.XNOR_GPU_DEFAULT
    m, w = a_bits.shape
    n = b_bits.shape[0]
    scaled = alpha_x is not None
    bm = T.gpu_tile(block_m, m, d.block_m)
    bn = T.gpu_tile(block_n, n, d.block_n)
    bw = T.gpu_block_words(block_words)
    slice_dtype = jnp.dtype(jnp.int8 if slice_dtype is None else slice_dtype)
    acc_dtype = jnp.int32 if jnp.issubdtype(slice_dtype, jnp.integer) else jnp.float32

    mp, np_ = C.round_up(m, bm), C.round_up(n, bn)
    split = T.gpu_split_k(split_k, (mp // bm) * (np_ // bn), -(-w // bw))
    wp = C.round_up(w, bw * split)
    operands = [C.pad_to(a_bits, (mp, wp)), C.pad_to(b_bits, (np_, wp))]
    pad_bits = C.WORD_BITS * wp - k  # equal (zero) bits in A and B: +1 each in the +-1 sum
    in_specs = [pl.BlockSpec((bm, wp), lambda i, j, s: (i, 0)), pl.BlockSpec((bn, wp), lambda i, j, s: (j, 0))]
    if scaled:
        alpha_x = C.pad_to(alpha_x.astype(jnp.float32)[:, None], (mp, 1))
        alpha_w = C.pad_to(alpha_w.astype(jnp.float32)[None, :], (1, np_))
    if split == 1:
        out_shape = jax.ShapeDtypeStruct((mp, np_), jnp.float32 if scaled else jnp.int32)
        out_specs = pl.BlockSpec((bm, bn), lambda i, j, s: (i, j))
        if scaled:
            operands += [alpha_x, alpha_w]
            in_specs += [pl.BlockSpec((bm, 1), lambda i, j, s: (i, 0)), pl.BlockSpec((1, bn), lambda i, j, s: (0, j))]
    else:
        out_shape = jax.ShapeDtypeStruct((split, mp, np_), jnp.int32)
        out_specs = pl.BlockSpec((1, bm, bn), lambda i, j, s: (s, i, j))
    kernel = functools.partial(
        _kernel,
        block_words=bw,
        num_steps=wp // bw // split,
        pad_bits=pad_bits,
        slice_dtype=slice_dtype,
        acc_dtype=acc_dtype,
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
        in_specs=in_specs,
        out_specs=out_specs,
        compiler_params=params,
        interpret=interpret,
        name="xnor_matmul",
    )(*operands)
    if split > 1:
        out = jnp.sum(out, axis=0) - jnp.int32(pad_bits)
        if scaled:
            out = out.astype(jnp.float32) * alpha_x * alpha_w
    return out[:m, :n]
