"""Train-step time of a quantized CIFAR ResNet-20 against the float one.

One jitted training step (the real one: gather the batch from device-resident data, pad-4 crop +
flip, forward, backward, SGD momentum + weight decay, latent clip) on synthetic CIFAR-shaped data
(uint8 32x32x3, 10 classes), batch 128 by default; median over ``--steps`` timed steps after
``--warmup`` steps, each step waited on with ``jax.block_until_ready``. The goal: every
quantized method within 1.3x of FP.

    python experiments/bench_train.py --steps 50
    python experiments/bench_train.py --steps 20 --write BENCHMARKS.md   # replaces its own section
    python experiments/bench_train.py --epoch --epochs 3 --out epoch.md  # whole CIFAR-10 epochs

``--epoch`` times whole epochs instead: 50000 synthetic training images resident on the device,
floor(50000 / batch) steps dispatched back to back (no wait between steps, as the training loop
runs them), one wait at the end; one untimed epoch first (compilation), then the median of
``--epochs`` epochs per method. The issue's goal for it: a ResNet-20 epoch in under 3 s on one H100.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECTION = "## Training step"


def build_step(method: str, model: str, batch: int, num_images: int = 0, devices: int = 1):
    """A zero-argument callable that runs one jitted train step of ``method`` and waits for it
    (``num_images > 0``: one whole epoch over that many resident images, waited on at the end);
    ``devices``: the batch split over that many devices (data parallel, as ``config.num_devices``)."""
    from extremeq.data import epoch_indices
    from extremeq.train.config import load_config_file, validate_config
    from extremeq.train.distributed import replicate
    from extremeq.train.model import build_quantized_model, model_spec
    from extremeq.train.state import OptimizerSpec, create_train_state
    from extremeq.train.steps import Inputs, Objective, in_memory_train_step, make_mesh

    config = load_config_file(os.path.join(REPO, "configs", f"cifar10_resnet.py:{model}:{method}"))
    config.batch_size = batch
    config.num_devices = devices
    config = validate_config(config)
    n = num_images or batch * 4
    rng = np.random.default_rng(0)
    net = build_quantized_model(config, 10, (32, 32, 3))
    spec, mesh = model_spec(net), make_mesh(devices)
    x = replicate(rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), mesh)
    y = replicate(rng.integers(0, 10, (n,), dtype=np.int32), mesh)
    optimizer = OptimizerSpec.from_config(config, n // batch, spec)
    state = create_train_state(net, optimizer, mesh)
    shuffle_key, aug_key = jax.random.split(jax.random.key(config.seed))
    shuffle_key, aug_key = replicate((shuffle_key, aug_key), mesh)
    plan = replicate(epoch_indices(shuffle_key, n, batch, 0), mesh)
    inputs = Inputs.from_config(config, mesh, mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26))
    step = jax.jit(
        functools.partial(
            in_memory_train_step,
            model=spec,
            optimizer=optimizer,
            inputs=inputs,
            objective=Objective.from_config(config),
        ),
        donate_argnums=(0,),
    )
    holder = [state]

    def run_once():
        holder[0] = jax.block_until_ready(step(holder[0], x, y, plan, aug_key, None))

    def run_epoch():
        state = holder[0]
        for _ in range(n // batch):
            state = step(state, x, y, plan, aug_key, None)
        holder[0] = jax.block_until_ready(state)

    def check():
        if not bool(jnp.isfinite(holder[0].sums["loss"])):
            raise FloatingPointError(f"{method}: non-finite loss in the benchmark")

    return (run_epoch if num_images else run_once), check


def bench(methods, model: str, batch: int, steps: int, warmup: int, num_images: int = 0) -> dict:
    """Median seconds per step (per epoch with ``num_images``) per method. The methods are timed
    round-robin (one step of each in turn), so that load from other processes on a shared machine
    hits all of them alike."""
    runners = {m: build_step(m, model, batch, num_images) for m in methods}
    for m, (run_once, _) in runners.items():
        for _ in range(warmup):
            run_once()
        print(f"{m}: compiled and warmed up", file=sys.stderr, flush=True)
    times = {m: [] for m in methods}
    for _ in range(steps):
        for m, (run_once, _) in runners.items():
            t0 = time.perf_counter()
            run_once()
            times[m].append(time.perf_counter() - t0)
        print("timed: " + ", ".join(f"{m} {t[-1]:.3f} s" for m, t in times.items()), file=sys.stderr, flush=True)
    for _, check in runners.values():
        check()
    return {m: statistics.median(t) for m, t in times.items()}


def machine_info() -> str:
    import flax
    import optax

    dev = jax.devices()[0]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{dev.platform.upper()} {getattr(dev, 'device_kind', '')}, {os.cpu_count()} CPU cores visible "
        f"({platform.processor() or platform.machine()}), load average {load} at the end (other "
        f"processes share the machine: compare ratios, not absolute times); Python "
        f"{platform.python_version()}, jax {jax.__version__}, flax {flax.__version__}, optax {optax.__version__}"
    )


def write_section(path: str, text: str, section: str = SECTION) -> None:
    """Replaces the ``section`` ('## Training step') of ``path`` (up to the next '## ') or appends it."""
    old = open(path).read() if os.path.isfile(path) else "# Benchmarks\n"
    lines = old.splitlines(keepends=True)
    start = next((i for i, l in enumerate(lines) if l.strip() == section), None)
    if start is None:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        new = "".join(lines[:start]) + text + ("\n" if end < len(lines) else "") + "".join(lines[end:])
    with open(path, "w") as f:
        f.write(new)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=50, help="timed steps per method")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (compile included)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--model", default="resnet20")
    p.add_argument("--methods", default="fp,bwn,twn,ttq,xnor")
    p.add_argument("--write", default="", help="markdown file whose Training step section to replace")
    p.add_argument("--epoch", action="store_true", help="time whole CIFAR-10-sized epochs")
    p.add_argument("--epochs", type=int, default=3, help="timed epochs per method with --epoch")
    p.add_argument("--images", type=int, default=50000, help="training images per epoch with --epoch")
    p.add_argument("--out", default="", help="also write the table to this markdown file")
    args = p.parse_args(argv)
    methods = args.methods.split(",")
    if methods[0] != "fp":
        methods = ["fp"] + [m for m in methods if m != "fp"]
    if args.epoch:
        return epoch_table(args, methods)
    times = bench(methods, args.model, args.batch, args.steps, args.warmup)
    fp = times["fp"]
    rows = [f"| {m} | {t * 1e3:.1f} | {args.batch / t:,.0f} | {t / fp:.2f}x |" for m, t in times.items()]
    table = "\n".join(["| method | ms / step (median) | images / s | vs FP |", "| --- | --- | --- | --- |"] + rows)
    verdict = "all within" if all(t / fp <= 1.3 for t in times.values()) else "NOT all within"
    text = (
        f"{SECTION}\n\n`python experiments/bench_train.py --steps {args.steps} --batch {args.batch}`: "
        f"one jitted train step of CIFAR {args.model} (gather + crop/flip + forward + backward + SGD "
        f"momentum), batch {args.batch}, synthetic 32x32x3 data, median of {args.steps} steps after "
        f"{args.warmup} warm-up steps, `block_until_ready` per step, methods timed round-robin.\n"
        f"Machine: {machine_info()}.\n\n{table}\n\nGoal: quantized <= 1.3x FP; {verdict} on this machine.\n"
    )
    print(text)
    if args.write:
        write_section(args.write, text)


def epoch_table(args, methods):
    steps = args.images // args.batch
    times = bench(methods, args.model, args.batch, args.epochs, 1, num_images=args.images)
    fp = times["fp"]
    rows = [
        f"| {m} | {t:.2f} | {t / steps * 1e3:.2f} | {steps * args.batch / t:,.0f} | {t / fp:.2f}x |"
        for m, t in times.items()
    ]
    table = "\n".join(
        ["| method | s / epoch (median) | ms / step | images / s | vs FP |", "| --- | --- | --- | --- | --- |"] + rows
    )
    text = (
        f"`python experiments/bench_train.py --epoch --epochs {args.epochs} --batch {args.batch} "
        f"--images {args.images}`: one CIFAR-10 epoch of {args.model} ({steps} steps of batch "
        f"{args.batch} over {args.images} synthetic uint8 32x32x3 images resident on the device; the real "
        f"train step: gather, crop/flip, forward, backward, SGD momentum, latent clip), steps dispatched "
        f"back to back and waited on once per epoch; median of {args.epochs} epochs after one untimed "
        f"epoch, methods round-robin.\nMachine: {machine_info()}.\n\n{table}\n"
    )
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    return times


if __name__ == "__main__":
    main()
