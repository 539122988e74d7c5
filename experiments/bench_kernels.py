"""Benchmark the bit-packed kernels against dense matmuls on the same device.

Prints a markdown table and writes it to --out. Every variant: jitted, warmed up, then the
median of many calls timed one by one with ``jax.block_until_ready``, on random data (never
zeros). Each packed result is checked against an exact reference (XNOR: the int8 ``dot``
backend; weight-only: dequantize-then-dot in float32).

Cold caches (``--cold``): a GPU's L2 (50 MB on an H100, 60 MB on an H200) holds a packed 8192^2
weight between calls, which would flatter the packed kernels. ``rotate`` (the GPU/TPU default)
cycles every variant, baselines included, through distinct data sets covering at least
``--rotate-mb`` (256 MB) so that no set is still cached when it is used again; ``flush`` writes a
``--flush-mb`` buffer (untimed) before every timed call; ``none`` (the CPU default) alternates two
sets. The preamble says which. The ``weight GB/s`` column is the bytes of the weight operand (packed
words for the packed kernels, the dense B for the baselines) read per call over the median time.

    PYTHONPATH=. python experiments/bench_kernels.py --out bench.md            # GPU/TPU sizes
    PYTHONPATH=. python experiments/bench_kernels.py --quick --out bench.md    # CPU-sized

Shapes (full): M = N = K in {4096, 8192}; weight-bound M in {1, 4, 16, 128} with K = N = 8192,
K = 4096 x N = 11008 and K = 11008 x N = 4096. --quick: {1024, 2048}; M in {1, 4, 16, 128} with
K = N = 2048 and with K = 1024, N = 2752; plus a row sweep that decides the CPU backend rule of
xnor_matmul.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform as py_platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from extremeq import kernels
from extremeq.kernels import tiles
from extremeq.kernels.backends import platform, resolve
from extremeq.kernels.common import mask_padding_bits
from extremeq.kernels.xla import xnor_matmul_dot

HEADER = "| shape (M x N x K) | variant | ms | GOP/s | weight GB/s | vs bf16 dot | vs f32 dot | check |"
RULE = "| --- | --- | --- | --- | --- | --- | --- | --- |"
COLD = {"args": None, "flush": None}  # set in main(): the options and, for --cold flush, the flush step


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="CPU-sized shapes (1024-2048)")
    p.add_argument("--out", default="bench_kernels.md", help="markdown file to write")
    p.add_argument("--repeats", type=int, default=20, help="timed calls per variant (median)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument(
        "--budget-s", type=float, default=8.0, help="fewer repeats (at least 3) for variants slower than budget/repeats"
    )
    p.add_argument(
        "--sweep-tiles",
        choices=["auto", "yes", "no"],
        default="auto",
        help="time every GPU tile configuration on the first shape (auto: on GPU)",
    )
    p.add_argument(
        "--act-dtype",
        choices=["auto", "bfloat16", "float32"],
        default="auto",
        help="activations of the weight-only kernels (auto: bf16 on GPU/TPU, f32 on CPU)",
    )
    p.add_argument(
        "--skip-slow-cpu", action="store_true", help="skip bf16 jnp.dot on CPU (emulated, very slow at large sizes)"
    )
    p.add_argument(
        "--cold",
        choices=["auto", "rotate", "flush", "none"],
        default="auto",
        help="keep caches cold between timed calls (auto: rotate on GPU/TPU, none on CPU)",
    )
    p.add_argument("--rotate-mb", type=float, default=256.0, help="--cold rotate: MB of distinct data per variant")
    p.add_argument("--max-sets", type=int, default=64, help="--cold rotate: at most this many data sets")
    p.add_argument("--flush-mb", type=float, default=128.0, help="--cold flush: MB written before each timed call")
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------- timing
def warm(fn, datasets, warmup):
    """Compile and warm up; returns the time of one warm call (s)."""
    jax.block_until_ready(fn(*datasets[0]))
    for i in range(warmup):
        jax.block_until_ready(fn(*datasets[i % len(datasets)]))
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*datasets[1 % len(datasets)]))
    return time.perf_counter() - t0


class Table:
    def __init__(self, path, preamble):
        self.path, self.preamble, self.rows = path, preamble, []
        self.flush()

    def add(self, row):
        self.rows.append(row)
        print(row, flush=True)
        self.flush()  # a run cut short by a timeout still leaves its rows

    def section(self, title):
        self.add(f"| **{title}** | | | | | | | |")

    def flush(self):
        with open(self.path, "w") as f:
            f.write("\n".join(self.preamble + ["", HEADER, RULE] + self.rows) + "\n")


# ---------------------------------------------------------------------------------- data
def n_sets(bytes_per_set: int) -> int:
    """Data sets per variant: 2, or under --cold rotate enough to cover --rotate-mb."""
    args = COLD["args"]
    if args is None or args.cold != "rotate":
        return 2
    return int(min(args.max_sets, max(2, math.ceil(args.rotate_mb * 2**20 / max(bytes_per_set, 1)))))


def keys(seed, per_set, bytes_per_set):
    """Keys for the data sets of one variant: [n, per_set] (n >= 2, so no call reuses the previous
    inputs; more under --cold rotate)."""
    n = n_sets(bytes_per_set)
    return jax.random.split(jax.random.PRNGKey(seed), n * per_set).reshape(n, per_set, -1)


def dense_sets(m, n, k, dtype, seed):
    out = []
    for ka, kb in keys(seed, 2, (m * k + k * n) * jnp.dtype(dtype).itemsize):
        if dtype == jnp.int8:
            a = jax.random.randint(ka, (m, k), -127, 128, jnp.int32).astype(jnp.int8)
            b = jax.random.randint(kb, (k, n), -127, 128, jnp.int32).astype(jnp.int8)
        else:
            a = jax.random.normal(ka, (m, k), dtype)
            b = jax.random.normal(kb, (k, n), dtype)
        out.append((a, b))
    return out


def bit_sets(m, n, k, seed):
    w = -(-k // 32)
    out = []
    for ka, kb in keys(seed, 2, (m + n) * w * 4):
        a = mask_padding_bits(jax.random.bits(ka, (m, w), jnp.uint32), k)
        b = mask_padding_bits(jax.random.bits(kb, (n, w), jnp.uint32), k)
        out.append((a, b))
    return out


def weight_sets(m, n, k, per_word, act_dtype, seed):
    w = -(-k // per_word)
    out = []
    for kx, kw, ks in keys(seed, 3, m * k * jnp.dtype(act_dtype).itemsize + n * w * 4):
        x = jax.random.normal(kx, (m, k), act_dtype)
        words = jax.random.bits(kw, (n, w), jnp.uint32)
        if per_word == 32:
            words = mask_padding_bits(words, k)
        else:
            lo = words & jnp.uint32(0x55555555)  # codes 00, 01, 11 only: the high bit needs the low
            words = lo | (((words >> 1) & lo) << 1)
            words = mask_padding_bits(words, k, bits_per_element=2)
        alpha = jax.random.uniform(ks, (n,), jnp.float32, 0.5, 2.0)
        out.append((x, words, alpha))
    return out


# ---------------------------------------------------------------------------------- rows
class ShapeGroup:
    """All variants of one shape, timed round-robin: call r of every variant runs before call
    r + 1 of any, so load from other jobs on a shared host spreads over all of them alike."""

    def __init__(self, table, shape, args):
        self.table, self.shape, self.args, self.variants = table, shape, args, []

    def add(self, name, fn, datasets, check_fn=None, base_key=None, weight_bytes=None):
        self.variants.append(
            dict(
                name=name,
                fn=jax.jit(fn),
                data=datasets,
                check=check_fn,
                base_key=base_key,
                note=None,
                weight_bytes=weight_bytes,
            )
        )

    def note(self, text):
        self.variants.append(dict(name=None, note=text))

    def run(self):
        a = self.args
        live = []
        for v in self.variants:
            if v["note"] is not None:
                continue
            try:
                first = warm(v["fn"], v["data"], a.warmup)
            except Exception as e:  # noqa: BLE001 - one failing variant must not end the run
                text = str(e).strip().splitlines()[0][:160] if str(e).strip() else ""
                v["error"] = f"{type(e).__name__}: {text}"
                continue
            v["n"] = max(3, min(a.repeats, int(a.budget_s / max(first, 1e-9))))
            v["times"] = []
            live.append(v)
        for r in range(max((v["n"] for v in live), default=0)):
            for v in live:
                if r < v["n"]:
                    args = v["data"][r % len(v["data"])]
                    if COLD["flush"] is not None:
                        jax.block_until_ready(COLD["flush"]())  # untimed: evicts the caches
                    t0 = time.perf_counter()
                    jax.block_until_ready(v["fn"](*args))
                    v["times"].append(time.perf_counter() - t0)
        base = {}
        for v in live:
            v["ms"] = statistics.median(v["times"]) * 1e3
            if v["base_key"]:
                base[v["base_key"]] = v["ms"]
        m, n, k = self.shape
        flops = 2.0 * m * n * k
        for v in self.variants:
            head = f"| {m} x {n} x {k} | "
            if v["note"] is not None:
                self.table.add(head + v["note"] + " | | | | | |")
            elif "error" in v:
                self.table.add(head + f"{v['name']} | - | - | - | - | - | FAILED ({v['error']}) |")
            else:
                ms = v["ms"]
                vs = [f"{base[key] / ms:.2f}x" if key in base else "-" for key in ("bf16", "f32")]
                check = v["check"]() if v["check"] else "-"
                gbs = f"{v['weight_bytes'] / (ms * 1e-3) / 1e9:.3g}" if v["weight_bytes"] else "-"
                self.table.add(
                    head + f"{v['name']} (n={v['n']}) | {ms:.3f} | {flops / (ms * 1e-3) / 1e9:.3g} | "
                    f"{gbs} | {vs[0]} | {vs[1]} | {check} |"
                )


def xnor_check(fn, data, k):
    def check():
        a, b = data[0]
        want = xnor_matmul_dot(a, b, k=k)
        got = jax.jit(fn)(a, b)
        bad = int(jnp.sum(got != want))
        return "exact" if bad == 0 else f"**WRONG: {bad} entries**"

    return check


def weight_check(fn, ref, data):
    def check():
        x, w, alpha = data[0]
        got = jax.jit(fn)(x, w, alpha).astype(jnp.float32)
        want = jax.jit(ref)(x.astype(jnp.float32), w, alpha)
        err = float(jnp.max(jnp.abs(got - want)) / (jnp.max(jnp.abs(want)) + 1e-30))
        return f"max err {err:.1e} (rel. to max)"

    return check


def dense_baselines(g, on_cpu, skip_slow_cpu):
    m, n, k = g.shape
    if not (on_cpu and skip_slow_cpu):
        g.add(
            "bf16 jnp.dot",
            lambda a, b: jnp.dot(a, b),
            dense_sets(m, n, k, jnp.bfloat16, 1),
            base_key="bf16",
            weight_bytes=2 * k * n,
        )
    g.add(
        "f32 jnp.dot",
        lambda a, b: jnp.dot(a, b),
        dense_sets(m, n, k, jnp.float32, 2),
        base_key="f32",
        weight_bytes=4 * k * n,
    )
    g.add(
        "int8 lax.dot_general -> int32",
        lambda a, b: lax.dot_general(a, b, (((1,), (0,)), ((), ())), preferred_element_type=jnp.int32),
        dense_sets(m, n, k, jnp.int8, 3),
        weight_bytes=k * n,
    )


def xnor_rows(g, accel, tile_cfgs):
    m, n, k = g.shape
    data = bit_sets(m, n, k, 4)
    for backend in ("xla_popcount", "dot"):
        fn = lambda a, b, be=backend: kernels.xnor_matmul(a, b, k, backend=be)  # noqa: E731
        g.add(f"xnor_matmul {backend}", fn, data, xnor_check(fn, data, k), weight_bytes=4 * n * -(-k // 32))
    if accel:
        for cfg in tile_cfgs:
            fn = lambda a, b, c=cfg: kernels.xnor_matmul(a, b, k, backend="pallas", **c)  # noqa: E731
            g.add(
                "xnor_matmul pallas " + tile_name(cfg),
                fn,
                data,
                xnor_check(fn, data, k),
                weight_bytes=4 * n * -(-k // 32),
            )
    else:
        g.note(f"xnor_matmul auto -> {resolve('bench', 'auto', 'xnor_matmul')} | (row above)")


def weight_rows(g, accel, act_dtype, tile_cfgs):
    m, n, k = g.shape
    for kind, per_word, op, ref in (
        ("binary", 32, kernels.binary_weight_matmul, kernels.binary_weight_matmul_reference),
        ("ternary", 16, kernels.ternary_weight_matmul, kernels.ternary_weight_matmul_reference),
    ):
        data = weight_sets(m, n, k, per_word, act_dtype, 5)
        # block_m is clamped to the padded M (extremeq.kernels.tiles.gpu_block_m): label the tile that runs,
        # and time each distinct one once.
        run_tiles = []
        for c in tile_cfgs:
            c = dict(c, block_m=tiles.gpu_block_m(c["block_m"], m)) if c and "block_m" in c else c
            if c not in run_tiles:
                run_tiles.append(c)
        variants = [("dot", {})] + ([("pallas", c) for c in run_tiles] if accel else [])
        for backend, cfg in variants:
            fn = lambda x, w, a, o=op, be=backend, c=cfg: o(x, w, a, backend=be, **c)  # noqa: E731
            name = f"{kind}_weight_matmul {backend}" + (" " + tile_name(cfg) if cfg else "")
            g.add(
                name + f" ({jnp.dtype(act_dtype).name} x)",
                fn,
                data,
                weight_check(fn, ref, data),
                weight_bytes=4 * n * -(-k // per_word),
            )


def tile_name(cfg):
    if not cfg:
        return "default tiles"
    return "{block_m}x{block_n}, {block_words} words, {num_warps} warps, {num_stages} stages".format(**cfg)


def main(argv=None):
    args = parse_args(argv)
    plat = platform()
    accel = plat in ("gpu", "tpu")
    on_cpu = plat == "cpu"
    sweep = args.sweep_tiles == "yes" or (args.sweep_tiles == "auto" and plat == "gpu")
    act_dtype = {"auto": jnp.bfloat16 if accel else jnp.float32, "bfloat16": jnp.bfloat16, "float32": jnp.float32}[
        args.act_dtype
    ]
    if args.quick:
        squares, wk = [1024, 2048], [(2048, 2048), (1024, 2752)]
    else:
        squares, wk = [4096, 8192], [(8192, 8192), (4096, 11008), (11008, 4096)]
    if args.cold == "auto":
        args.cold = "rotate" if accel else "none"
    COLD["args"] = args
    if args.cold == "flush":
        scratch = jnp.zeros((int(args.flush_mb * 2**20) // 4,), jnp.float32)
        COLD["flush"] = jax.jit(lambda: scratch + 1.0)  # reads and writes flush_mb MB
    cold = {
        "rotate": f"each variant cycles through distinct random data sets covering >= {args.rotate_mb:g} MB "
        f"(at most {args.max_sets} sets), so the L2 holds none of them when it is used again",
        "flush": f"a {args.flush_mb:g} MB buffer is read and written (untimed) before every timed call",
        "none": "two random data sets alternated (caches may hold the weights between calls)",
    }[args.cold]

    dev = jax.devices()[0]
    import jaxlib

    preamble = [
        "# extremeq kernel benchmark",
        "",
        f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}",
        f"- device: {dev.platform} / {dev.device_kind} ({len(jax.devices())} device(s)); host CPUs: {os.cpu_count()}",
        f"- jax {jax.__version__}, jaxlib {jaxlib.__version__}, numpy {np.__version__}, "
        f"Python {py_platform.python_version()}",
        f"- load average at start (other jobs share this host): {', '.join(f'{v:.1f}' for v in os.getloadavg())}",
        f"- command: {' '.join([os.path.basename(sys.argv[0])] + sys.argv[1:])}",
        f"- median of up to {args.repeats} timed calls (n per row) after {args.warmup} warm-up calls, "
        "each call timed alone with jax.block_until_ready; the variants of one shape run "
        "round-robin (call r of each before call r+1 of any). "
        "'vs' columns = baseline ms / row ms (> 1: faster than the dense dot of the same shape).",
        f"- caches (--cold {args.cold}): {cold}; the same for every row, baselines included.",
        "- weight GB/s: bytes of the weight operand per call (packed words, or the dense B) / median time.",
        "- GOP/s counts 2*M*N*K operations (multiply + add) for every row, packed or not.",
    ]
    table = Table(args.out, preamble)

    wo_tiles = [c.kwargs() for c in tiles.WEIGHT_ONLY_GPU_TILES] if plat == "gpu" else []
    xnor_tiles = [c.kwargs() for c in tiles.XNOR_GPU_TILES] if plat == "gpu" else []
    default_tile = [{}] if plat == "tpu" else []

    table.section("compute-bound: M = N = K")
    for i, sz in enumerate(squares):
        g = ShapeGroup(table, (sz, sz, sz), args)
        dense_baselines(g, on_cpu, args.skip_slow_cpu)
        xnor_rows(g, accel, (xnor_tiles if (sweep and i == 0) else xnor_tiles[:1]) or default_tile)
        weight_rows(g, accel, act_dtype, wo_tiles[:1] or default_tile)
        g.run()

    table.section("weight-bound: M small, weights K x N")
    first = True
    for k, n in wk:
        for m in (1, 4, 16, 128):
            g = ShapeGroup(table, (m, n, k), args)
            dense_baselines(g, on_cpu, args.skip_slow_cpu)
            weight_rows(g, accel, act_dtype, (wo_tiles if (sweep and first) else wo_tiles[:1]) or default_tile)
            xnor_rows(g, accel, xnor_tiles[:1] or default_tile)
            g.run()
            first = False

    if on_cpu:
        table.section("CPU backend rule of xnor_matmul: rows M at N = K = 2048")
        for m in (1, 16, 64, 256, 1024):
            g = ShapeGroup(table, (m, 2048, 2048), args)
            g.add(
                "f32 jnp.dot",
                lambda a, b: jnp.dot(a, b),
                dense_sets(m, 2048, 2048, jnp.float32, 2),
                base_key="f32",
                weight_bytes=4 * 2048 * 2048,
            )
            xnor_rows(g, False, ())
            g.run()
    table.preamble.append(f"- load average at end: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    table.flush()
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
