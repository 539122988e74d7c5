"""Prototype: the fastest exact binary 3x3 convolution on XLA:CPU, per shape (issue 13).

y = conv(sign(x) padded with +1, sign(W)) for the conv net of ``bench_inference_peers.py`` (32x32x64
-> 64, 32x32x64 -> 128 s2, 16x16x128 -> 128, 16x16x128 -> 256 s2; "SAME"), batch 1 and 64. Every
formulation returns the same integers (checked exactly against the first):

* ``float_pad``: +-1 float input padded with +1 explicitly, XLA's float conv "VALID" (the packed
  conv's current CPU path),
* ``float_border``: XLA's float conv with its own zero padding, plus the 1-channel border term
  conv(border mask, sum_c W) (the training layer's trick),
* ``int8_dot``: +-1 int8 input padded with +1, the kh*kw strided slices concatenated into patches
  [M, kh*kw*C], one int8 x int8 -> int32 ``dot_general`` against the +-1 int8 weights,
* ``int8_conv``: XLA's convolution on int8 operands with an int32 result,
* ``popcount``: sign bits packed per pixel (C/32 words), patches of words, XNOR-popcount against
  the packed weights: K - 2 popcount(a ^ w) (``extremeq.kernels``' XLA popcount path).

    taskset -c 0 python experiments/proto_packed_conv.py --repeats 20
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from extremeq.kernels.xnor_matmul import xnor_matmul_xla_popcount
from extremeq.packing import pack_signs

DN = ("NHWC", "HWIO", "NHWC")
SHAPES = [
    (32, 64, 64, 1),
    (32, 64, 128, 2),
    (16, 128, 128, 1),
    (16, 128, 256, 2),  # (H, C, O, stride)
    (32, 16, 16, 1),
    (32, 16, 32, 2),
    (16, 32, 32, 1),
    (8, 64, 64, 1),
]  # ResNet-20's binary convs


def _pads(h, s):
    return lax.padtype_to_pads((h, h), (3, 3), (s, s), "SAME")


def _slices(xp, s, ho):
    n, c = xp.shape[0], xp.shape[-1]
    return [
        lax.slice(xp, (0, i, j, 0), (n, i + s * (ho - 1) + 1, j + s * (ho - 1) + 1, c), (1, s, s, 1))
        for i in range(3)
        for j in range(3)
    ]


def make(variant, w, s, h):
    """f(x float NHWC) -> int32/float conv(sign x +1-padded, sign w)."""
    pads = _pads(h, s)
    ho = (h + sum(pads[0]) - 3) // s + 1
    wsign = jnp.where(w >= 0, 1.0, -1.0)
    c, o = w.shape[2], w.shape[3]
    if variant == "float_pad":

        def f(x):
            xs = jnp.pad(jnp.where(x >= 0, 1.0, -1.0), [(0, 0), *pads, (0, 0)], constant_values=1.0)
            return lax.conv_general_dilated(xs, wsign, (s, s), "VALID", dimension_numbers=DN)
    elif variant == "float_border":
        border = 1.0 - jnp.pad(jnp.ones((1, h, h, 1)), [(0, 0), *pads, (0, 0)])
        bterm = lax.conv_general_dilated(
            border, jnp.sum(wsign, 2, keepdims=True), (s, s), "VALID", dimension_numbers=DN
        )

        def f(x):
            xs = jnp.where(x >= 0, 1.0, -1.0)
            return lax.conv_general_dilated(xs, wsign, (s, s), pads, dimension_numbers=DN) + bterm
    elif variant == "int8_dot":
        w8 = wsign.astype(jnp.int8).reshape(9 * c, o)

        def f(x):
            xs = jnp.pad(jnp.where(x >= 0, jnp.int8(1), jnp.int8(-1)), [(0, 0), *pads, (0, 0)], constant_values=1)
            p = jnp.concatenate(_slices(xs, s, ho), axis=-1)
            return lax.dot_general(p, w8, (((3,), (0,)), ((), ())), preferred_element_type=jnp.int32)
    elif variant == "int8_conv":
        w8 = wsign.astype(jnp.int8)

        def f(x):
            xs = jnp.pad(jnp.where(x >= 0, jnp.int8(1), jnp.int8(-1)), [(0, 0), *pads, (0, 0)], constant_values=1)
            return lax.conv_general_dilated(
                xs, w8, (s, s), "VALID", dimension_numbers=DN, preferred_element_type=jnp.int32
            )
    elif variant == "popcount":
        wb = pack_signs(wsign.reshape(9, c, o).transpose(2, 0, 1), axis=-1).reshape(o, -1)  # [O, 9 ceil(C/32)]
        kpad = wb.shape[1] * 32

        def f(x):
            words = pack_signs(x, axis=-1)  # [N, H, W, ceil(C/32)], bit set where x >= 0
            valid = pack_signs(jnp.ones((c,)), axis=-1)  # +1 in every real channel, 0 past C
            wp = jnp.pad(words, [(0, 0), *pads, (0, 0)], constant_values=jnp.uint32(0xFFFFFFFF)) & valid
            p = jnp.concatenate(_slices(wp, s, ho), axis=-1)
            n = p.shape[0]
            y = xnor_matmul_xla_popcount(p.reshape(-1, p.shape[-1]), wb, k=kpad) - (kpad - 9 * c)
            return y.reshape(n, ho, ho, o)
    else:
        raise ValueError(variant)
    return jax.jit(f)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", default="float_pad,float_border,int8_dot,int8_conv,popcount")
    p.add_argument("--batches", default="1,64")
    p.add_argument("--repeats", type=int, default=20)
    args = p.parse_args(argv)
    variants = args.variants.split(",")
    rng = np.random.default_rng(0)
    print(
        f"jax {jax.__version__}, {len(os.sched_getaffinity(0))} CPU(s) in this process's affinity, "
        f"load average {', '.join(f'{v:.1f}' for v in os.getloadavg())}\n"
    )
    print("| layer (H, C -> O, stride) | batch | " + " | ".join(f"{v}, ms" for v in variants) + " |")
    print("| --- | ---: | " + " | ".join("---:" for _ in variants) + " |")
    for h, c, o, s in SHAPES:
        w = jnp.asarray(rng.standard_normal((3, 3, c, o)), jnp.float32)
        for b in (int(v) for v in args.batches.split(",")):
            x = jnp.asarray(rng.standard_normal((b, h, h, c)), jnp.float32)
            fns = {v: make(v, w, s, h) for v in variants}
            ref = np.asarray(fns[variants[0]](x)).astype(np.int64)
            for v, f in fns.items():
                got = np.asarray(f(x)).astype(np.int64)
                if not np.array_equal(got, ref):
                    raise AssertionError(f"{v} differs at {(h, c, o, s)} batch {b}")
            times = {v: [] for v in variants}
            for _ in range(args.repeats + 2):
                for v, f in fns.items():
                    t0 = time.perf_counter()
                    jax.block_until_ready(f(x))
                    times[v].append(time.perf_counter() - t0)
            med = {v: statistics.median(t[2:]) * 1e3 for v, t in times.items()}
            print(
                f"| {h}x{h}, {c} -> {o}, s{s} | {b} | " + " | ".join(f"{med[v]:.3f}" for v in variants) + " |",
                flush=True,
            )


if __name__ == "__main__":
    main()
