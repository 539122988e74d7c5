"""ResNet-20 train step: extremeq beside PyTorch on the CPU, in one run (issue 18, item 3).

extremeq's steps are ``experiments/bench_train.py``'s (the real jitted step: gather from resident
uint8 data, pad-4 crop + flip, forward, backward, SGD momentum + weight decay); PyTorch's run in a
worker process from its own virtualenv (``experiments/peers/torch_resnet.py``: the same network,
augmentation, loss and optimizer, eager float32, NCHW and channels_last, and BWN). One step of each
in turn (round-robin, so that load from other processes hits all alike), median of ``--steps``
steps after ``--warmup``. The worker waits on its stdin with ``OMP_WAIT_POLICY=PASSIVE``, so its
threads do not spin while extremeq runs.

PyTorch virtualenv (CPU wheel; plain ``pip install torch`` would pull a multi-GB CUDA build):

    python3 -m venv .peers/torch && .peers/torch/bin/pip install torch==2.13.0 numpy
    python experiments/bench_train_peers.py --steps 10 --write BENCHMARKS.md

``--cpu-devices 2`` adds each method with the batch split over two XLA:CPU devices (one per core of
this host; ``config.cpu_devices`` of the training CLI).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

SECTION = "## Training step vs PyTorch (CPU)"
TORCH_LABELS = {
    "fp_nchw": "PyTorch FP, NCHW",
    "fp_cl": "PyTorch FP, channels_last",
    "bwn_cl": "PyTorch BWN, channels_last",
}


class TorchWorker:
    def __init__(self, python, batch, variants):
        env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
        self.proc = subprocess.Popen(
            [python, os.path.join(HERE, "peers", "torch_resnet.py"), str(batch), ",".join(variants)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )

    def ask(self, cmd):
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        out = json.loads(self.proc.stdout.readline())
        if "error" in out:
            raise FloatingPointError(out["error"])
        return out

    def close(self):
        self.proc.stdin.write("quit\n")
        self.proc.stdin.flush()
        self.proc.wait(timeout=60)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--methods", default="fp,bwn,xnor", help="extremeq methods")
    p.add_argument("--torch-variants", default="fp_nchw,fp_cl,bwn_cl")
    p.add_argument("--torch-python", default=".peers/torch/bin/python")
    p.add_argument("--write", default="", help="markdown file whose section to replace or append")
    p.add_argument(
        "--before",
        action="store_true",
        help="also time FP with extremeq.nn.conv.MATERIALIZE_ON_CPU = False (XLA's own fusion)",
    )
    p.add_argument(
        "--cpu-devices",
        type=int,
        default=1,
        help="also time each method with the batch split over this many XLA:CPU devices (config.cpu_devices)",
    )
    args = p.parse_args(argv)

    import jax
    from bench_train import build_step, machine_info, write_section

    from extremeq.train.distributed import split_cpu

    split_cpu(args.cpu_devices)  # before anything touches a device

    load0 = os.getloadavg()
    runners = {}
    from extremeq.nn import conv as nn_conv

    if args.before:  # the step as XLA fuses it without extremeq.nn.conv.materialize
        nn_conv.MATERIALIZE_ON_CPU = False
        run, _ = build_step("fp", "resnet20", args.batch)
        run()  # traced now, with materialization off
        nn_conv.MATERIALIZE_ON_CPU = True
        runners["extremeq FP, conv inputs not materialized (before)"] = ("jax", run)
    for m in args.methods.split(","):
        run, _ = build_step(m, "resnet20", args.batch)
        run()
        runners[f"extremeq {m.upper() if m != 'fp' else 'FP'}"] = ("jax", run)
        if args.cpu_devices > 1:
            run, _ = build_step(m, "resnet20", args.batch, devices=args.cpu_devices)
            run()
            runners[f"extremeq {m.upper() if m != 'fp' else 'FP'}, {args.cpu_devices} CPU devices"] = ("jax", run)
    tv = args.torch_variants.split(",")
    worker = TorchWorker(args.torch_python, args.batch, tv)
    versions = worker.ask("versions")
    for v in tv:
        runners[TORCH_LABELS[v]] = ("torch", v)

    def once(kind, what):
        if kind == "torch":
            return worker.ask(what)["seconds"]
        t0 = time.perf_counter()
        what()
        return time.perf_counter() - t0

    for _ in range(args.warmup):
        for kind, what in runners.values():
            once(kind, what)
    times = {k: [] for k in runners}
    for i in range(args.steps):
        for k, (kind, what) in runners.items():
            times[k].append(once(kind, what))
        print(
            f"step {i}: " + ", ".join(f"{k} {t[-1] * 1e3:.0f} ms" for k, t in times.items()),
            file=sys.stderr,
            flush=True,
        )
    worker.close()
    med = {k: statistics.median(t) for k, t in times.items()}
    ref_key = TORCH_LABELS["fp_cl"] if "fp_cl" in tv else next(k for k in med if k.startswith("PyTorch"))
    ref = med[ref_key]
    rows = [f"| {k} | {t * 1e3:.0f} | {args.batch / t:,.0f} | {t / ref:.2f}x |" for k, t in med.items()]
    table = "\n".join(
        [
            f"| train step, CIFAR ResNet-20, batch {args.batch} | ms / step (median) | images / s | vs {ref_key} |",
            "| --- | ---: | ---: | ---: |",
        ]
        + rows
    )
    load = ", ".join(f"{x:.1f}" for x in load0)
    text = (
        f"{SECTION}\n\n`python experiments/bench_train_peers.py --steps {args.steps} --batch {args.batch}`: "
        f"extremeq's jitted train step (`bench_train.py`) and PyTorch's eager step "
        f"(`experiments/peers/torch_resnet.py`: same network, crop/flip, loss, SGD momentum + weight decay, "
        f"float32), one step of each in turn, median of {args.steps} after {args.warmup} warm-up rounds.\n"
        f"Machine: {machine_info()}; load average {load} at the start. PyTorch {versions['torch']} "
        f"({versions['threads']} threads, oneDNN {'on' if versions['mkldnn'] else 'off'}); "
        f"Python {platform.python_version()}; jax {jax.__version__}.\n\n{table}\n"
    )
    print(text)
    if args.write:
        write_section(args.write, text, SECTION)


if __name__ == "__main__":
    main()
