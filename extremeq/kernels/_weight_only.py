"""Shared Pallas wrapper for weight-only low-bit matmuls (float activations, packed weights).

``y[m, n] = scale[n] * sum_k x[m, k] * q[n, k]`` where ``q`` is decoded from words
``w[n, j]`` packed along K, ``E`` elements per word (32 signs or 16 ternary codes);
element ``k = E*j + i`` lives in word ``j`` at slot ``i``.

The kernel never writes the decoded weights out. The sum over K is regrouped by slot:

    sum_k x[m, k] q[n, k] = sum_{i<E} sum_j x[m, E*j + i] * q_i[n, j]

so for each slot ``i`` one decodes ``q_i`` (slot ``i`` of every word in the tile, a
shift and a mask: no reshape, which the Triton lowering handles poorly) and takes a
dot with the slot-``i`` plane of ``x``. The wrapper lays ``x`` out as planes
``x_planes[i, m, j] = x[m, E*j + i]`` once (a pass over the activations, which are
small next to the weights in the weight-bound regime this kernel is for).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from extremeq.kernels import _common as C


#: GPU tiles the tests check one by one and the benchmark times (first = default for small M).
GPU_TILE_CONFIGS = (
    dict(block_m=16, block_n=128, block_words=32, num_warps=4, num_stages=3),
    dict(block_m=16, block_n=64, block_words=64, num_warps=4, num_stages=3),
    dict(block_m=64, block_n=128, block_words=32, num_warps=4, num_stages=3),
    dict(block_m=128, block_n=128, block_words=32, num_warps=8, num_stages=3),
)


def x_planes(x2, per_word: int, wp: int, mp: int):
    """x [M, K] -> [E, Mp, Wp] with ``out[i, m, j] = x[m, E*j + i]`` (zero padded)."""
    m, k = x2.shape
    x2 = C.pad_to(x2, (mp, wp * per_word))
    return x2.reshape(mp, wp, per_word).transpose(2, 0, 1)


def _accumulate(x_plane_ref, w, decode, per_word, acc, compute_dtype, s_slice):
    for i in range(per_word):
        xi = x_plane_ref[i, :, s_slice] if s_slice is not None else x_plane_ref[i]
        qi = decode(w, i).astype(compute_dtype)
        # float32 operands: full-precision products (a GPU's default f32 dot rounds inputs to TF32,
        # which failed the float32 tests on an H100).
        precision = lax.Precision.HIGHEST if compute_dtype == jnp.float32 else None
        acc = acc + lax.dot_general(xi.astype(compute_dtype), qi, (((1,), (1,)), ((), ())),
                                    precision=precision, preferred_element_type=jnp.float32)
    return acc


def _kernel_gpu(xp_ref, w_ref, s_ref, o_ref, *, decode, per_word, block_words, num_steps,
                compute_dtype, split):
    bm, bn = xp_ref.shape[1], w_ref.shape[0]
    first = pl.program_id(2) * num_steps if split else 0

    def step(s, acc):
        start = pl.multiple_of((first + s) * block_words, block_words)
        sl = pl.ds(start, block_words)
        return _accumulate(xp_ref, w_ref[:, sl], decode, per_word, acc, compute_dtype, sl)

    acc = lax.fori_loop(0, num_steps, step, jnp.zeros((bm, bn), jnp.float32))
    if split:  # float32 partial sums of this K range; the wrapper adds them and scales
        o_ref[0] = acc
    else:
        o_ref[...] = (acc * s_ref[...]).astype(o_ref.dtype)


def _kernel_tpu(xp_ref, w_ref, s_ref, o_ref, acc_ref, *, decode, per_word, compute_dtype):
    s = pl.program_id(2)

    @pl.when(s == 0)
    def _():
        acc_ref[...] = jnp.zeros_like(acc_ref)

    acc_ref[...] = _accumulate(xp_ref, w_ref[...], decode, per_word, acc_ref[...], compute_dtype,
                               None)

    @pl.when(s == pl.num_programs(2) - 1)
    def _():
        o_ref[...] = (acc_ref[...] * s_ref[...]).astype(o_ref.dtype)


def _gpu_tile(requested, size, default):
    t = default if requested is None else requested
    if not C.is_power_of_2(t) or t < 16:
        raise ValueError(f"GPU block sizes must be powers of two >= 16, got {t}.")
    if requested is None:
        t = min(t, max(16, pl.next_power_of_2(size)))
    return t


def gpu_block_m(requested, m: int) -> int:
    """The block_m the GPU kernel runs for ``m`` rows: the requested tile (default 64) clamped to
    max(16, next power of two >= m). At M = 1, block_m 64 and 128 gave wrong ternary results on an
    H100 (jax 0.11.2, K = 1285) while 16 was exact; a larger block adds only padding rows."""
    return min(_gpu_tile(requested, m, 64), max(16, pl.next_power_of_2(m)))


@C.backend_jit(("decode", "per_word", "name", "block_m", "block_n", "block_words",
                 "num_warps", "num_stages", "split_k", "target", "interpret"))
def weight_only_matmul_pallas(x2, w_words, scale, *, decode, per_word: int, name: str,
                              block_m=None, block_n=None, block_words=None, num_warps: int = 4,
                              num_stages: int = 3, split_k=None, target: str = "gpu",
                              interpret=False):
    """x2 [M, K] float, w_words [N, W] uint32, scale [N] -> [M, N] in x2.dtype.

    Tile options are keyword arguments; ``split_k`` (GPU) splits the K loop over that many
    programs whose float32 partial sums are added afterwards (None: automatic, for small M). On a
    GPU ``block_m`` is clamped by :func:`gpu_block_m`.
    """
    m, k = x2.shape
    n, w = w_words.shape
    compute_dtype = jnp.bfloat16 if x2.dtype == jnp.bfloat16 else jnp.float32
    if target == "gpu":
        bm = gpu_block_m(block_m, m)
        bn = _gpu_tile(block_n, n, 128)
        bw = 32 if block_words is None else block_words
        if bw < 32 or not C.is_power_of_2(bw):
            raise ValueError(f"block_words={bw}: the GPU kernel needs a power of two >= 32 "
                             "(the K of each dot; small-K dots were silently wrong on an H100).")
    elif target == "tpu":
        sub = 16 if compute_dtype == jnp.bfloat16 else 8
        bm = min(256 if block_m is None else block_m, C.round_up(m, sub))
        bn = min(256 if block_n is None else block_n, C.round_up(n, 128))
        bw = 128 if block_words is None else block_words
        if bm % sub or bn % 128 or bw % 128:
            raise ValueError(f"TPU tiles need block_m % {sub} == 0 and block_n, block_words % 128 "
                             f"== 0; got {bm}, {bn}, {bw}.")
    else:
        raise ValueError(f"target {target!r} unknown; choose 'gpu' or 'tpu'.")

    mp, np_ = C.round_up(m, bm), C.round_up(n, bn)
    split = 1
    if target == "gpu":
        split = C.gpu_split_k(split_k, (mp // bm) * (np_ // bn), -(-w // bw))
    wp = C.round_up(w, bw * split)
    xp = x_planes(x2, per_word, wp, mp)
    ww = C.pad_to(w_words, (np_, wp))  # zero words; x is zero there too, so they add nothing
    sc = C.pad_to(scale.astype(jnp.float32)[None, :], (1, np_))
    out_shape = jax.ShapeDtypeStruct((mp, np_), x2.dtype)

    if target == "gpu":
        from jax.experimental.pallas import triton as plt

        kernel = functools.partial(_kernel_gpu, decode=decode, per_word=per_word, block_words=bw,
                                   num_steps=wp // bw // split, compute_dtype=compute_dtype,
                                   split=split > 1)
        if split > 1:
            out_shape = jax.ShapeDtypeStruct((split, mp, np_), jnp.float32)
            out_specs = pl.BlockSpec((1, bm, bn), lambda i, j, s: (s, i, j))
        else:
            out_specs = pl.BlockSpec((bm, bn), lambda i, j, s: (i, j))
        out = pl.pallas_call(
            kernel, out_shape=out_shape, grid=(mp // bm, np_ // bn, split),
            in_specs=[pl.BlockSpec((per_word, bm, wp), lambda i, j, s: (0, i, 0)),
                      pl.BlockSpec((bn, wp), lambda i, j, s: (j, 0)),
                      pl.BlockSpec((1, bn), lambda i, j, s: (0, j))],
            out_specs=out_specs,
            compiler_params=None if interpret else plt.CompilerParams(num_warps=num_warps,
                                                                      num_stages=num_stages),
            interpret=interpret, name=name,
        )(xp, ww, sc)
        if split > 1:
            out = (jnp.sum(out, axis=0) * sc).astype(x2.dtype)
    else:
        from jax.experimental.pallas import tpu as pltpu

        kernel = functools.partial(_kernel_tpu, decode=decode, per_word=per_word,
                                   compute_dtype=compute_dtype)
        out = pl.pallas_call(
            kernel, out_shape=out_shape, grid=(mp // bm, np_ // bn, wp // bw),
            in_specs=[pl.BlockSpec((per_word, bm, bw), lambda i, j, s: (0, i, s)),
                      pl.BlockSpec((bn, bw), lambda i, j, s: (j, s)),
                      pl.BlockSpec((1, bn), lambda i, j, s: (0, j))],
            out_specs=pl.BlockSpec((bm, bn), lambda i, j, s: (i, j)),
            scratch_shapes=[pltpu.VMEM((bm, bn), jnp.float32)],
            compiler_params=pltpu.CompilerParams(
                dimension_semantics=("parallel", "parallel", "arbitrary")),
            interpret=interpret, name=name,
        )(xp, ww, sc)
    return out[:m, :n]


def weight_only_matmul(op, x, w_words, scale, *, per_word, decode, unpack, backend, block_kwargs):
    """Checks, backend choice and dispatch shared by binary/ternary_weight_matmul.

    ``unpack(w_words, k, dtype)`` -> [N, K] decoded weights (the XLA "dot" path).
    """
    C.check_backend(backend, ("auto", "pallas", "interpret", "dot"))
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{op}: x must be float (float32/bfloat16/float16), got dtype {x.dtype}.")
    C.check_words("w_words" if per_word == 16 else "w_bits", w_words)
    lead, k = x.shape[:-1], x.shape[-1]
    n, w = w_words.shape
    need = -(-k // per_word)
    if w != need:
        raise ValueError(
            f"{op}: x has K={k}, which packs into ceil(K/{per_word}) = {need} words per output "
            f"channel, but the weights have {w}. Pack the weights along K (rows = output channels)."
        )
    scale = C.check_scale("alpha", scale, n)
    x2 = x.reshape(math.prod(lead), k)
    plat = C.platform()
    if backend == "auto":
        backend = "pallas" if plat in ("gpu", "tpu") else "dot"
    elif backend == "pallas" and plat not in ("gpu", "tpu"):
        backend = C.fallback(op, "pallas", "dot", f"Pallas compiles only for GPU/TPU, this is "
                             f"{plat}; backend='interpret' runs the kernel body on CPU")
    if block_kwargs and backend == "dot":
        raise ValueError(f"{op}: block options {sorted(block_kwargs)} apply only to Pallas backends.")
    if backend in ("pallas", "interpret"):
        target = "tpu" if (backend == "pallas" and plat == "tpu") else "gpu"
        y = weight_only_matmul_pallas(x2, w_words, scale, decode=decode, per_word=per_word,
                                      name=op, target=target, interpret=backend == "interpret",
                                      **block_kwargs)
    else:
        y = _dot_path(x2, w_words, scale, unpack=unpack, k=k)
    return y.reshape(*lead, n)


@functools.partial(jax.jit, static_argnames=("unpack", "k"))
def _dot_path(x2, w_words, scale, *, unpack, k):
    q = unpack(w_words, k, x2.dtype)
    precision = lax.Precision.HIGHEST if x2.dtype == jnp.float32 else None  # no TF32 rounding on GPUs
    y = lax.dot_general(x2, q, (((1,), (1,)), ((), ())), precision=precision,
                        preferred_element_type=jnp.float32)
    return (y * scale.astype(jnp.float32)).astype(x2.dtype)
