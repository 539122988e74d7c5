"""Larq Compute Engine peer of ``experiments/bench_inference_peers.py``: the same networks with the
same weights, built in Larq, converted by LCE, timed one call per request.

Runs inside its own virtualenv (LCE is a benchmark peer, never a dependency of extremeq). Recipe
that installs and runs on this x86-64 host (Python 3.11; pip only):

    python3 -m venv .peers/lce
    .peers/lce/bin/pip install tensorflow==2.16.2 tf_keras==2.16.0 larq==0.14.0 larq-compute-engine==0.16.0
    # larq 0.14 needs Keras 2: run with TF_USE_LEGACY_KERAS=1 (the parent sets it)

The parent writes ``weights.npz`` (float arrays named ``<model>/<layer>/<array>``), ``inputs.npz``
(``<model>_<batch>``) and ``spec.json`` into a folder and starts the worker with that folder. The
networks (``spec.json`` gives widths and BatchNorm epsilons):

* ``mlp``: 784 -> float Dense 1024 -> BN -> three times [Reshape 1x1 -> QuantConv2D 1x1 with
  ``ste_sign`` kernel and input quantizers (LCE binarizes QuantConv2D, not QuantDense) -> BN], with
  the middle two binary and the last one float -> clip(-1, 1) -> float Dense 10 (bias). As in
  extremeq's MLP, whose hardtanh before a sign input quantizer does not change the sign.
* ``convnet``: float 3x3 Conv2D 3 -> 64 (same) -> BN, then four binary 3x3 QuantConv2D (64, 128 s2,
  128, 256 s2; ``padding="same"``, ``pad_values=1``) each -> BN, clip(-1, 1), global average pool,
  float Dense 10.

Each is converted once per batch size with ``lce.convert_keras_model`` and run by LCE's
``Interpreter`` with its best x86 settings (``use_indirect_bgemm=True, use_xnnpack=True``).
Protocol (one line each way): ``time <model> <batch> <threads>`` -> seconds of one call;
``predict <model> <batch> <threads> <out.npy>`` writes the logits; ``sizes`` -> the ``.tflite`` bytes;
``versions``; ``quit``.
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import larq as lq
import larq_compute_engine as lce
import numpy as np
import tensorflow as tf
import tf_keras as keras
from larq_compute_engine.tflite.python.interpreter import Interpreter


def _bn(w, name, eps):
    layer = keras.layers.BatchNormalization(epsilon=eps, name=name.replace("/", "_"))
    return layer, [w[f"{name}/scale"], w[f"{name}/bias"], w[f"{name}/mean"], w[f"{name}/var"]]


def _hardtanh():
    return keras.layers.Lambda(lambda t: tf.clip_by_value(t, -1.0, 1.0))


def build_mlp(w, spec, batch):
    eps, hidden = spec["mlp"]["epsilon"], spec["mlp"]["hidden"]
    x = inp = keras.Input((784,), batch_size=batch)
    assign = []
    for i, width in enumerate(hidden):
        if i == 0:
            d = keras.layers.Dense(width, use_bias=False)
            x = d(x)
            assign.append((d, [w[f"mlp/dense{i}/kernel"]]))
        else:
            x = keras.layers.Reshape((1, 1, -1))(x)
            c = lq.layers.QuantConv2D(
                width,
                1,
                use_bias=False,
                input_quantizer="ste_sign",
                kernel_quantizer="ste_sign",
                kernel_constraint=None,
            )
            x = c(x)
            assign.append((c, [w[f"mlp/dense{i}/kernel"][None, None]]))
            x = keras.layers.Flatten()(x)
        bn, vals = _bn(w, f"mlp/bn{i}", eps)
        x = bn(x)
        assign.append((bn, vals))
    x = _hardtanh()(x)
    head = keras.layers.Dense(w["mlp/head/kernel"].shape[1])
    out = head(x)
    assign.append((head, [w["mlp/head/kernel"], w["mlp/head/bias"]]))
    model = keras.Model(inp, out)
    for layer, vals in assign:
        layer.set_weights(vals)
    return model


def build_convnet(w, spec, batch):
    eps = spec["convnet"]["epsilon"]
    x = inp = keras.Input((32, 32, 3), batch_size=batch)
    assign = []
    stem = keras.layers.Conv2D(64, 3, padding="same", use_bias=False)
    x = stem(x)
    assign.append((stem, [w["convnet/stem/kernel"]]))
    bn, vals = _bn(w, "convnet/stem_bn", eps)
    x = bn(x)
    assign.append((bn, vals))
    for i, (c, s) in enumerate(spec["convnet"]["binary"]):
        conv = lq.layers.QuantConv2D(
            c,
            3,
            strides=s,
            padding="same",
            pad_values=1.0,
            use_bias=False,
            input_quantizer="ste_sign",
            kernel_quantizer="ste_sign",
            kernel_constraint=None,
        )
        x = conv(x)
        assign.append((conv, [w[f"convnet/conv{i}/kernel"]]))
        bn, vals = _bn(w, f"convnet/bn{i}", eps)
        x = bn(x)
        assign.append((bn, vals))
    x = _hardtanh()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    head = keras.layers.Dense(10)
    out = head(x)
    assign.append((head, [w["convnet/head/kernel"], w["convnet/head/bias"]]))
    model = keras.Model(inp, out)
    for layer, vals in assign:
        layer.set_weights(vals)
    return model


BUILDERS = {"mlp": build_mlp, "convnet": build_convnet}


def main():
    folder = sys.argv[1]
    with open(os.path.join(folder, "spec.json")) as f:
        spec = json.load(f)
    w = dict(np.load(os.path.join(folder, "weights.npz")))
    inputs = dict(np.load(os.path.join(folder, "inputs.npz")))
    flat, interp, sizes = {}, {}, {}
    for name in spec["models"]:
        for b in spec["batches"]:
            flat[name, b] = lce.convert_keras_model(BUILDERS[name](w, spec, b))
            path = os.path.join(folder, f"{name}_b{b}.tflite")
            with open(path, "wb") as f:
                f.write(flat[name, b])
            sizes[f"{name}_{b}"] = os.path.getsize(path)

    def get(name, b, threads):
        key = (name, b, threads)
        if key not in interp:
            interp[key] = Interpreter(flat[name, b], num_threads=threads, use_indirect_bgemm=True, use_xnnpack=True)
        return interp[key]

    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        parts = line.split()
        if not parts or parts[0] == "quit":
            break
        if parts[0] == "versions":
            print(
                json.dumps(
                    {
                        "tensorflow": tf.__version__,
                        "larq": lq.__version__ if hasattr(lq, "__version__") else "0.14",
                        "lce": getattr(lce, "__version__", "0.16"),
                    }
                ),
                flush=True,
            )
        elif parts[0] == "sizes":
            print(json.dumps(sizes), flush=True)
        elif parts[0] in ("time", "predict"):
            name, b, threads = parts[1], int(parts[2]), int(parts[3])
            it, x = get(name, b, threads), inputs[f"{name}_{b}"]
            t0 = time.perf_counter()
            (y,) = it.interpreter.predict([x])
            dt = time.perf_counter() - t0
            if parts[0] == "predict":
                np.save(parts[4], y)
            print(json.dumps({"seconds": dt}), flush=True)


if __name__ == "__main__":
    main()
