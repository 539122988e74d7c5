"""XNOR-popcount matrix product of two bit-packed +-1 operands.

For rows ``a, b`` in {-1, +1}^K stored as bits (1 = +1, 0 = -1; format of
:mod:`extremeq.packing`), the XNOR-Net identity (Rastegari et al., 2016, Sec. 3.2)

    a . b = K - 2 * popcount(a_bits XOR b_bits)

gives the +-1 dot product from K/32 word operations. :func:`xnor_matmul` returns

    C[m, n] = K - 2 * sum_w popcount(A[m, w] ^ B[n, w])          (int32, exact)

and, with the XNOR-Net scales, ``C[m, n] * alpha_x[m] * alpha_w[n]`` (float32).

Backends (chosen by ``backend=``, see :mod:`extremeq.kernels`):

* ``pallas`` (GPU, Triton lowering): both operands stay packed in HBM. A tile of
  ``block_words`` words per row is loaded, and for each bit position j = 0..31 bit j
  of every word becomes a +-1 int8 slice; ``dot(A_j, B_j^T)`` accumulates on the int8
  tensor cores. A dot over K does not depend on the order of K, so summing the 32
  slice products gives the full product. Zero padding words (equal in A and B)
  add +1 per padding bit, subtracted in the epilogue. ``block_words`` is the K of
  every int8 dot: it must be >= 32, because an int8 dot with K = 16 returned wrong
  numbers silently on an H100 (/work/shared/ANCHORS.md, section 1).
* ``pallas`` (TPU, Mosaic): the same bit-slice product on the MXU over a
  (M, N, K-steps) grid with a VMEM accumulator; bf16 slices by default (exact: the
  f32 accumulator holds integers below 2^24).
* ``xla_popcount``: XOR + ``lax.population_count`` + sum, a few words of K per step.
* ``dot``: unpack to +-1 int8 in XLA, then one int8 ``dot_general`` into int32.
* ``interpret``: the GPU kernel body under the Pallas interpreter (tests on CPU).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from extremeq.kernels import _common as C
from extremeq.packing import num_words, pack_signs, unpack_signs

__all__ = [
    "xnor_matmul",
    "xnor_matmul_reference",
    "xnor_linear",
    "xnor_linear_reference",
    "xnor_matmul_xla_popcount",
    "xnor_matmul_dot",
    "xnor_matmul_pallas",
    "GPU_TILE_CONFIGS",
]

# CPU choice of backend="auto", measured with experiments/bench_kernels.py on the 2-core
# AVX-512 host (jax 0.10.2, BENCHMARKS.md): the K-chunked XLA popcount beat the unpack + int8
# dot at every M from 1 to 2048 with N = K = 2048 (by 10x at M = 1, where unpacking B costs
# more than the product), so it is the CPU path for every shape.
CPU_AUTO_BACKEND = "xla_popcount"

#: GPU tile configurations the tests check for exactness one by one and the benchmark times
#: (the first is the default). An int8 dot that came out silently wrong for one tile on an
#: H100 is why each configuration needs its own exactness check on the GPU.
GPU_TILE_CONFIGS = (
    dict(block_m=128, block_n=256, block_words=32, num_warps=8, num_stages=3),
    dict(block_m=128, block_n=128, block_words=32, num_warps=4, num_stages=3),
    dict(block_m=64, block_n=128, block_words=32, num_warps=4, num_stages=3),
    dict(block_m=128, block_n=128, block_words=64, num_warps=8, num_stages=2),
    dict(block_m=16, block_n=128, block_words=32, num_warps=4, num_stages=3),
)


# ----------------------------------------------------------------------------- references
def xnor_matmul_reference(a_bits, b_bits, k: int, alpha_x=None, alpha_w=None):
    """Plain-jnp reference: unpack to +-1 float32 and multiply (exact for K < 2^24)."""
    a = unpack_signs(a_bits, k, axis=-1, dtype=jnp.float32)
    b = unpack_signs(b_bits, k, axis=-1, dtype=jnp.float32)
    c = jnp.dot(a, b.T, precision=lax.Precision.HIGHEST)
    if alpha_x is None and alpha_w is None:
        return c.astype(jnp.int32)
    ax = jnp.ones((a.shape[0],), jnp.float32) if alpha_x is None else jnp.asarray(alpha_x, jnp.float32)
    aw = jnp.ones((b.shape[0],), jnp.float32) if alpha_w is None else jnp.asarray(alpha_w, jnp.float32)
    return c * ax[:, None] * aw[None, :]


# ----------------------------------------------------------------------------- XLA paths
@functools.partial(jax.jit, static_argnames=("k", "chunk_words"))
def xnor_matmul_xla_popcount(a_bits, b_bits, *, k: int, chunk_words: int = 16):
    """``K - 2 popcount(A ^ B)`` in plain XLA, ``chunk_words`` words of K per scan step.

    Each step is one fused [M, N] loop that XORs and popcounts ``chunk_words`` words with the
    word axis outermost (vectorised along N); a whole-K reduction in one fusion, or one over
    the innermost (word) axis, measured 10-40x slower on the CPU here. Zero words padding K
    to a multiple of ``chunk_words`` XOR to 0 and add nothing.
    """
    m, w = a_bits.shape
    n = b_bits.shape[0]
    cw = min(chunk_words, w)
    wp = C.round_up(w, cw)
    a_t = C.pad_to(a_bits, (m, wp)).T.reshape(wp // cw, cw, m)
    b_t = C.pad_to(b_bits, (n, wp)).T.reshape(wp // cw, cw, n)

    def step(acc, ab):
        a_c, b_c = ab
        x = lax.population_count(a_c[:, :, None] ^ b_c[:, None, :])
        return acc + jnp.sum(x.astype(jnp.int32), axis=0), None

    pop, _ = lax.scan(step, jnp.zeros((m, n), jnp.int32), (a_t, b_t))
    return jnp.int32(k) - 2 * pop


@functools.partial(jax.jit, static_argnames=("k",))
def xnor_matmul_dot(a_bits, b_bits, *, k: int):
    """Unpack both operands to +-1 in XLA and take one dot: int8 x int8 -> int32, or on a GPU
    bfloat16 x bfloat16 -> float32 (exact: +-1 products, integer sums below 2^24), because XLA's
    int8 dot gave wrong sums on an H100 (jax 0.11.2) for small odd shapes such as 3 x 5 x 33."""
    if C.platform() == "gpu":
        if k >= 2**24:
            raise ValueError(f"xnor_matmul 'dot' on a GPU sums in float32, exact for K < 2^24; got K = {k}")
        a = unpack_signs(a_bits, k, axis=-1, dtype=jnp.bfloat16)
        b = unpack_signs(b_bits, k, axis=-1, dtype=jnp.bfloat16)
        out = lax.dot_general(a, b, (((1,), (1,)), ((), ())), preferred_element_type=jnp.float32)
        return out.astype(jnp.int32)
    a = unpack_signs(a_bits, k, axis=-1, dtype=jnp.int8)
    b = unpack_signs(b_bits, k, axis=-1, dtype=jnp.int8)
    return lax.dot_general(a, b, (((1,), (1,)), ((), ())), preferred_element_type=jnp.int32)


# ----------------------------------------------------------------------------- Pallas kernels
def _sign_plane(words, j: int, dtype):
    """Bit ``j`` of every word as +-1 in ``dtype`` (bit 1 -> +1, bit 0 -> -1)."""
    bit = lax.shift_right_logical(words, jnp.uint32(j)) & jnp.uint32(1)
    return (bit.astype(jnp.int32) * 2 - 1).astype(dtype)


def _bit_slice_product(a, b, slice_dtype, acc_dtype):
    """sum_j dot(A_j, B_j^T) over the 32 bit positions: the +-1 product of two word tiles."""
    acc = None
    for j in range(C.WORD_BITS):
        d = lax.dot_general(
            _sign_plane(a, j, slice_dtype),
            _sign_plane(b, j, slice_dtype),
            (((1,), (1,)), ((), ())),
            preferred_element_type=acc_dtype,
        )
        acc = d if acc is None else acc + d
    return acc


def _epilogue(acc, pad_bits, scale_refs, o_ref):
    c = acc.astype(jnp.int32) - jnp.int32(pad_bits)
    if scale_refs:
        ax_ref, aw_ref = scale_refs
        o_ref[...] = c.astype(jnp.float32) * ax_ref[...] * aw_ref[...]
    else:
        o_ref[...] = c


def _xnor_kernel_gpu(a_ref, b_ref, *refs, block_words, num_steps, pad_bits, slice_dtype, acc_dtype,
                     split):
    *scale_refs, o_ref = refs
    bm, bn = a_ref.shape[0], b_ref.shape[0]
    first = pl.program_id(2) * num_steps if split else 0

    def step(s, acc):
        start = pl.multiple_of((first + s) * block_words, block_words)
        a = a_ref[:, pl.ds(start, block_words)]
        b = b_ref[:, pl.ds(start, block_words)]
        return acc + _bit_slice_product(a, b, slice_dtype, acc_dtype)

    acc = lax.fori_loop(0, num_steps, step, jnp.zeros((bm, bn), acc_dtype))
    if split:  # partial sums of this K range; the wrapper adds them and applies the epilogue
        o_ref[0] = acc.astype(jnp.int32)
    else:
        _epilogue(acc, pad_bits, scale_refs, o_ref)


def _xnor_kernel_tpu(a_ref, b_ref, *refs, pad_bits, slice_dtype, acc_dtype):
    *scale_refs, o_ref, acc_ref = refs
    s = pl.program_id(2)

    @pl.when(s == 0)
    def _():
        acc_ref[...] = jnp.zeros_like(acc_ref)

    acc_ref[...] += _bit_slice_product(a_ref[...], b_ref[...], slice_dtype, acc_dtype)

    @pl.when(s == pl.num_programs(2) - 1)
    def _():
        _epilogue(acc_ref[...], pad_bits, scale_refs, o_ref)


def _gpu_tile(requested, size, default):
    """A power-of-two tile >= 16 (tensor-core minimum), no larger than needed for ``size``."""
    t = default if requested is None else requested
    if not C.is_power_of_2(t) or t < 16:
        raise ValueError(f"GPU block sizes must be powers of two >= 16, got {t}.")
    if requested is None:
        t = min(t, max(16, pl.next_power_of_2(size)))
    return t


@C.backend_jit(("k", "block_m", "block_n", "block_words", "num_warps", "num_stages",
                 "slice_dtype", "split_k", "target", "interpret"))
def xnor_matmul_pallas(a_bits, b_bits, alpha_x=None, alpha_w=None, *, k: int, block_m=None,
                       block_n=None, block_words=None, num_warps: int = 8, num_stages: int = 3,
                       slice_dtype=None, split_k=None, target: str = "gpu", interpret=False):
    """Bit-slice tensor-core XNOR kernel. ``target`` "gpu" (Triton) or "tpu" (Mosaic).

    Block sizes are keyword arguments: ``block_m x block_n`` output tile, ``block_words``
    packed words of K per step (the K of each int8 dot on GPU; keep it >= 32).
    ``split_k`` (GPU): split the K loop over that many programs and add their int32 partial
    sums afterwards (None: automatic, more splits when few output tiles, i.e. small M).
    With ``alpha_x`` [M] and ``alpha_w`` [N] the epilogue returns float32
    ``C * alpha_x[:, None] * alpha_w[None, :]``; without them int32 ``C``.
    """
    m, w = a_bits.shape
    n = b_bits.shape[0]
    scaled = alpha_x is not None
    if target == "gpu":
        bm = _gpu_tile(block_m, m, 128)
        bn = _gpu_tile(block_n, n, 256)
        bw = 32 if block_words is None else block_words
        if bw < 32 or not C.is_power_of_2(bw):
            raise ValueError(
                f"block_words={bw}: the GPU kernel needs a power of two >= 32 (it is the K of "
                "each int8 dot; K = 16 gave silently wrong results on an H100)."
            )
        slice_dtype = jnp.int8 if slice_dtype is None else slice_dtype
    elif target == "tpu":
        bm = 256 if block_m is None else block_m
        bn = 256 if block_n is None else block_n
        bm, bn = min(bm, C.round_up(m, 8)), min(bn, C.round_up(n, 128))
        bw = 128 if block_words is None else block_words
        if bm % 8 or bn % 128 or bw % 128:
            raise ValueError(f"TPU tiles need block_m % 8 == 0 and block_n, block_words % 128 == 0; "
                             f"got {bm}, {bn}, {bw}.")
        slice_dtype = jnp.bfloat16 if slice_dtype is None else slice_dtype
    else:
        raise ValueError(f"target {target!r} unknown; choose 'gpu' or 'tpu'.")
    slice_dtype = jnp.dtype(slice_dtype)
    acc_dtype = jnp.int32 if jnp.issubdtype(slice_dtype, jnp.integer) else jnp.float32

    mp, np_ = C.round_up(m, bm), C.round_up(n, bn)
    split = 1
    if target == "gpu":
        split = C.gpu_split_k(split_k, (mp // bm) * (np_ // bn), -(-w // bw))
    wp = C.round_up(w, bw * split)
    a = C.pad_to(a_bits, (mp, wp))
    b = C.pad_to(b_bits, (np_, wp))
    pad_bits = C.WORD_BITS * wp - k  # equal (zero) bits in A and B: +1 each in the +-1 sum
    operands = [a, b]
    if scaled:
        alpha_x = C.pad_to(alpha_x.astype(jnp.float32)[:, None], (mp, 1))
        alpha_w = C.pad_to(alpha_w.astype(jnp.float32)[None, :], (1, np_))
        if split == 1:
            operands += [alpha_x, alpha_w]
    out_shape = jax.ShapeDtypeStruct((mp, np_), jnp.float32 if scaled else jnp.int32)

    if target == "gpu":
        from jax.experimental.pallas import triton as plt

        steps = wp // bw // split
        kernel = functools.partial(_xnor_kernel_gpu, block_words=bw, num_steps=steps,
                                   pad_bits=pad_bits, slice_dtype=slice_dtype, acc_dtype=acc_dtype,
                                   split=split > 1)
        in_specs = [pl.BlockSpec((bm, wp), lambda i, j, s: (i, 0)),
                    pl.BlockSpec((bn, wp), lambda i, j, s: (j, 0))]
        if split == 1:
            if scaled:
                in_specs += [pl.BlockSpec((bm, 1), lambda i, j, s: (i, 0)),
                             pl.BlockSpec((1, bn), lambda i, j, s: (0, j))]
            out_specs = pl.BlockSpec((bm, bn), lambda i, j, s: (i, j))
        else:
            out_shape = jax.ShapeDtypeStruct((split, mp, np_), jnp.int32)
            out_specs = pl.BlockSpec((1, bm, bn), lambda i, j, s: (s, i, j))
        out = pl.pallas_call(
            kernel, out_shape=out_shape, grid=(mp // bm, np_ // bn, split), in_specs=in_specs,
            out_specs=out_specs,
            compiler_params=None if interpret else plt.CompilerParams(num_warps=num_warps,
                                                                      num_stages=num_stages),
            interpret=interpret, name="xnor_matmul",
        )(*operands)
        if split > 1:
            out = jnp.sum(out, axis=0) - jnp.int32(pad_bits)
            if scaled:
                out = out.astype(jnp.float32) * alpha_x * alpha_w
    else:
        from jax.experimental.pallas import tpu as pltpu

        kernel = functools.partial(_xnor_kernel_tpu, pad_bits=pad_bits, slice_dtype=slice_dtype,
                                   acc_dtype=acc_dtype)
        in_specs = [pl.BlockSpec((bm, bw), lambda i, j, s: (i, s)),
                    pl.BlockSpec((bn, bw), lambda i, j, s: (j, s))]
        if scaled:
            in_specs += [pl.BlockSpec((bm, 1), lambda i, j, s: (i, 0)),
                         pl.BlockSpec((1, bn), lambda i, j, s: (0, j))]
        out = pl.pallas_call(
            kernel, out_shape=out_shape, grid=(mp // bm, np_ // bn, wp // bw), in_specs=in_specs,
            out_specs=pl.BlockSpec((bm, bn), lambda i, j, s: (i, j)),
            scratch_shapes=[pltpu.VMEM((bm, bn), acc_dtype)],
            compiler_params=pltpu.CompilerParams(
                dimension_semantics=("parallel", "parallel", "arbitrary")),
            interpret=interpret, name="xnor_matmul",
        )(*operands)
    return out[:m, :n]


# ----------------------------------------------------------------------------- public entry
def _resolve_backend(op: str, backend: str, m: int) -> str:
    C.check_backend(backend)
    plat = C.platform()
    if backend == "auto":
        if plat in ("gpu", "tpu"):
            return "pallas"
        return CPU_AUTO_BACKEND
    if backend == "pallas" and plat not in ("gpu", "tpu"):
        return C.fallback(op, "pallas", _resolve_backend(op, "auto", m),
                          f"Pallas compiles only for GPU/TPU, this is {plat}; "
                          "backend='interpret' runs the kernel body on CPU")
    return backend


def xnor_matmul(a_bits, b_bits, k: int, *, alpha_x=None, alpha_w=None, backend: str = "auto",
                **block_kwargs):
    """+-1 matrix product of packed operands: ``K - 2 popcount(A xor B)``.

    Args:
      a_bits: uint32 [M, ceil(K/32)], rows of A packed along K (``pack_signs(A, axis=-1)``).
      b_bits: uint32 [N, ceil(K/32)], rows of B packed along K.
      k: K, the number of valid bits per row (padding bits beyond K never count).
      alpha_x, alpha_w: optional XNOR-Net scales, per row of A [M] and per row of B [N]
        (a missing one counts as 1). With either given the result is float32
        ``C[m, n] * alpha_x[m] * alpha_w[n]``.
      backend: "auto" | "pallas" | "interpret" | "xla_popcount" | "dot".
      **block_kwargs: Pallas tile options (block_m, block_n, block_words, num_warps,
        num_stages, slice_dtype), see :func:`xnor_matmul_pallas`.

    Returns:
      int32 [M, N] equal to ``A_pm1 @ B_pm1.T`` exactly, or float32 with scales.
    """
    C.check_words("a_bits", a_bits)
    C.check_words("b_bits", b_bits)
    k = int(k)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}.")
    w = num_words(k)
    if a_bits.shape[1] != w or b_bits.shape[1] != w:
        raise ValueError(
            f"a_bits has {a_bits.shape[1]} words per row and b_bits {b_bits.shape[1]}; "
            f"k={k} needs ceil(k/32) = {w} in both (pack both along K with pack_signs(., axis=-1))."
        )
    m, n = a_bits.shape[0], b_bits.shape[0]
    scaled = alpha_x is not None or alpha_w is not None
    if scaled:
        alpha_x = C.check_scale("alpha_x", 1.0 if alpha_x is None else alpha_x, m)
        alpha_w = C.check_scale("alpha_w", 1.0 if alpha_w is None else alpha_w, n)
    backend = _resolve_backend("xnor_matmul", backend, m)
    if block_kwargs and backend not in ("pallas", "interpret"):
        raise ValueError(f"block options {sorted(block_kwargs)} apply only to Pallas backends, "
                         f"not {backend!r}.")
    target = "tpu" if (backend == "pallas" and C.platform() == "tpu") else "gpu"
    return _xnor_matmul_impl(a_bits, b_bits, alpha_x, alpha_w, k=k, backend=backend, target=target,
                             block_items=tuple(sorted(block_kwargs.items())))


@C.backend_jit(("k", "backend", "target", "block_items"))
def _xnor_matmul_impl(a_bits, b_bits, alpha_x, alpha_w, *, k, backend, target, block_items):
    a_bits = C.mask_padding_bits(a_bits, k)
    b_bits = C.mask_padding_bits(b_bits, k)
    if backend in ("pallas", "interpret"):
        return xnor_matmul_pallas(a_bits, b_bits, alpha_x, alpha_w, k=k, target=target,
                                  interpret=backend == "interpret", **dict(block_items))
    if backend == "xla_popcount":
        c = xnor_matmul_xla_popcount(a_bits, b_bits, k=k)
    else:
        c = xnor_matmul_dot(a_bits, b_bits, k=k)
    if alpha_x is not None:
        return c.astype(jnp.float32) * alpha_x[:, None] * alpha_w[None, :]
    return c


# ----------------------------------------------------------------------------- XNOR-Net dense layer
def xnor_linear_reference(x, kernel, alpha):
    """XNOR-Net dense layer in float: ``(sign(x) @ sign(W)) * beta[:, None] * alpha[None, :]``,
    ``beta = mean|x|`` per row (Rastegari et al., 2016, Eq. 11), sign(0) = +1, W [K, N]."""
    x = jnp.asarray(x, jnp.float32)
    sx = jnp.where(x >= 0, 1.0, -1.0)
    sw = jnp.where(jnp.asarray(kernel) >= 0, 1.0, -1.0)
    beta = jnp.mean(jnp.abs(x), axis=-1)
    return jnp.dot(sx, sw, precision=lax.Precision.HIGHEST) * beta[..., None] * alpha


def xnor_linear(x, w_bits, alpha, *, backend: str = "auto", **block_kwargs):
    """XNOR-Net dense layer: binarise inputs and weights, XNOR-popcount, rescale.

    ``y[m, n] = (sign(x_m) . sign(w_n)) * beta_m * alpha_n`` with ``beta_m = mean_k |x[m, k]|``
    (Rastegari et al., 2016, Sec. 3.2). ``x`` [..., K] float; ``w_bits`` [N, ceil(K/32)] from
    :func:`extremeq.kernels.pack_binary_weights`; ``alpha`` [N]. Returns float32 [..., N].
    """
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"xnor_linear needs float inputs, got dtype {x.dtype}.")
    C.check_words("w_bits", w_bits)
    lead, k = x.shape[:-1], x.shape[-1]
    if w_bits.shape[1] != num_words(k):
        raise ValueError(f"x has K={k}, which needs ceil(K/32) = {num_words(k)} words per output "
                         f"channel; w_bits has {w_bits.shape[1]} (use pack_binary_weights).")
    n = w_bits.shape[0]
    alpha = C.check_scale("alpha", alpha, n)
    m = math.prod(lead)
    backend = _resolve_backend("xnor_linear", backend, m)
    if block_kwargs and backend not in ("pallas", "interpret"):
        raise ValueError(f"block options {sorted(block_kwargs)} apply only to Pallas backends.")
    target = "tpu" if (backend == "pallas" and C.platform() == "tpu") else "gpu"
    return _xnor_linear_impl(x, w_bits, alpha, backend=backend, target=target,
                             block_items=tuple(sorted(block_kwargs.items())))


@C.backend_jit(("backend", "target", "block_items"))
def _xnor_linear_impl(x, w_bits, alpha, *, backend, target, block_items):
    lead, k = x.shape[:-1], x.shape[-1]
    x2 = x.reshape(math.prod(lead), k)
    beta = jnp.mean(jnp.abs(x2.astype(jnp.float32)), axis=-1)
    y = _xnor_matmul_impl(pack_signs(x2, axis=-1), w_bits, beta, alpha.astype(jnp.float32), k=k,
                          backend=backend, target=target, block_items=block_items)
    return y.reshape(*lead, -1)
