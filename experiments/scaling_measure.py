"""The numbers SCALING.md is built from, measured on this machine (prints markdown tables).

    python experiments/scaling_measure.py                 # everything (a few minutes on 2 cores)
    python experiments/scaling_measure.py --skip-steps    # without the ImageNet-sized train steps

1. JPEG decode per image with Pillow on one core (the process pinned to CPU 0): two real photographs
   shipped with scikit-learn (640x427), and the same re-encoded at ImageNet's typical 500x375,
   quality 90; median of ``--repeats`` decodes. Then the training transform on the decoded image
   (extremeq.data.imagenet.train_transform: random-resized crop, bilinear resize to 224, flip).
2. Checkpoint size and save time of the whole training state (parameters, batch-norm statistics,
   optimizer state, sign snapshot) of XNOR-Net AlexNet and binary (XNOR) ResNet-18, through
   extremeq.train.checkpoint.Checkpointer (orbax, synchronous, SHA-256 of every array); median of 3.
   Every float array is first filled with random normals, as after training (orbax compresses, and
   a fresh optimizer state of zeros would take almost no room).
3. One training step (forward, backward, optimizer) per image, on this CPU: CIFAR ResNet-20 (batch
   32, 32x32) against ImageNet ResNet-18 and AlexNet (batch 4, 224x224), XNOR; and the step's FLOPs
   from XLA's cost analysis of the compiled step, per image. The ratio of the ImageNet networks'
   cost to ResNet-20's is what SCALING.md scales the H100 ResNet-20 numbers by.
"""

from __future__ import annotations

import argparse
import functools
import io
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def _median_s(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def jpeg_rows(repeats: int) -> list[str]:
    import sklearn
    from PIL import Image

    from extremeq.data.imagenet import train_transform

    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    folder = os.path.join(os.path.dirname(sklearn.__file__), "datasets", "images")
    rows = [
        "| image | pixels | JPEG bytes | decode ms (1 core) | + train transform ms | images/s/core |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    rng = np.random.default_rng(0)
    for name in ("china.jpg", "flower.jpg"):
        with open(os.path.join(folder, name), "rb") as f:
            original = f.read()
        small = io.BytesIO()
        Image.open(io.BytesIO(original)).convert("RGB").resize((500, 375), Image.BICUBIC).save(
            small, "JPEG", quality=90
        )
        for label, data in ((f"{name} as shipped", original), (f"{name} at 500x375 q90", small.getvalue())):

            def decode(data=data):
                return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))

            image = decode()
            t_dec = _median_s(decode, repeats)
            t_aug = _median_s(lambda image=image: train_transform({"image": image, "label": 0}, rng), repeats)
            h, w = image.shape[:2]
            rows.append(
                f"| {label} | {w}x{h} | {len(data):,} | {1e3 * t_dec:.2f} | {1e3 * t_aug:.2f} | "
                f"{1 / (t_dec + t_aug):,.0f} |"
            )
    os.sched_setaffinity(0, set(range(os.cpu_count())))
    return rows


def _state(config_spec: str, num_classes: int, shape):
    from extremeq.train.config import load_config_file, validate_config
    from extremeq.train.model import build_quantized_model, model_spec
    from extremeq.train.state import OptimizerSpec, create_train_state
    from extremeq.train.steps import make_mesh

    config = validate_config(load_config_file(os.path.join(REPO, "configs", config_spec)), num_devices=1)
    net = build_quantized_model(config, num_classes, shape)
    spec = model_spec(net)
    optimizer = OptimizerSpec.from_config(config, 100, spec)
    return config, spec, optimizer, create_train_state(net, optimizer, make_mesh(1))


NETS = (
    ("XNOR-Net AlexNet", "imagenet_alexnet.py:xnor", 1000, (224, 224, 3), 4),
    ("XNOR ResNet-18", "imagenet_resnet18.py:xnor", 1000, (224, 224, 3), 4),
    ("XNOR ResNet-20 (CIFAR)", "cifar10_resnet.py:resnet20:xnor", 10, (32, 32, 3), 32),
)


