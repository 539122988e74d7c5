"""Decode speed of packed BitNet language models on this machine: float GPT, BitNet training graph,
packed 2-bit words through ``ternary_weight_matmul`` (``decode="words"``, the default of
``extremeq.inference.lm``) and int8 codes unpacked once at load time (``decode="codes"``).

    PYTHONPATH=. python experiments/bench_lm_decode.py [--tokens 32] [--rounds 3] [--sizes small,large]

Models (random weights, BitNet b1.58 linears, rotary positions, vocabulary 65): "small" = the
shakespeare_char model (4 layers, width 128, 4 heads, context 64); "large" = 12 layers, width 768,
12 heads, context 256 (~85M parameters, GPT-2 small's body). Batch-1 greedy decoding of ``--tokens``
tokens after an 8-token prompt (``extremeq.nn.generate``, KV cache); each round decodes once per row,
rows interleaved so that every row sees the same load; tokens/s = tokens / median time over the
rounds, after a warm-up decode (compilation). "weight bytes held" counts the linear layers'
weights on the device: float32 kernels; packed words + gamma; words + gamma + int8 codes.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import jax
import numpy as np
from flax import nnx

from extremeq.inference.lm import export_lm
from extremeq.nn.bitlinear import BitLinear
from extremeq.nn.generate import generate
from extremeq.nn.gpt import GPT

SIZES = {
    "small": {"block_size": 64, "num_layers": 4, "num_heads": 4, "width": 128},
    "large": {"block_size": 256, "num_layers": 12, "num_heads": 12, "width": 768},
}


def linear_bytes(module) -> int:
    total = 0
    for _, m in nnx.iter_modules(module):
        if isinstance(m, (nnx.Linear, BitLinear)):
            total += m.kernel[...].nbytes
        elif hasattr(m, "gamma") and hasattr(m, "w"):
            total += m.w[...].nbytes + m.gamma[...].nbytes + (m.codes[...].nbytes if m.codes is not None else 0)
    return total


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sizes", default="small,large")
    args = ap.parse_args(argv)
    prompt = np.arange(8, dtype=np.int32) % 65
    print(
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores; jax {jax.__version__}, backend "
        f"{jax.default_backend()}; batch 1, greedy, {args.tokens} tokens after an 8-token prompt, median of "
        f"{args.rounds} interleaved rounds\n"
    )
    print("| model | parameters | decode | tok/s | / float | weight bytes held | load average |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for size in args.sizes.split(","):
        kw = SIZES[size]
        fp = GPT(65, **kw, linear="fp", rngs=nnx.Rngs(0))
        bn = GPT(65, **kw, linear="bitnet", rngs=nnx.Rngs(0))
        words = export_lm(bn, decode="words")
        codes = export_lm(bn, decode="codes")
        rows = {
            "float32": fp,
            "BitNet training graph": bn,
            "packed 2-bit words (kernel)": words.module,
            "packed, int8 codes unpacked at load": codes.module,
        }
        params = sum(np.size(v) for v in jax.tree_util.tree_leaves(nnx.state(fp, nnx.Param)))
        for m in rows.values():
            generate(m, prompt, args.tokens)  # compile
        times = {k: [] for k in rows}
        load = [os.getloadavg()[0]]
        for _ in range(args.rounds):
            for name, m in rows.items():
                t0 = time.perf_counter()
                generate(m, prompt, args.tokens)
                times[name].append(time.perf_counter() - t0)
            load.append(os.getloadavg()[0])
        same = np.array_equal(generate(words.module, prompt, args.tokens), generate(codes.module, prompt, args.tokens))
        base = args.tokens / np.median(times["float32"])
        for name, m in rows.items():
            rate = args.tokens / np.median(times[name])
            print(
                f"| {size} | {params / 1e6:.1f}M | {name} | {rate:.1f} | {rate / base:.2f}x | "
                f"{linear_bytes(m) / 2**20:.2f} MiB | {min(load):.1f} - {max(load):.1f} |",
                flush=True,
            )
        print(f"| {size} | | words and codes decode the same tokens: {same} | | | | |", flush=True)


if __name__ == "__main__":
    main()
