"""Helpers shared by the kernel tests (imported as a plain module from this folder)."""

import jax
import numpy as np

from extremeq.kernels.backends import platform

ON_ACCELERATOR = platform() in ("gpu", "tpu")
# The compiled kernel where there is a GPU/TPU, the same kernel body interpreted on CPU.
PALLAS = "pallas" if ON_ACCELERATOR else "interpret"


def random_pm1(rng, shape):
    return rng.choice(np.array([-1, 1], np.int64), size=shape)


def pm1_product(a, b):
    """Exact +-1 product in int64 NumPy (the closed form the kernels must equal)."""
    return a.astype(np.int64) @ b.astype(np.int64).T


def device_kind():
    return jax.devices()[0].device_kind


def np_pack_signs(a):
    """+-1 (or any sign) array -> uint32 words along the last axis, in NumPy (no compiles)."""
    from extremeq.packing import np_pack_bits_reference

    return np_pack_bits_reference(np.asarray(a) >= 0)


def np_pack_ternary(t):
    """NumPy ternary packing along the last axis: code bits (nonzero, negative) per element."""
    from extremeq.packing import np_pack_bits_reference

    t = np.asarray(t)
    nz, neg = (t != 0), (t < 0)
    bits = np.stack([nz, neg], axis=-1).reshape(*t.shape[:-1], -1)  # element i -> bits 2i, 2i+1
    return np_pack_bits_reference(bits)