def checkpoint_rows(folder: str) -> list[str]:
    import jax

    from extremeq.train.checkpoint import Checkpointer

    rows = [
        "| network | parameters | state arrays | bytes on disk | save s (median of 3) | MB/s |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for label, spec, classes, shape, _ in NETS[:2]:
        _, _, _, state = _state(spec, classes, shape)
        leaves, treedef = jax.tree_util.tree_flatten(state)
        keys = jax.random.split(jax.random.key(0), len(leaves))
        state = jax.tree_util.tree_unflatten(
            treedef,
            [
                jax.random.normal(k, x.shape, x.dtype) if jax.numpy.issubdtype(x.dtype, jax.numpy.floating) else x
                for k, x in zip(keys, leaves)
            ],
        )
        n_params = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(state.params))
        n_bytes = sum(x.nbytes for x in jax.tree_util.tree_leaves(state))
        times, size = [], 0
        for i in range(3):
            wd = os.path.join(folder, f"ckpt{i}")
            ckpt = Checkpointer(wd, keep=1)
            t0 = time.perf_counter()
            ckpt.save(1, state.model_vars(), state.train_vars(), {"step": 1})
            times.append(time.perf_counter() - t0)
            ckpt.close()
            size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(wd) for f in fs)
            shutil.rmtree(wd)
        t = statistics.median(times)
        rows.append(
            f"| {label} | {n_params / 1e6:.1f} M | {n_bytes / 1e6:,.0f} MB | {size / 1e6:,.0f} MB | "
            f"{t:.2f} | {size / 1e6 / t:,.0f} |"
        )
        del state
    return rows


def step_rows(repeats: int, imagenet_batch: int = 4) -> list[str]:
    import jax

    from extremeq.train.steps import Inputs, Objective, train_step

    rows = [
        "| network | batch | ms / step (median) | ms / image | XLA GFLOP / image | vs ResNet-20 per image |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    base = None
    for label, spec, classes, shape, batch in reversed(NETS):
        batch = imagenet_batch if classes == 1000 else batch
        config, model, optimizer, state = _state(spec, classes, shape)
        inputs = Inputs.from_config(config, state_mesh(), (0.5,) * 3, (0.25,) * 3, streamed=True)
        step = jax.jit(
            functools.partial(
                train_step, model=model, optimizer=optimizer, inputs=inputs, objective=Objective.from_config(config)
            ),
            donate_argnums=(0,),
        )
        rng = np.random.default_rng(0)
        x = jax.device_put(rng.integers(0, 256, (batch, *shape), dtype=np.uint8))
        y = jax.device_put(rng.integers(0, classes, (batch,), dtype=np.int32))
        key = jax.random.key(0)
        cost = step.lower(state, x, y, key, None).compile().cost_analysis()
        cost = cost[0] if isinstance(cost, list) else cost
        flops = float(cost.get("flops", float("nan"))) / batch
        holder = {"state": jax.block_until_ready(step(state, x, y, key, None))}  # compile + warm-up

        def one(holder=holder, step=step, x=x, y=y, key=key):
            holder["state"] = jax.block_until_ready(step(holder["state"], x, y, key, None))

        t = _median_s(one, repeats)
        per_image = t / batch
        base = base or per_image
        rows.append(
            f"| {label} | {batch} | {1e3 * t:,.0f} | {1e3 * per_image:,.1f} | {flops / 1e9:.2f} | "
            f"{per_image / base:.1f}x |"
        )
        del holder, state
    return rows


def state_mesh():
    from extremeq.train.steps import make_mesh

    return make_mesh(1)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=30, help="decodes per image (median)")
    p.add_argument("--step-repeats", type=int, default=3, help="timed train steps per network (median)")
    p.add_argument("--skip-steps", action="store_true")
    p.add_argument("--skip-checkpoints", action="store_true")
    p.add_argument("--skip-jpeg", action="store_true")
    p.add_argument(
        "--imagenet-batch",
        type=int,
        default=4,
        help="batch of the ImageNet-sized steps (on a GPU: the per-device batch of SCALING.md's table)",
    )
    args = p.parse_args()
    import jax
    import PIL

    print(
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores visible, load average "
        f"{', '.join(f'{v:.1f}' for v in os.getloadavg())} at the start; Python {platform.python_version()}, "
        f"jax {jax.__version__}, Pillow {PIL.__version__}\n"
    )
    if not args.skip_jpeg:
        print("\n".join(jpeg_rows(args.repeats)) + "\n")
    if not args.skip_checkpoints:
        folder = tempfile.mkdtemp(prefix="scaling_ckpt_")
        try:
            print("\n".join(checkpoint_rows(folder)) + "\n")
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    if not args.skip_steps:
        print("\n".join(step_rows(args.step_repeats, args.imagenet_batch)) + "\n")
    print(f"load average at the end: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
