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

import warnings

import jax

#: Backends the matmul entries understand (xnor_matmul: all; weight-only matmuls: no xla_popcount).
BACKENDS = ("auto", "pallas", "interpret", "xla_popcount", "dot")
#: Backends of :func:`extremeq.kernels.packed_conv`.
CONV_BACKENDS = ("auto", "conv", "patches", "xnor")

#: ``backend="auto"``: (operation, platform) -> backend. Measured on CPU with
#: experiments/bench_kernels.py and experiments/bench_inference.py (2-core AVX-512 host, jax 0.10.2,
#: BENCHMARKS.md): the K-chunked XLA popcount beat unpack + int8 dot at every M from 1 to 2048
#: (N = K = 2048, by 10x at M = 1); XLA's float convolution of decoded filters beat both the XNOR
#: conv and patches @ packed weights for the zoo's convolutions. On GPU/TPU the Pallas kernels until
#: a GPU benchmark says otherwise (the H100 anchors suggest XLA's int8 dot may win square
#: compute-bound shapes). ``packed_conv`` on GPU/TPU: "xnor" for binary inputs and binary weights,
#: else "patches" (resolved by :func:`resolve_conv`).
AUTO = {
    ("xnor_matmul", "cpu"): "xla_popcount",
    ("xnor_matmul", "gpu"): "pallas",
    ("xnor_matmul", "tpu"): "pallas",
    ("weight_only_matmul", "cpu"): "dot",
    ("weight_only_matmul", "gpu"): "pallas",
    ("weight_only_matmul", "tpu"): "pallas",
    ("packed_conv", "cpu"): "conv",
    ("packed_conv", "gpu"): "kernels",
    ("packed_conv", "tpu"): "kernels",
}


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
    warnings.warn(f"{op}: backend {requested!r} cannot run this call ({why}); using {used!r} instead.",
                  KernelFallbackWarning, stacklevel=4)
    return used


def _auto(family: str, plat: str) -> str:
    return AUTO.get((family, plat), AUTO[(family, "cpu")])


def resolve(op: str, backend: str, family: str, allowed=BACKENDS) -> str:
    """The backend a matmul entry runs: ``family`` is "xnor_matmul" or "weight_only_matmul"."""
    check_backend(backend, allowed)
    plat = platform()
    if backend == "auto":
        return _auto(family, plat)
    if backend == "pallas" and plat not in ("gpu", "tpu"):
        return fallback(op, "pallas", _auto(family, plat), f"Pallas compiles only for GPU/TPU, this is "
                        f"{plat}; backend='interpret' runs the kernel body on CPU")
    return backend


def resolve_conv(backend: str, *, binary_inputs: bool, weight_format: str) -> str:
    """The path of :func:`extremeq.kernels.packed_conv`: "conv", "patches" or "xnor"."""
    check_backend(backend, CONV_BACKENDS)
    xnor_ok = binary_inputs and weight_format == "binary"
    if backend == "auto":
        backend = _auto("packed_conv", platform())
        if backend == "kernels":
            backend = "xnor" if xnor_ok else "patches"
    if backend == "xnor" and not xnor_ok:
        raise ValueError("packed_conv backend 'xnor' needs binary_inputs=True and weight_format='binary' "
                         f"(got binary_inputs={binary_inputs}, weight_format={weight_format!r}); "
                         "use 'conv' or 'patches'.")
    return backend


def pallas_target(backend: str) -> str:
    """Which Pallas kernel a Pallas backend runs: "tpu" for ``pallas`` on a TPU, else "gpu"."""
    return "tpu" if (backend == "pallas" and platform() == "tpu") else "gpu"
