"""Packed inference beside Larq Compute Engine on the CPU, same networks, same weights, one run
(issue 13).

Two networks with NumPy-drawn weights (``bench_inference.fill_random``), quantized by
``method_rules("bnn")`` (binary weights and sign inputs; first and last layer float):

* ``mlp``: the zoo MLP 784-1024-1024-1024-10 (hardtanh), its two middle layers binary,
* ``convnet``: float 3x3 conv 3->64 + BN, four binary 3x3 convs (64->64, 64->128 s2, 128->128,
  128->256 s2; "SAME", +1 padding) each + BN, hardtanh, global average pool, float dense 256->10.

Engines, timed one call each in turn (round-robin, so that load from other processes hits all
alike), median of ``--repeats`` calls after warm-up: extremeq's exported model (``extremeq.export``),
extremeq's training graph in eval mode (jitted), and LCE (``experiments/peers/lce_models.py`` in
its own virtualenv: the same networks built in Larq with the same weights, converted by
``lce.convert_keras_model``, run by LCE's ``Interpreter`` with ``use_indirect_bgemm=True,
use_xnnpack=True``). ``--threads 1`` pins this process and the worker to one core (XLA:CPU then
runs one thread; LCE gets ``num_threads=1``); ``--threads 2`` uses both. The table also gives the
share of inputs on which each engine predicts the training graph's class, and the file sizes
(extremeq's ``.npz`` from ``PackedModel.save``, LCE's ``.tflite``).

    python experiments/bench_inference_peers.py --threads 1 --write BENCHMARKS.md
    python experiments/bench_inference_peers.py --threads 2 --write BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SECTION = "## Packed inference vs LCE (CPU)"


def _pin(threads: int) -> None:
    if threads == 1 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def build_models():
    """{name: (quantized float model in eval mode, input shape, recipe or None)}."""
    import jax.numpy as jnp
    from bench_inference import fill_random
    from flax import nnx

    from extremeq.nn import method_rules, quantize_model
    from extremeq.nn.models import build_model

    class ConvNet(nnx.Module):
        """float conv 3->64 + BN -> 4 binary 3x3 convs + BN -> hardtanh -> GAP -> dense 10."""

        def __init__(self, rngs):
            self.stem = nnx.Conv(3, 64, (3, 3), padding="SAME", use_bias=False, rngs=rngs)
            self.stem_bn = nnx.BatchNorm(64, epsilon=1e-5, rngs=rngs)
            plan = [(64, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2)]
            self.convs = nnx.List(
                [nnx.Conv(i, o, (3, 3), strides=s, padding="SAME", use_bias=False, rngs=rngs) for i, o, s in plan]
            )
            self.bns = nnx.List([nnx.BatchNorm(o, epsilon=1e-5, rngs=rngs) for _, o, _ in plan])
            self.head = nnx.Linear(256, 10, rngs=rngs)

        def __call__(self, x):
            x = jnp.clip(self.stem_bn(self.stem(x)), -1.0, 1.0)
            for conv, bn in zip(self.convs, self.bns):
                x = jnp.clip(bn(conv(x)), -1.0, 1.0)
            return self.head(jnp.mean(x, axis=(1, 2)))

    mlp_recipe = {
        "model": {"name": "mlp", "hidden": [1024, 1024, 1024], "activation": "hardtanh"},
        "num_classes": 10,
        "input_shape": [28, 28, 1],
    }

    def mlp():
        m = build_model(mlp_recipe["model"], 10, (28, 28, 1), nnx.Rngs(0))
        quantize_model(m, method_rules("bnn"))
        return m

    def convnet():
        m = ConvNet(nnx.Rngs(0))
        quantize_model(m, method_rules("bnn"))
        return m

    return {
        "mlp": (fill_random(nnx.eval_shape(mlp), 0), (28, 28, 1), mlp_recipe),
        "convnet": (fill_random(nnx.eval_shape(convnet), 1), (32, 32, 3), None),
    }


def peer_arrays(name, model):
    """The float weights the Larq builders take, named ``<model>/<layer>/<array>``."""
    import numpy as np

    def bn(prefix, m):
        return {f"{prefix}/{k}": np.asarray(getattr(m, k)[...], np.float32) for k in ("scale", "bias", "mean", "var")}

    out = {}
    if name == "mlp":
        layers = [(model.stem, model.stem_bn)] + [(b.dense, b.bn) for b in model.blocks]
        for i, (d, b) in enumerate(layers):
            out[f"mlp/dense{i}/kernel"] = np.asarray(d.kernel[...], np.float32)
            out.update(bn(f"mlp/bn{i}", b))
        out["mlp/head/kernel"] = np.asarray(model.head.kernel[...], np.float32)
        out["mlp/head/bias"] = np.asarray(model.head.bias[...], np.float32)
        spec = {
            "epsilon": float(model.stem_bn.epsilon),
            "hidden": [int(model.stem.out_features)] + [int(b.dense.out_features) for b in model.blocks],
        }
    else:
        out["convnet/stem/kernel"] = np.asarray(model.stem.kernel[...], np.float32)
        out.update(bn("convnet/stem_bn", model.stem_bn))
        for i, (c, b) in enumerate(zip(model.convs, model.bns)):
            out[f"convnet/conv{i}/kernel"] = np.asarray(c.kernel[...], np.float32)
            out.update(bn(f"convnet/bn{i}", b))
        out["convnet/head/kernel"] = np.asarray(model.head.kernel[...], np.float32)
        out["convnet/head/bias"] = np.asarray(model.head.bias[...], np.float32)
        spec = {
            "epsilon": float(model.stem_bn.epsilon),
            "binary": [[int(c.out_features), int(c.strides[0])] for c in model.convs],
        }
    return out, spec


class LceWorker:
    def __init__(self, python, folder):
        env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
        self.proc = subprocess.Popen(
            [python, os.path.join(HERE, "peers", "lce_models.py"), folder],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self._read()

    def _read(self):
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the LCE worker ended early (see its stderr above)")
        return json.loads(line)

    def ask(self, *words):
        self.proc.stdin.write(" ".join(map(str, words)) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self):
        self.proc.stdin.write("quit\n")
        self.proc.stdin.flush()
        self.proc.wait(timeout=60)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1, choices=(1, 2))
    p.add_argument("--batches", default="1,64")
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--models", default="mlp,convnet")
    p.add_argument("--lce-python", default=".peers/lce/bin/python")
    p.add_argument("--write", default="", help="markdown file: append/replace this thread count's table")
    p.add_argument(
        "--async-dispatch",
        action="store_true",
        help="keep JAX's asynchronous CPU dispatch (default: jax_cpu_enable_async_dispatch=False)",
    )
    args = p.parse_args(argv)
    _pin(args.threads)
    sys.path.insert(0, os.path.dirname(HERE))
    sys.path.insert(0, HERE)
    import jax

    if not args.async_dispatch:  # run each call in the calling thread, as TFLite does
        jax.config.update("jax_cpu_enable_async_dispatch", False)
    import jax.numpy as jnp
    import numpy as np
    from bench_inference import jitted_eval, machine
    from bench_train import write_section

    import extremeq

    batches = [int(b) for b in args.batches.split(",")]
    names = args.models.split(",")
    load0 = os.getloadavg()
    folder = tempfile.mkdtemp(prefix="lce_peer_")
    models, weights, spec, inputs, files = {}, {}, {"models": names, "batches": batches}, {}, {}
    for name, (model, shape, recipe) in build_models().items():
        if name not in names:
            continue
        packed = extremeq.export(model, recipe=recipe)
        models[name] = (jitted_eval(model), packed)
        arrays, spec[name] = peer_arrays(name, model)
        weights.update(arrays)
        for b in batches:
            x = np.random.default_rng(100 + b).standard_normal((b, *shape)).astype(np.float32)
            inputs[f"{name}_{b}"] = x.reshape(b, -1) if name == "mlp" else x
        if recipe is not None:
            files[name] = packed.save(os.path.join(folder, f"{name}.npz"))
        else:
            files[name] = packed.nbytes
    np.savez(os.path.join(folder, "weights.npz"), **weights)
    np.savez(os.path.join(folder, "inputs.npz"), **inputs)
    with open(os.path.join(folder, "spec.json"), "w") as f:
        json.dump(spec, f)
    worker = LceWorker(args.lce_python, folder)
    versions, sizes = worker.ask("versions"), worker.ask("sizes")

    rows = []
    for name in names:
        graph, packed = models[name]
        for b in batches:
            x_np = inputs[f"{name}_{b}"]
            x = jnp.asarray(x_np.reshape(b, *spec_shape(name)))
            ref = np.argmax(np.asarray(graph(x)), -1)
            same_packed = float(np.mean(np.argmax(np.asarray(packed(x)), -1) == ref))
            out = os.path.join(folder, "lce_out.npy")
            worker.ask("predict", name, b, args.threads, out)
            same_lce = float(np.mean(np.argmax(np.load(out), -1) == ref))

            def run_jax(f, x=x):
                t0 = time.perf_counter()
                jax.block_until_ready(f(x))
                return time.perf_counter() - t0

            engines = {
                "lce": lambda name=name, b=b: worker.ask("time", name, b, args.threads)["seconds"],
                "packed": lambda f=packed: run_jax(f),
                "graph": lambda f=graph: run_jax(f),
            }
            times = {k: [] for k in engines}
            for i in range(args.repeats + 5):
                for k, f in engines.items():
                    t = f()
                    if i >= 5:
                        times[k].append(t)
            med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
            rows.append((name, b, med, same_packed, same_lce))
            print(
                f"{name} batch {b}: "
                + ", ".join(f"{k} {v:.3f} ms" for k, v in med.items())
                + f"; same class packed {same_packed:.0%}, LCE {same_lce:.0%}",
                file=sys.stderr,
                flush=True,
            )
    worker.close()
    label = {
        "mlp": "MLP 784-1024-1024-1024-10, middle two layers binary (weights and inputs)",
        "convnet": "conv net 32x32x3: float conv 3->64, 4 binary 3x3 convs (64, 128 s2, 128, 256 s2), GAP, dense",
    }
    lines = [
        "| network | batch | LCE best, ms | extremeq packed, ms | extremeq training graph, ms | "
        "packed vs LCE | same class as training graph (packed / LCE) | file (extremeq / LCE) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, b, med, sp, sl in rows:
        lines.append(
            f"| {label[name]} | {b} | {med['lce']:.3f} | {med['packed']:.3f} | {med['graph']:.3f} | "
            f"{med['lce'] / med['packed']:.2f}x | {sp:.0%} / {sl:.0%} | "
            f"{files[name] / 1024:,.0f} KiB / {sizes[f'{name}_{b}'] / 1024:,.0f} KiB |"
        )
    load = ", ".join(f"{v:.1f}" for v in load0)
    sub = f"### {args.threads} thread{'s' if args.threads > 1 else ''}"
    text = (
        f"{sub}\n\n`python experiments/bench_inference_peers.py --threads {args.threads} --repeats "
        f"{args.repeats}`: median ms per call, engines round-robin, {args.repeats} calls each after 5 warm-up "
        f"rounds. {machine()}; load average {load} (1, 5, 15 min) at the start. LCE {versions['lce']} (TensorFlow "
        f"{versions['tensorflow']}, larq {versions['larq']}; `use_indirect_bgemm=True, use_xnnpack=True`, "
        f"num_threads={args.threads}). extremeq with `jax_cpu_enable_async_dispatch="
        f'{bool(args.async_dispatch)}`. "packed vs LCE" > 1 means extremeq is faster. extremeq\'s file is '
        f"the saved `.npz` (MLP) or the packed arrays' bytes (conv net, no zoo recipe to save); LCE's "
        f"the `.tflite` for that batch size.\n\n" + "\n".join(lines) + "\n"
    )
    print(text)
    if args.write:
        _write_subsection(args.write, text, sub, write_section)


def spec_shape(name):
    return (28, 28, 1) if name == "mlp" else (32, 32, 3)


def _write_subsection(path, text, sub, write_section):
    """Keeps the other thread count's subsection of the section, replaces or appends this one."""
    old = ""
    if os.path.isfile(path):
        with open(path) as f:
            old = f.read()
    start = old.find(SECTION + "\n")
    body = ""
    if start >= 0:
        end = old.find("\n## ", start + len(SECTION))
        body = old[start + len(SECTION) : end if end >= 0 else len(old)]
    parts = {}
    for chunk in body.split("\n### ")[1:]:
        head = "### " + chunk.split("\n", 1)[0]
        parts[head] = "### " + chunk.rstrip("\n") + "\n"
    parts[sub] = text
    intro = body.split("\n### ")[0].strip("\n") if body else ""
    new = SECTION + "\n\n" + (intro + "\n\n" if intro else "") + "\n".join(parts[k] for k in sorted(parts))
    write_section(path, new, SECTION)


if __name__ == "__main__":
    main()
