"""Estimated energy per inference of zoo models under each method, from extremeq.energy's cost
model (Horowitz, ISSCC 2014, 45 nm): an estimate from a cost table, not a measurement.

    PYTHONPATH=. python experiments/energy_table.py --out results/energy_table.md

Methods: fp; int8 (every layer int8 weights and inputs); bwn, twn, xnor with first and last
layer in float (the papers' setting). ``--width`` multiplies the channel counts of the CIFAR
ResNet (Wider networks: a 2x-wide binary net against the 1x float net).
"""

from __future__ import annotations

import argparse

import jax.numpy as jnp
from flax import nnx

from extremeq.energy import HOROWITZ_45NM
from extremeq.nn import method_rules, quantize_model
from extremeq.nn.models import build_model
from extremeq.summary import summary

MODELS = {  # name -> (model config, input shape, classes)
    "ResNet-20 (CIFAR-10)": ({"name": "resnet20"}, (32, 32, 3), 10),
    "AlexNet (ImageNet)": ({"name": "alexnet"}, (224, 224, 3), 1000),
}
METHODS = ("fp", "int8", "bwn", "twn", "xnor")


def rules(method):
    if method == "int8":
        return [(".*", {"kernel": "int8", "input": "int8"})]
    return method_rules(method, first="fp", last="fp")


def summarize(model_cfg, shape, classes, method):
    model = build_model(model_cfg, classes, shape, nnx.Rngs(0))
    quantize_model(model, rules(method))
    s = summary(model, jnp.zeros((1, *shape)))
    return s, s.energy()


def table(models=MODELS, methods=METHODS):
    lines = [
        (f"Estimated energy per inference (batch 1), cost model {HOROWITZ_45NM.name!r}; an estimate "
        "from a cost table, not a measurement. Compute: MACs x energy per MAC of their precision; "
        "memory: packed weights read once from DRAM."),
        "",
        ("| model | method | weights (packed) | MACs float / int8 / binary-real / ternary / XNOR (M) | "
        "compute (uJ) | weight DRAM (uJ) | total (uJ) | FP total / total |"),
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, (cfg, shape, classes) in models.items():
        fp_total = None
        for method in methods:
            s, e = summarize(cfg, shape, classes, method)
            m = s.total_macs()
            fp_total = fp_total or e.total_pj
            macs = " / ".join(f"{v / 1e6:.1f}" for v in (m["float"], m["int8"], m["binary"] - s.xnor_macs,
                                                         m["ternary"], s.xnor_macs))
            lines.append(f"| {name} | {method} | {s.packed_bytes / 2**20:.2f} MiB | {macs} | "
                         f"{e.compute_total_pj / 1e6:.2f} | {e.memory_pj / 1e6:.2f} | {e.total_pj / 1e6:.2f} | "
                         f"{fp_total / e.total_pj:.1f}x |")
    return "\n".join(lines) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="energy_table.md")
    args = p.parse_args()
    text = table()
    print(text)
    with open(args.out, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
