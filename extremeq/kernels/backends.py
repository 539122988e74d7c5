"""The one backend resolver of :mod:`extremeq.kernels`: what ``backend=`` means for each operation.

Every public kernel takes ``backend=`` and asks :func:`resolve` what to run. ``"auto"`` reads the
table :data:`AUTO` (operation x platform -> backend), the single place where the measured choice
per platform is written down; the GPU row is the selection-table hook for GPU benchmarks.

Backends:

* ``"auto"``: the fastest path measured for the platform (the :data:`AUTO` table).
* ``"pallas"``: the fused Pallas kernel (Triton on GPU, :mod:`extremeq.kernels.gpu`; Mosaic on
  TPU, :mod:`extremeq.kernels.tpu`). On a CPU it warns (:class:`KernelFallbackWarning`) and runs
  the CPU's ``"auto"`` path.
* ``"interpret"``: the GPU kernel body under the Pallas interpreter (tests on CPU).
* ``"xla_popcount"`` (XNOR operations): XOR + ``lax.population_count`` in plain XLA.
* ``"dot"``: unpack to +-1 / ternary values in XLA, then one ``dot_general``.
* convolutions (:func:`extremeq.kernels.packed_conv`): ``"conv"`` (decode the packed filters,
  XLA's convolution), ``"patches"`` (im2col, then the weight-only matmul of the platform), ``"xnor"``
  (binary inputs and weights: XNOR-popcount over the packed patches, exact in integers).
"""

from __future__ import annotations

import dataclasses
import warnings

import jax

from extremeq.kernels.tiles import BlockSizes

#: Backends the matmul entries understand (xnor_matmul: all; weight-only matmuls: no xla_popcount).
BACKENDS = ("auto", "pallas", "interpret", "xla_popcount", "dot")
#: Backends of :func:`extremeq.kernels.packed_conv`.
CONV_BACKENDS = ("auto", "conv", "patches", "xnor")

#: ``backend="auto"``: (operation, platform) -> backend. Measured on CPU with
#: experiments/bench_kernels.py and experiments/bench_inference.py (2-core AVX-512 host, jax 0.10.2,
#: BENCHMARKS.md): the K-chunked XLA popcount beat unpack + int8 dot at every M from 1 to 2048
#: (N = K = 2048, by 10x at M = 1). ``packed_conv`` with binary inputs and binary filters
#: ("packed_conv_binary"): the XNOR path (sign bits packed per pixel, patches of words, popcount)
#: beat XLA's float convolution with self-padding + border term by 2-9x and the +-1 int8 patches dot
#: by 1.5-7x on every 3x3 shape measured (C = 16 to 128, O = 16 to 256, strides 1 and 2, batch 1 and
#: 64; experiments/proto_packed_conv.py, BENCHMARKS.md "Packed inference vs LCE (CPU)"), exact in
#: integers. Other inputs or filters: XLA's float convolution of decoded filters on the CPU (it beat
#: patches @ packed weights for the zoo's convolutions), "patches" on GPU/TPU. On GPU/TPU the Pallas
#: kernels until a GPU benchmark says otherwise (the H100 anchors suggest XLA's int8 dot may win
#: square compute-bound shapes).
AUTO = {
    ("xnor_matmul", "cpu"): "xla_popcount",
    ("xnor_matmul", "gpu"): "pallas",
    ("xnor_matmul", "tpu"): "pallas",
    ("weight_only_matmul", "cpu"): "dot",
    ("weight_only_matmul", "gpu"): "pallas",
    ("weight_only_matmul", "tpu"): "pallas",
    ("packed_conv", "cpu"): "conv",
    ("packed_conv", "gpu"): "patches",
    ("packed_conv", "tpu"): "patches",
    ("packed_conv_binary", "cpu"): "xnor",
    ("packed_conv_binary", "gpu"): "xnor",
    ("packed_conv_binary", "tpu"): "xnor",
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Selection:
    """One row of a measured selection table: shapes with ``m <= max_m`` and ``k >= min_k`` (and
    ``n >= min_n``) run ``backend`` with ``tiles``. ``source`` names the benchmark run it comes from."""

    family: str
    backend: str
    max_m: int = 2**62
    min_n: int = 0
    min_k: int = 0
    tiles: BlockSizes | None = None
    source: str = ""

    def matches(self, family: str, m: int, n: int, k: int) -> bool:
        return self.family == family and m <= self.max_m and n >= self.min_n and k >= self.min_k


#: ``backend="auto"`` on a GPU, per shape: the first row that matches (M, N, K) decides, else the
#: :data:`AUTO` entry. Filled from experiments/bench_kernels.py on a GPU (the fastest exact variant
#: per shape, with ``"dot"``, unpack to bf16 and XLA's dot, as the floor a packed path must beat);
#: empty until such a run exists, so nothing here is a guess.
GPU_SELECTION: tuple[Selection, ...] = ()


def select(family: str, plat: str, shape=None) -> tuple[str, BlockSizes | None]:
    """(backend, tiles or None) that ``"auto"`` runs for ``family`` at ``shape`` = (M, N, K)."""
    if plat == "gpu" and shape is not None:
        for row in GPU_SELECTION:
            if row.matches(family, *shape):
                return row.backend, row.tiles
    return _auto(family, plat), None


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
        stacklevel=4,
    )
    return used


def _auto(family: str, plat: str) -> str:
    return AUTO.get((family, plat), AUTO[(family, "cpu")])


def resolve(op: str, backend: str, family: str, allowed=BACKENDS, shape=None) -> str:
    """The backend a matmul entry runs: ``family`` is "xnor_matmul" or "weight_only_matmul";
    ``shape`` = (M, N, K) lets a GPU's ``"auto"`` follow :data:`GPU_SELECTION`."""
    check_backend(backend, allowed)
    plat = platform()
    if backend == "auto":
        return select(family, plat, shape)[0]
    if backend == "pallas" and plat not in ("gpu", "tpu"):
        return fallback(
            op,
            "pallas",
            _auto(family, plat),
            f"Pallas compiles only for GPU/TPU, this is {plat}; backend='interpret' runs the kernel body on CPU",
        )
    return backend


def auto_tiles(family: str, requested: str, block_kwargs: dict, shape) -> dict:
    """The tile options a call runs: the caller's, or for ``backend="auto"`` without any, the
    tiles of the :data:`GPU_SELECTION` row that chose the backend (empty when none)."""
    if requested != "auto" or block_kwargs:
        return block_kwargs
    tiles = select(family, platform(), shape)[1]
    return tiles.kwargs() if tiles is not None else {}


def resolve_conv(backend: str, *, binary_inputs: bool, weight_format: str) -> str:
    """The path of :func:`extremeq.kernels.packed_conv`: "conv", "patches" or "xnor"."""
    check_backend(backend, CONV_BACKENDS)
    xnor_ok = binary_inputs and weight_format == "binary"
    if backend == "auto":
        backend = _auto("packed_conv_binary" if xnor_ok else "packed_conv", platform())
    if backend == "xnor" and not xnor_ok:
        raise ValueError(
            "packed_conv backend 'xnor' needs binary_inputs=True and weight_format='binary' "
            f"(got binary_inputs={binary_inputs}, weight_format={weight_format!r}); "
            "use 'conv' or 'patches'."
        )
    return backend


def pallas_target(backend: str) -> str:
    """Which Pallas kernel a Pallas backend runs: "tpu" for ``pallas`` on a TPU, else "gpu"."""
    return "tpu" if (backend == "pallas" and platform() == "tpu") else "gpu"
