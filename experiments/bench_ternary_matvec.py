"""Batch-1 ternary matrix-vector products on this CPU, the forms a packed BitNet decoder could use.

    PYTHONPATH=. python experiments/bench_ternary_matvec.py [--rounds 15] [--layers 12]

The 48 linear layers of the "large" decode benchmark (12 blocks of 768 -> 2304, 768 -> 768,
768 -> 3072, 3072 -> 768, random ternary weights) run as one jitted program on 8-bit integer
activations c_x (re-quantized between layers, as BitLinear does), in each of these forms:

* float32 ``c_x @ W`` (the float model's bytes: 4 per weight);
* ``ternary_weight_matmul`` on 2-bit words (``backend="dot"``, what ``decode="words"`` runs);
* int8 codes [N, K] converted to float32 inside the product (1 byte per weight);
* int8 x int8 -> int32 ``dot_general`` on codes [K, N] (BitNet's integer arithmetic).

Every form gives the same integers (checked against the float32 row). Median of ``--rounds`` after
a warm-up; "scratch" is XLA's temporary buffer size of the program (decoded matrices held at once).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from extremeq.kernels import ternary_weight_matmul
from extremeq.packing import pack_ternary

SHAPES = ((768, 2304), (768, 768), (768, 3072), (3072, 768))


def requantize(y):
    """Back to 8-bit integers between layers (absmax over the vector)."""
    s = jnp.max(jnp.abs(y)) / 127
    return jnp.clip(jnp.round(y / s), -127, 127)


def stack(matvec):
    def run(x, weights):
        for qkv, proj, fc, fc_proj in weights:
            h = requantize(matvec(x, qkv))[:, :768]
            h = requantize(matvec(h, proj))
            h = requantize(matvec(h, fc))
            x = requantize(matvec(h, fc_proj))
        return x

    return jax.jit(run)


FORMS = {
    "float32 weights": (lambda x, w: x @ w, lambda t: jnp.asarray(t, jnp.float32)),
    "2-bit words, ternary_weight_matmul": (
        lambda x, w: ternary_weight_matmul(x, w, 1.0, backend="dot"),
        lambda t: pack_ternary(jnp.asarray(t.T), axis=-1),
    ),
    "int8 codes [N, K] -> float32": (
        lambda x, c: x @ c.astype(jnp.float32).T,
        lambda t: jnp.asarray(np.ascontiguousarray(t.T)),
    ),
    "int8 x int8 -> int32 dot": (
        lambda x, c: lax.dot(x.astype(jnp.int8), c, preferred_element_type=jnp.int32).astype(jnp.float32),
        lambda t: jnp.asarray(t),
    ),
}
BYTES_PER_WEIGHT = {"float32 weights": 4, "2-bit words, ternary_weight_matmul": 0.25}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--layers", type=int, default=12)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    ternary = [[rng.integers(-1, 2, size=s).astype(np.int8) for s in SHAPES] for _ in range(args.layers)]
    x = jnp.asarray(rng.integers(-127, 128, size=(1, 768)), jnp.float32)
    weights = sum(k * n for k, n in SHAPES) * args.layers
    print(
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores; jax {jax.__version__}, backend "
        f"{jax.default_backend()}; {args.layers} x 4 layers ({weights / 1e6:.1f}M ternary weights), M = 1, "
        f"median of {args.rounds}\n"
    )
    print("| form | bytes per weight | ms per token | / float32 | scratch | same integers | load average |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    ref, base = None, None
    for name, (matvec, prepare) in FORMS.items():
        ws = [[prepare(t) for t in layer] for layer in ternary]
        fn = stack(matvec)
        scratch = fn.lower(x, ws).compile().memory_analysis()
        y = np.asarray(jax.block_until_ready(fn(x, ws)))
        ref = y if ref is None else ref
        times = []
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            jax.block_until_ready(fn(x, ws))
            times.append(time.perf_counter() - t0)
        ms = 1e3 * float(np.median(times))
        base = ms if base is None else base
        scratch_mib = "-" if scratch is None else f"{scratch.temp_size_in_bytes / 2**20:.1f} MiB"
        print(
            f"| {name} | {BYTES_PER_WEIGHT.get(name, 1)} | {ms:.1f} | {ms / base:.2f}x | {scratch_mib} | "
            f"{np.array_equal(y, ref)} | {os.getloadavg()[0]:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
