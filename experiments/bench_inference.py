"""Inference throughput: the exported (packed) model against the training graph in eval mode.

    python experiments/bench_inference.py [--batches 1,256] [--repeats 30] [--out bench_inference.md]

For each model (quantized by the precision policy, first and last layer float as in the papers)
both paths are jitted the same way (``jax.jit`` of ``nnx.merge(graphdef, state)(x)``), warmed up,
then timed ``--repeats`` times with ``block_until_ready``; the table gives the median images/s
and the speed-up of the packed model. Weights are random (throughput does not depend on them);
they are drawn with NumPy into an abstract model so that no initialiser is compiled.

The training graph multiplies float32 fake-quantized weights (Q_w(W) recomputed from the latent
weights at every call); the packed model reads 1-bit/2-bit words and calls ``extremeq.kernels``
(dense layers: XNOR-popcount where the inputs are binary, packed-weight matmul where they are not;
convolutions: ``packed_conv``, whose ``backend="auto"`` picks the path per platform).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import flax
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import extremeq
from extremeq.inference import fresh_rng_state
from extremeq.nn import method_rules, quantize_model
from extremeq.nn.models import build_model

MODELS = {  # name: (recipe, method)
    "MLP 784-1024x3-10 BWN": (
        {
            "model": {"name": "mlp", "hidden": [1024, 1024, 1024], "activation": "hardtanh"},
            "num_classes": 10,
            "input_shape": [28, 28, 1],
        },
        "bwn",
    ),
    "MLP 784-1024x3-10 XNOR": (
        {
            "model": {"name": "mlp", "hidden": [1024, 1024, 1024], "activation": "hardtanh"},
            "num_classes": 10,
            "input_shape": [28, 28, 1],
        },
        "xnor",
    ),
    "MLP 784-1024x3-10 TWN": (
        {
            "model": {"name": "mlp", "hidden": [1024, 1024, 1024], "activation": "hardtanh"},
            "num_classes": 10,
            "input_shape": [28, 28, 1],
        },
        "twn",
    ),
    "LeNet-5 XNOR (MNIST)": (
        {"model": {"name": "lenet5", "activation": "hardtanh"}, "num_classes": 10, "input_shape": [28, 28, 1]},
        "xnor",
    ),
    "LeNet-5 BWN (MNIST)": (
        {"model": {"name": "lenet5", "activation": "hardtanh"}, "num_classes": 10, "input_shape": [28, 28, 1]},
        "bwn",
    ),
    # padded 3x3 convolutions whose binary inputs are padded with +1 (LeNet-5's are unpadded)
    "ResNet-20 XNOR (CIFAR-10)": (
        {"model": {"name": "resnet20", "activation": "hardtanh"}, "num_classes": 10, "input_shape": [32, 32, 3]},
        "xnor",
    ),
}


def random_model(recipe, method, seed=0):
    """The quantized zoo model with NumPy-drawn weights (kernels N(0, 1/fan_in), random BN statistics)."""

    def build():
        m = build_model(recipe["model"], recipe["num_classes"], recipe["input_shape"], nnx.Rngs(seed))
        quantize_model(m, method_rules(method))
        return m

    return fill_random(nnx.eval_shape(build), seed)


def fill_random(model, seed=0):
    """Draws every variable of an (abstract) model with NumPy, in eval mode (see random_model)."""
    rng = np.random.default_rng(seed)
    state = nnx.state(model, nnx.Not(nnx.RngState))
    for path, var in nnx.to_flat_state(state):
        v, name = var.get_value(), path[-1]
        if name == "kernel":
            val = rng.standard_normal(v.shape) / np.sqrt(np.prod(v.shape[:-1]))
        elif name == "var":  # trained-looking batch-norm statistics, so that no pre-activation sits
            val = np.exp(0.5 * rng.standard_normal(v.shape))  # exactly on a binarization threshold
        elif name in ("mean", "bias"):
            val = 0.3 * rng.standard_normal(v.shape)
        elif name in ("scale", "ttq_wp", "ttq_wn"):
            val = np.ones(v.shape)
        else:
            val = np.zeros(v.shape)
        var.set_value(jnp.asarray(val, v.dtype))
    nnx.update(model, state)
    fresh_rng_state(model)
    model.eval()
    return model


def jitted_eval(model):
    graphdef, state = nnx.split(model)
    f = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))
    return lambda x: f(state, x)


def median_seconds(fn, x, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        jax.block_until_ready(fn(x))
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(x))
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def machine() -> str:
    dev = jax.devices()[0]
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{dev.platform.upper()} {getattr(dev, 'device_kind', '')}; host {cpu}, {os.cpu_count()} cores "
        f"(load average {load:.1f} at the start); jax {jax.__version__}, jaxlib "
        f"{jax.lib.__version__ if hasattr(jax.lib, '__version__') else '?'}, flax {flax.__version__}, "
        f"numpy {np.__version__}, Python {platform.python_version()}"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", default="1,256")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated names from MODELS")
    parser.add_argument("--out", default=None, help="also write the markdown table here")
    args = parser.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]
    header = machine()
    print(header, flush=True)
    rows = []
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        if name not in MODELS:
            raise SystemExit(f"model {name!r} unknown; choose from {list(MODELS)}")
        recipe, method = MODELS[name]
        model = random_model(recipe, method)
        packed = extremeq.export(model, recipe=recipe)
        train_graph = jitted_eval(model)
        for b in batches:
            x = jnp.asarray(np.random.default_rng(b).standard_normal((b, *recipe["input_shape"])), jnp.float32)
            agree = float(jnp.mean(jnp.argmax(packed(x), -1) == jnp.argmax(train_graph(x), -1)))
            t_ref = median_seconds(train_graph, x, args.repeats)
            t_packed = median_seconds(packed, x, args.repeats)
            rows.append((name, b, b / t_ref, b / t_packed, t_ref / t_packed, agree, packed.nbytes))
            print(
                f"{name:28s} batch {b:4d}: training graph {b / t_ref:10.0f} img/s, packed {b / t_packed:10.0f} "
                f"img/s ({t_ref / t_packed:.2f}x), same class {100 * agree:.1f}%",
                flush=True,
            )
    lines = [
        f"Machine: {header}. Median of {args.repeats} timed calls after 3 warm-up calls, "
        "`block_until_ready`, both paths jitted.",
        "",
        "| model | batch | training graph (eval), img/s | exported (packed), img/s | speed-up | same class | packed arrays |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, b, ref, pk, sp, agree, nbytes in rows:
        lines.append(
            f"| {name} | {b} | {ref:,.0f} | {pk:,.0f} | {sp:.2f}x | {100 * agree:.1f}% | {nbytes / 1024:,.1f} KiB |"
        )
    text = "\n".join(lines)
    print("\n" + text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return rows


if __name__ == "__main__":
    main()
