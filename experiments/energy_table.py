"""Estimated energy per inference of zoo models under each method, from extremeq.energy's cost
model (Horowitz, ISSCC 2014, 45 nm): an estimate from a cost table, not a measurement.

    PYTHONPATH=. python experiments/energy_table.py --out results/energy_table.md

Methods: fp; int8 (every layer int8 weights and inputs); bwn, twn, xnor with first and last
layer in float (the papers' setting). A second table, wider networks: ResNet-20 and VGG-7 with
``width_multiplier`` 1, 2, 3 (``config.model.width_multiplier``) against the 1x float net.
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
        (
            f"Estimated energy per inference (batch 1), cost model {HOROWITZ_45NM.name!r}; an estimate "
            "from a cost table, not a measurement. Compute: MACs x energy per MAC of their precision; "
            "memory: packed weights read once from DRAM."
        ),
        "",
        (
            "| model | method | weights (packed) | MACs float / int8 / binary-real / ternary / XNOR (M) | "
            "compute (uJ) | weight DRAM (uJ) | total (uJ) | FP total / total |"
        ),
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, (cfg, shape, classes) in models.items():
        fp_total = None
        for method in methods:
            s, e = summarize(cfg, shape, classes, method)
            m = s.total_macs()
            fp_total = fp_total or e.total_pj
            macs = " / ".join(
                f"{v / 1e6:.1f}" for v in (m["float"], m["int8"], m["binary"] - s.xnor_macs, m["ternary"], s.xnor_macs)
            )
            lines.append(
                f"| {name} | {method} | {s.packed_bytes / 2**20:.2f} MiB | {macs} | "
                f"{e.compute_total_pj / 1e6:.2f} | {e.memory_pj / 1e6:.2f} | {e.total_pj / 1e6:.2f} | "
                f"{fp_total / e.total_pj:.1f}x |"
            )
    return "\n".join(lines) + "\n"


WIDE_MODELS = {  # name -> (model config, input shape, classes)
    "ResNet-20 (CIFAR-10)": ({"name": "resnet20"}, (32, 32, 3), 10),
    "VGG-7 (CIFAR-10)": ({"name": "vgg7"}, (32, 32, 3), 10),
}


def width_table(models=WIDE_MODELS, multipliers=(1, 2, 3), methods=("fp", "bwn", "xnor")):
    """Wider networks: packed size and estimated energy of each width against the 1x float net."""
    lines = [
        (
            "Wider networks (``config.model.width_multiplier``): every stage's channels times the multiplier; "
            "ratios against the 1x float network (same cost model)."
        ),
        "",
        (
            "| model | width | method | params (M) | weights (packed) | 1x FP bytes / bytes | total (uJ) | "
            "1x FP energy / energy |"
        ),
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, (cfg, shape, classes) in models.items():
        base = None
        for mult in multipliers:
            for method in methods:
                s, e = summarize({**cfg, "width_multiplier": mult}, shape, classes, method)
                base = base or (s.packed_bytes, e.total_pj)
                lines.append(
                    f"| {name} | {mult}x | {method} | {sum(s.total_params().values()) / 1e6:.2f} | "
                    f"{s.packed_bytes / 2**20:.2f} MiB | {base[0] / s.packed_bytes:.1f}x | "
                    f"{e.total_pj / 1e6:.2f} | {base[1] / e.total_pj:.1f}x |"
                )
    return "\n".join(lines) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="energy_table.md")
    args = p.parse_args()
    text = table() + "\n" + width_table()
    print(text)
    with open(args.out, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
