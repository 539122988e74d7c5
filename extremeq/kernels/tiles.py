"""The one table of Pallas tile configurations: block sizes as frozen dataclasses, per kernel and
target, and the rules that clamp a requested tile to a shape.

``block_m x block_n`` is the output tile, ``block_words`` the packed uint32 words of K per step,
``num_warps`` / ``num_stages`` Triton's launch options (GPU only). Public kernel entries take these
as keyword arguments (``xnor_matmul(..., block_m=64)``); ``None`` means the target's default below.
"""

from __future__ import annotations

import dataclasses

from jax.experimental import pallas as pl


@dataclasses.dataclass(frozen=True, kw_only=True)
class BlockSizes:
    """One tile configuration of a Pallas kernel (``None``: the kernel's default)."""

    block_m: int | None = None
    block_n: int | None = None
    block_words: int | None = None
    num_warps: int | None = None
    num_stages: int | None = None

    def kwargs(self) -> dict:
        """The set fields, as keyword arguments of a public kernel entry."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    def label(self) -> str:
        return "bm{block_m}_bn{block_n}_bw{block_words}_w{num_warps}_s{num_stages}".format(**dataclasses.asdict(self))


# Defaults per (kernel, target). GPU block_m/block_n are clamped to the shape by gpu_tile.
XNOR_GPU_DEFAULT = BlockSizes(block_m=128, block_n=256, block_words=32, num_warps=8, num_stages=3)
XNOR_TPU_DEFAULT = BlockSizes(block_m=256, block_n=256, block_words=128)
WEIGHT_ONLY_GPU_DEFAULT = BlockSizes(block_m=64, block_n=128, block_words=32, num_warps=4, num_stages=3)
WEIGHT_ONLY_TPU_DEFAULT = BlockSizes(block_m=256, block_n=256, block_words=128)

#: XNOR GPU tiles the tests check for exactness one by one and the benchmark times (first = the
#: default). An int8 dot that came out silently wrong for one tile on an H100 is why each
#: configuration needs its own exactness check on the GPU.
XNOR_GPU_TILES = (
    XNOR_GPU_DEFAULT,
    BlockSizes(block_m=128, block_n=128, block_words=32, num_warps=4, num_stages=3),
    BlockSizes(block_m=64, block_n=128, block_words=32, num_warps=4, num_stages=3),
    BlockSizes(block_m=128, block_n=128, block_words=64, num_warps=8, num_stages=2),
    BlockSizes(block_m=16, block_n=128, block_words=32, num_warps=4, num_stages=3),
)

#: Weight-only (binary / ternary) GPU tiles, checked and timed the same way (first: small M).
WEIGHT_ONLY_GPU_TILES = (
    BlockSizes(block_m=16, block_n=128, block_words=32, num_warps=4, num_stages=3),
    BlockSizes(block_m=16, block_n=64, block_words=64, num_warps=4, num_stages=3),
    BlockSizes(block_m=64, block_n=128, block_words=32, num_warps=4, num_stages=3),
    BlockSizes(block_m=128, block_n=128, block_words=32, num_warps=8, num_stages=3),
)


def is_power_of_2(n: int) -> bool:
    return n > 0 and (n & (n - 1)) == 0


def gpu_tile(requested, size: int, default: int) -> int:
    """A power-of-two tile >= 16 (the tensor-core minimum); the default shrinks to ``size``."""
    t = default if requested is None else requested
    if not is_power_of_2(t) or t < 16:
        raise ValueError(f"GPU block sizes must be powers of two >= 16, got {t}.")
    if requested is None:
        t = min(t, max(16, pl.next_power_of_2(size)))
    return t


def gpu_block_m(requested, m: int) -> int:
    """The block_m the GPU weight-only kernel runs for ``m`` rows: the requested tile (default 64)
    clamped to max(16, next power of two >= m). At M = 1, block_m 64 and 128 gave wrong ternary
    results on an H100 (jax 0.11.2, K = 1285) while 16 was exact; a larger block adds only padding."""
    return min(gpu_tile(requested, m, WEIGHT_ONLY_GPU_DEFAULT.block_m), max(16, pl.next_power_of_2(m)))


def gpu_block_words(requested) -> int:
    """Words of K per step on a GPU: a power of two >= 32 (the K of each dot; an int8 dot with
    K = 16 returned wrong numbers silently on an H100)."""
    bw = 32 if requested is None else requested
    if bw < 32 or not is_power_of_2(bw):
        raise ValueError(
            f"block_words={bw}: the GPU kernel needs a power of two >= 32 (it is the K of "
            "each int8 dot; K = 16 gave silently wrong results on an H100)."
        )
    return bw


def gpu_split_k(split_k, programs: int, num_steps: int, target_programs: int = 256) -> int:
    """K splits for a GPU grid of ``programs`` output tiles with ``num_steps`` K steps each.

    Small-M shapes (decoding, batch-1 inference) give too few output tiles to fill a GPU (an H100
    has 132 SMs), so the K loop is split over extra programs whose partial sums are added afterwards.
    ``split_k=None`` picks the largest power of two that brings the grid to about
    ``target_programs`` without exceeding ``num_steps``.
    """
    if split_k is not None:
        if int(split_k) < 1:
            raise ValueError(f"split_k must be >= 1, got {split_k}.")
        return min(int(split_k), num_steps)
    s = 1
    while programs * s * 2 <= target_programs and s * 2 <= num_steps:
        s *= 2
    return s


def tpu_tile(requested, size: int, default: int, multiple: int, name: str) -> int:
    """A TPU tile: the requested (or default) size, no larger than ``size`` rounded up to
    ``multiple``, and a multiple of ``multiple`` (8/16 sublanes for rows, 128 lanes otherwise)."""
    t = default if requested is None else requested
    t = min(t, -(-size // multiple) * multiple)
    if t % multiple:
        raise ValueError(f"TPU tiles need {name} % {multiple} == 0; got {t}.")
    return t
