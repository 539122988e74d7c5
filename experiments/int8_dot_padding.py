"""Where is XLA's int8 dot exact? A study for the GPU (issue 17): XLA's int8 x int8 -> int32
``dot_general`` gave wrong sums on an H100 for small odd shapes (e.g. 3 x 5 x 33). This script
multiplies random int8 operands (+-1, as the XNOR kernels feed it, and full range) for a grid of
small and odd shapes, raw and padded (K to 32 or 64, M and N to 16), and compares every result
with NumPy's int64 product. The table says, per padding scheme, how many shapes were wrong and
which, so the kernels can pad to where the dot is exact, or not use it.

    PYTHONPATH=. python experiments/int8_dot_padding.py --out int8_dot_padding.md [--seconds 60]

Stops after --seconds (a cut run still writes what it tested). Runs anywhere; on a CPU every row
is expected exact (the grid is the GPU's question).
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

MN = [(1, 1), (1, 17), (3, 5), (5, 3), (7, 9), (8, 8), (15, 17), (16, 16), (17, 33), (33, 17), (64, 64), (1, 256)]
KS = [1, 5, 16, 31, 32, 33, 63, 64, 65, 129, 4097]
SCHEMES = {  # name: (K multiple, M/N multiple)
    "raw": (1, 1),
    "K to 32": (32, 1),
    "K to 64": (64, 1),
    "K to 32, M/N to 16": (32, 16),
}


def _up(n: int, m: int) -> int:
    return -(-n // m) * m


@jax.jit
def _int8_dot(a, b):
    return lax.dot_general(a, b, (((1,), (1,)), ((), ())), preferred_element_type=jnp.int32)


def padded_dot(a: np.ndarray, b: np.ndarray, k_mult: int, mn_mult: int) -> np.ndarray:
    """a [M, K] @ b [N, K]^T in int8 -> int32 on the default device, zero padded first."""
    m, k = a.shape
    n = b.shape[0]
    ap = np.zeros((_up(m, mn_mult), _up(k, k_mult)), np.int8)
    bp = np.zeros((_up(n, mn_mult), _up(k, k_mult)), np.int8)
    ap[:m, :k], bp[:n, :k] = a, b
    return np.asarray(_int8_dot(jnp.asarray(ap), jnp.asarray(bp)))[:m, :n]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="int8_dot_padding.md")
    p.add_argument("--seconds", type=float, default=60.0)
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    dev = jax.devices()[0]
    start = time.perf_counter()
    results = {name: {"tested": 0, "wrong": []} for name in SCHEMES}
    cut = False
    for m, n in MN:
        for k in KS:
            if time.perf_counter() - start > args.seconds:
                cut = True
                break
            for values in ("pm1", "full"):
                if values == "pm1":
                    a, b = (
                        rng.choice(np.array([-1, 1], np.int8), (m, k)),
                        rng.choice(np.array([-1, 1], np.int8), (n, k)),
                    )
                else:
                    a = rng.integers(-127, 128, (m, k)).astype(np.int8)
                    b = rng.integers(-127, 128, (n, k)).astype(np.int8)
                want = a.astype(np.int64) @ b.astype(np.int64).T
                for name, (km, mnm) in SCHEMES.items():
                    got = padded_dot(a, b, km, mnm)
                    results[name]["tested"] += 1
                    bad = int(np.sum(got != want))
                    if bad:
                        results[name]["wrong"].append(f"{m}x{n}x{k} {values} ({bad} entries)")
        if cut:
            break
    lines = [
        f"# int8 dot_general exactness by padding ({dev.platform} / {dev.device_kind}, jax {jax.__version__})",
        "",
        f"Shapes (M, N) in {MN}, K in {KS}; +-1 and full-range int8 operands; "
        f"{'CUT by --seconds: partial' if cut else 'complete'} ({time.perf_counter() - start:.0f} s).",
        "",
        "| padding | products tested | wrong | wrong shapes (first 12) |",
        "| --- | ---: | ---: | --- |",
    ]
    for name, r in results.items():
        lines.append(f"| {name} | {r['tested']} | {len(r['wrong'])} | {'; '.join(r['wrong'][:12]) or '-'} |")
    text = "\n".join(lines)
    print(text)
    with open(args.out, "w") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()
