"""Language-model training step: extremeq's FP / BitNet b1.58 / 1-bit BitNet against a PyTorch GPT with
nanoGPT's CPU configuration, measured side by side in one run.

    PYTHONPATH=. python experiments/bench_lm_step.py [--rounds 8] [--steps 10] [--torch .peers/torch/bin/python]

nanoGPT's CPU example (4 layers, 4 heads, width 128, context 64, batch 12, AdamW): the PyTorch peer is
``experiments/peers/torch_gpt.py`` (its own model, written for this benchmark) in its own virtualenv,
run as a subprocess. Each round runs ``--steps`` steps of the peer, then of every extremeq step, so
all of them see the same machine load; the table gives the median over all rounds (after
``--warmup`` steps each) and the ratio to the float extremeq step on the same devices. extremeq's
step is ``extremeq.train.lm.make_train_step`` (one jitted program: batch sampling, forward, loss,
backward, clipping, AdamW) on the config ``configs/shakespeare_char.py``, on one XLA:CPU device and
on ``--cpu-devices`` devices (the config's ``cpu_devices``, what the CLI runs: the batch split over
one device per core, ``extremeq.train.distributed.split_cpu``). Random tokens (vocabulary 65); each
step is timed to ``block_until_ready`` of the loss (the peer's ``loss.item()``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import jax
import numpy as np

from extremeq.train.config import load_config_file
from extremeq.train.distributed import split_cpu
from extremeq.train.lm import make_train_step
from extremeq.train.steps import make_mesh

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs", "shakespeare_char.py")
VARIANTS = [("FP (float32)", "fp"), ("BitNet b1.58 (ternary)", "bitnet"), ("BitNet (1-bit)", "bitnet_1bit")]


class JaxStep:
    def __init__(self, variant: str, devices: int, tokens):
        config = load_config_file(f"{CONFIG}:{variant}")
        _, self.params, self.opt_state, self.fn, _ = make_train_step(config, 65, tokens, mesh=make_mesh(devices))
        self.step = 0

    def run(self, n: int) -> list[float]:
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            self.params, self.opt_state, loss = self.fn(self.params, self.opt_state, self.step)
            loss.block_until_ready()
            times.append(time.perf_counter() - t0)
            self.step += 1
        return times


class TorchStep:
    def __init__(self, python: str, threads: int = 0):
        env = dict(os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {}))
        self.proc = subprocess.Popen(
            [python, os.path.join(ROOT, "experiments", "peers", "torch_gpt.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.versions = self._ask("versions")

    def _ask(self, line: str):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def run(self, n: int) -> list[float]:
        return self._ask(f"steps {n}")

    def close(self):
        self.proc.stdin.write("quit\n")
        self.proc.stdin.flush()
        self.proc.wait(timeout=30)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--steps", type=int, default=10, help="steps per round per row")
    ap.add_argument("--warmup", type=int, default=5, help="steps per row run (and dropped) before timing")
    ap.add_argument("--torch", default=".peers/torch/bin/python", help="python of the PyTorch venv ('' = skip)")
    ap.add_argument(
        "--torch-threads",
        type=int,
        default=0,
        help="PyTorch's intra-op threads (0 = its default, one per core, as nanoGPT ran)",
    )
    ap.add_argument("--cpu-devices", type=int, default=2, help="XLA:CPU devices of the data-parallel rows")
    args = ap.parse_args(argv)
    split_cpu(args.cpu_devices)  # before anything touches a device
    tokens = np.random.default_rng(0).integers(0, 65, 1_000_000).astype(np.int32)
    rows = [(f"{name}, 1 device", variant, 1) for name, variant in VARIANTS]
    if args.cpu_devices > 1:
        rows += [(f"{name}, {args.cpu_devices} CPU devices", variant, args.cpu_devices) for name, variant in VARIANTS]
    runners = {name: JaxStep(variant, devices, tokens) for name, variant, devices in rows}
    fp_of = {name: f"FP (float32), {name.split(', ', 1)[1]}" for name, _, _ in rows}
    peer = TorchStep(args.torch, args.torch_threads) if args.torch else None
    if peer:
        runners = {"nanoGPT config, PyTorch eager": peer, **runners}
    for r in runners.values():
        r.run(args.warmup)
    times = {name: [] for name in runners}
    load = [os.getloadavg()[0]]
    for _ in range(args.rounds):
        for name, r in runners.items():
            times[name] += r.run(args.steps)
        load.append(os.getloadavg()[0])
    if peer:
        peer.close()
    print(
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, {platform.processor() or 'cpu'}; "
        f"jax {jax.__version__}, backend {jax.default_backend()}"
        + (f"; PyTorch {peer.versions['torch']} ({peer.versions['threads']} threads)" if peer else "")
    )
    print(
        f"Load average (1 min) during the run: {min(load):.1f} - {max(load):.1f}; {args.rounds} rounds x "
        f"{args.steps} steps per row, interleaved, after {args.warmup} warm-up steps\n"
    )
    print("| step | median ms | p10 - p90 ms | / extremeq FP, same devices |")
    print("| --- | --- | --- | --- |")
    for name, t in times.items():
        ms = 1000 * np.asarray(t)
        ref = np.median(times[fp_of.get(name, "FP (float32), 1 device")])
        print(
            f"| {name} | {np.median(ms):.1f} | {np.percentile(ms, 10):.1f} - {np.percentile(ms, 90):.1f} | "
            f"{np.median(t) / ref:.2f}x |"
        )


if __name__ == "__main__":
    sys.exit(main())
