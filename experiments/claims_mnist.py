"""Checks the seed's claims about extreme quantization by small experiments on real MNIST.

    python experiments/claims_mnist.py all --workdir runs/claims      # every claim
    python experiments/claims_mnist.py ste layers distill ttq memory        # or some of them

Every training run is the same small problem, so the whole set fits a shared 2-core CPU: the
permutation-invariant MLP 784-256-256-256-10 of configs/mnist_mlp.py (BatchNorm on every layer,
Adam, batch 100, cosine decay) on the FIRST 10000 training images of MNIST, 3 epochs, evaluated on
the full 10000-image test set. First and last layer float unless the claim varies them. One seed
unless a claim says otherwise: differences below ~0.3 points are within seed noise at this size.

Claims (results/claims_<name>.md and .png):
  ste      The STE choice (ste, clipped, tanh, approx_sign, swish_sign) matters less than the
           learning rate: grid (STE x Adam lr in {1e-4, 1e-3, 1e-2}) for BWN and BNN.
  layers   Keeping the first and last layer in higher precision: BNN with first/last layer
           float, int8 or binary ("same"), all 9 combinations, with the packed size of each.
  distill  Knowledge distillation (Hinton et al. 2015) from a float teacher of the same shape:
           CE + lambda T^2 KL(teacher_T || student_T), lambda = 1, T = 4, binary students
           (BNN, BWN), two seeds, with and without distillation.
  ttq      TTQ's learned asymmetric scales W_p, W_n (Zhu et al. 2017) against TWN's symmetric
           alpha (Li et al. 2016): three seeds each, with the learned scales.
  memory   Packed size against float32 (extremeq.summary) of LeNet-5, MLP 3x1024 and 3x4096
           for every method, first/last layer float or quantized; no training.

Runs go to <workdir>/<claim>/<run>; a run whose final.json exists is reused, so an interrupted
script resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "results")
sys.path.insert(0, os.path.join(REPO, "experiments"))

STES = ("ste", "clipped", "tanh", "approx_sign", "swish_sign")
LRS = (1e-4, 1e-3, 1e-2)
EDGES = ("fp", "int8", "same")
EDGE_NAMES = {"fp": "float", "int8": "int8", "same": "binary"}
SMALL = dict(hidden=[256, 256, 256], limit_train=10000, num_epochs=3, batch_size=100)


def small_config(variant: str, *, seed=0, lr=1e-3, first="fp", last="fp", **extra):
    """configs/mnist_mlp.py:<variant> shrunk to the claims' problem (see the module docstring)."""
    from extremeq.train.config import load_config_file

    c = load_config_file(os.path.join(REPO, f"configs/mnist_mlp.py:{variant}"))
    c.seed = seed
    c.model.hidden = list(SMALL["hidden"])
    c.dataset.limit_train = SMALL["limit_train"]
    c.num_epochs = SMALL["num_epochs"]
    c.batch_size = SMALL["batch_size"]
    c.optimizer.learning_rate = lr
    c.optimizer.schedule = "cosine"
    c.optimizer.decay_epochs = []
    c.checkpoint.every_epochs = SMALL["num_epochs"]
    c.checkpoint.keep = 1
    c.quant.first = first
    c.quant.last = last
    # What the claims ran with (results/claims_*.md), not the BinaryConnect recipe mnist_mlp.py now has:
    c.loss = "cross_entropy"
    c.optimizer.binary_lr_scale = "none"
    c.quant.latent_init = "keep"
    c.quant.stochastic_eval = "sign"
    c.dataset.validation = False
    c.progress_bar = False
    for key, value in extra.items():
        section, _, name = key.partition("__")
        if name:
            c[section][name] = value
        else:
            c[key] = value
    return c


def run(config, workdir: str) -> dict:
    """Trains (or reuses a finished run); returns the last metrics row plus wall_s and curves."""
    from extremeq.train import train_and_evaluate
    from extremeq.train.metrics import read_metrics

    final = os.path.join(workdir, "final.json")
    if not os.path.isfile(final):
        t0 = time.time()
        train_and_evaluate(config, workdir)
        with open(os.path.join(workdir, "wall.json"), "w") as f:
            json.dump({"wall_s": time.time() - t0}, f)
    rows = read_metrics(workdir)
    out = dict(rows[-1])
    wall = os.path.join(workdir, "wall.json")
    out["wall_s"] = json.load(open(wall))["wall_s"] if os.path.isfile(wall) else float("nan")
    out["rows"] = rows
    print(f"[claims] {workdir}: test {100 * out['test_accuracy']:.2f} ({out['wall_s']:.0f} s)", flush=True)
    return out


def _write(name: str, lines: list[str]) -> None:
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, f"claims_{name}.md")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"-> {path}")


def _setup_line() -> str:
    return (
        f"Setup: MLP 784-{'-'.join(map(str, SMALL['hidden']))}-10 (configs/mnist_mlp.py, BN, Adam, "
        f"cosine), first {SMALL['limit_train']} MNIST training images, {SMALL['num_epochs']} epochs, "
        f"batch {SMALL['batch_size']}, test accuracy (%) on the 10000 test images after the last epoch."
    )


def _total_wall(results) -> str:
    walls = [r["wall_s"] for r in results if np.isfinite(r["wall_s"])]
    return (
        (
            f"Wall time: {len(walls)} runs, {sum(walls) / 60:.1f} min in all, {np.median(walls):.0f} s median per "
            "run (2 shared CPU cores, other workers running beside it)."
        )
        if walls
        else ""
    )


# ---------------------------------------------------------------- claim 1: STE vs learning rate
def claim_ste(workdir: str, seeds=(0, 1, 2)) -> None:
    import plots

    grid, sd, results = {}, {}, []
    for method in ("bwn", "bnn"):
        for ste in STES:
            for lr in LRS:
                accs = []
                for seed in seeds:
                    r = run(
                        small_config(f"{method},ste={ste}", lr=lr, seed=seed),
                        os.path.join(workdir, "ste", f"{method}_{ste}_lr{lr:g}" + _seed_suffix(seed)),
                    )
                    accs.append(100 * r["test_accuracy"])
                    results.append(r)
                grid[method, ste, lr] = float(np.mean(accs))
                sd[method, ste, lr] = float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0
    lines = [
        "# Claim 1: does the STE choice matter less than the learning rate?",
        "",
        _setup_line(),
        "BWN: alpha*sign(W) weights, float inputs; BNN: sign weights and sign inputs (hardtanh before the "
        f"sign). Each cell: mean +- std (ddof=1) over seeds {list(seeds)}.",
        "",
    ]
    for method in ("bwn", "bnn"):
        lines += [
            f"## {method.upper()}",
            "",
            "| STE | " + " | ".join(f"lr {lr:g}" for lr in LRS) + " | range over lr |",
            "| --- |" + " --- |" * (len(LRS) + 1),
        ]
        for ste in STES:
            vals = [grid[method, ste, lr] for lr in LRS]
            lines.append(
                f"| {ste} | "
                + " | ".join(f"{grid[method, ste, lr]:.2f} +- {sd[method, ste, lr]:.2f}" for lr in LRS)
                + f" | {max(vals) - min(vals):.2f} |"
            )
        spread_ste = [max(grid[method, s, lr] for s in STES) - min(grid[method, s, lr] for s in STES) for lr in LRS]
        spread_lr = [max(grid[method, s, lr] for lr in LRS) - min(grid[method, s, lr] for lr in LRS) for s in STES]
        lines.append("| range over STE | " + " | ".join(f"{v:.2f}" for v in spread_ste) + " | |")
        lines += [
            "",
            f"{method.upper()}: mean range over the STE at a fixed lr {np.mean(spread_ste):.2f} points; "
            f"mean range over the lr at a fixed STE {np.mean(spread_lr):.2f} points; typical seed std "
            f"{np.median([sd[method, s, lr] for s in STES for lr in LRS]):.2f} points.",
            "",
        ]
    lines.append(_total_wall(results))
    _write("ste", lines)
    plots.ste_grid(grid, STES, LRS, os.path.join(RESULTS, "claims_ste.png"))


def _seed_suffix(seed: int) -> str:
    return "" if seed == 0 else f"_seed{seed}"


# ---------------------------------------------------------------- claim 2: first/last precision
def claim_layers(workdir: str, seeds=(0, 1, 2)) -> None:
    import plots

    table, results = {}, []
    for first in EDGES:
        for last in EDGES:
            c = small_config("bnn", first=first, last=last)
            accs = []
            for seed in seeds:
                r = run(
                    small_config("bnn", first=first, last=last, seed=seed),
                    os.path.join(workdir, "layers", f"bnn_first-{first}_last-{last}" + _seed_suffix(seed)),
                )
                accs.append(100 * r["test_accuracy"])
                results.append(r)
            table[first, last] = (
                float(np.mean(accs)),
                _packed(c),
                float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0,
            )
    fp_bytes = _packed(small_config("fp"))
    lines = [
        "# Claim 2: first and last layer precision (BNN)",
        "",
        _setup_line(),
        "BNN hidden layers (sign weights, sign inputs) in every row; the first layer (784->256) and the "
        "last (256->10) are float, int8 (weights and inputs) or binary like the rest. Packed size from "
        f"extremeq.summary (float32 model: {fp_bytes / 1024:.0f} KiB). Mean +- std (ddof=1) over seeds "
        f"{list(seeds)}.",
        "",
        "| first \\ last | " + " | ".join(EDGE_NAMES[e] for e in EDGES) + " |",
        "| --- |" + " --- |" * len(EDGES),
    ]
    for first in EDGES:
        lines.append(
            f"| {EDGE_NAMES[first]} | "
            + " | ".join(
                f"{table[first, last][0]:.2f} +- {table[first, last][2]:.2f} ({table[first, last][1] / 1024:.0f} KiB)"
                for last in EDGES
            )
            + " |"
        )
    lines += ["", _total_wall(results)]
    _write("layers", lines)
    plots.layer_grid({k: v[0] for k, v in table.items()}, EDGES, EDGE_NAMES, os.path.join(RESULTS, "claims_layers.png"))


def _packed(config) -> int:
    return _summary(config.model, config.quant, (28, 28, 1)).packed_bytes


def _summary(model_cfg, quant, shape):
    import jax.numpy as jnp
    from flax import nnx

    from extremeq.nn import method_rules, quantize_model
    from extremeq.nn.models import build_model
    from extremeq.summary import summary

    model = build_model(model_cfg, 10, shape, nnx.Rngs(0))
    quantize_model(model, method_rules(quant.method, first=quant.first, last=quant.last), rngs=nnx.Rngs(0))
    model.eval()
    return summary(model, jnp.zeros((1,) + tuple(shape), jnp.float32))


# ---------------------------------------------------------------- claim 3: distillation
def claim_distill(
    workdir: str, seeds=(0, 1, 2), alpha=1.0, temperature=4.0, teacher_epochs=15, student_epochs=(3, 15)
) -> None:
    import plots

    teacher_dir = os.path.join(workdir, "distill", f"teacher_fp_{teacher_epochs}ep")
    teacher = run(small_config("fp", num_epochs=teacher_epochs, checkpoint__every_epochs=teacher_epochs), teacher_dir)
    table, results = {}, [teacher]
    for epochs in student_epochs:
        for method in ("bnn", "bwn"):
            for kd in (False, True):
                for seed in seeds:
                    extra = (
                        dict(
                            distill__teacher_workdir=teacher_dir, distill__alpha=alpha, distill__temperature=temperature
                        )
                        if kd
                        else {}
                    )
                    if epochs != SMALL["num_epochs"]:
                        extra.update(num_epochs=epochs, checkpoint__every_epochs=epochs)
                    name = f"{method}_{f'kd-teacher{teacher_epochs}ep' if kd else 'ce'}_seed{seed}"
                    if epochs != SMALL["num_epochs"]:
                        name += f"_{epochs}ep"
                    r = run(small_config(method, seed=seed, **extra), os.path.join(workdir, "distill", name))
                    table.setdefault((epochs, method, kd), []).append(100 * r["test_accuracy"])
                    results.append(r)
    t = 100 * teacher["test_accuracy"]
    lines = [
        "# Claim 3: knowledge distillation from a float teacher",
        "",
        _setup_line(),
        f"Teacher: the same MLP in float trained {teacher_epochs} epochs, {t:.2f}. Students: BNN / BWN of the "
        "same shape, first and last layer float, trained 3 epochs (the claims' budget) or as long as the "
        f"teacher; loss CE(z_s, y) + lambda T^2 KL(softmax(z_t/T) || softmax(z_s/T)), lambda = {alpha:g}, "
        f"T = {temperature:g} (extremeq.train.distill). Seeds {list(seeds)}, mean +- std (ddof=1).",
        "",
        "| student | epochs | CE only | CE + KD | gain | gap to teacher closed |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for epochs in student_epochs:
        for method in ("bnn", "bwn"):
            ce_v, kd_v = table[epochs, method, False], table[epochs, method, True]
            ce, kd = np.mean(ce_v), np.mean(kd_v)
            closed = (kd - ce) / (t - ce) if t > ce else float("nan")
            lines.append(
                f"| {method.upper()} | {epochs} | {_ms(ce_v)} | {_ms(kd_v)} | {kd - ce:+.2f} | {100 * closed:.0f}% |"
            )
    lines += ["", _total_wall(results)]
    _write("distill", lines)
    plots.bars_with_errors(
        {f"{m.upper()} {e}ep {'KD' if kd else 'CE'}": v for (e, m, kd), v in table.items()},
        os.path.join(RESULTS, "claims_distill.png"),
        reference=("FP teacher", t),
        title="Binary students with / without distillation",
    )


def _ms(values) -> str:
    v = np.asarray(values, np.float64)
    return f"{v.mean():.2f} +- {v.std(ddof=1) if v.size > 1 else 0.0:.2f}"


# ---------------------------------------------------------------- claim 4: TTQ vs TWN
def claim_ttq(workdir: str, seeds=(0, 1, 2)) -> None:
    import plots

    table, scales, results = {}, [], []
    for method in ("twn", "ttq"):
        for seed in seeds:
            r = run(small_config(method, seed=seed), os.path.join(workdir, "ttq", f"{method}_seed{seed}"))
            table.setdefault(method, []).append(100 * r["test_accuracy"])
            if method == "ttq":
                scales.append((r.get("ttq_wp_mean"), r.get("ttq_wn_mean")))
            results.append(r)
    wp = np.mean([s[0] for s in scales])
    wn = np.mean([s[1] for s in scales])
    lines = [
        "# Claim 4: TTQ's asymmetric learned scales vs TWN's symmetric alpha",
        "",
        _setup_line(),
        "Ternary hidden layers (first and last float). TWN: W_t in {-alpha, 0, +alpha}, threshold "
        "0.7 E|W|, alpha the mean of the kept |W| (Li et al. 2016). TTQ: {-W_n, 0, +W_p} with W_p, W_n "
        f"trained (Zhu et al. 2017), threshold 0.05 max|W|. Seeds {list(seeds)}.",
        "",
        "| method | test accuracy (%) | per seed |",
        "| --- | --- | --- |",
    ]
    for method in ("twn", "ttq"):
        lines.append(f"| {method.upper()} | {_ms(table[method])} | {', '.join(f'{v:.2f}' for v in table[method])} |")
    lines += [
        "",
        f"TTQ's learned scales after training (mean over layers and seeds): W_p = {wp:.3f}, "
        f"W_n = {wn:.3f} (ratio W_p/W_n = {wp / wn:.2f}).",
        "",
        _total_wall(results),
    ]
    _write("ttq", lines)
    plots.bars_with_errors(
        {m.upper(): v for m, v in table.items()},
        os.path.join(RESULTS, "claims_ttq.png"),
        title="TWN vs TTQ, MLP 3x256, 3 seeds",
    )


# ---------------------------------------------------------------- claim 5: memory
def claim_memory(workdir: str) -> None:
    del workdir
    import ml_collections
    import plots

    nets = {
        "LeNet-5": (ml_collections.ConfigDict(dict(name="lenet5")), (28, 28, 1)),
        "MLP 3x1024": (ml_collections.ConfigDict(dict(name="mlp", hidden=[1024] * 3)), (28, 28, 1)),
        "MLP 3x4096": (ml_collections.ConfigDict(dict(name="mlp", hidden=[4096] * 3)), (28, 28, 1)),
    }
    methods = ("fp", "int8", "bc", "bwn", "twn", "ttq", "bnn")
    lines = [
        "# Claim 5: memory of the packed weights against float32",
        "",
        "extremeq.summary: a quantized kernel of n weights takes ceil(n * bits / 8) bytes (1 bit: bc, bwn, "
        "bnn; 2 bits: twn, ttq; 8 bits: int8) plus its float32 scales; biases, BatchNorm parameters and "
        "statistics and float layers stay float32. 'all layers' quantizes the first and last layer too "
        "(first = last = 'same'; int8 row: every layer int8); 'first/last float' keeps them float. "
        "Compression = float32 bytes / packed bytes. No training.",
        "",
        "| network | method | float32 | packed, all layers | x | packed, first/last float | x |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    ratios = {}
    for net, (mcfg, shape) in nets.items():
        for method in methods:
            cells = []
            for edges in ("same", "fp"):
                if method == "int8":
                    s = _int8_summary(mcfg, shape, all_layers=edges == "same")
                else:
                    q = ml_collections.ConfigDict(dict(method=method, first=edges, last=edges))
                    s = _summary(mcfg, q, shape)
                cells.append(s)
                if edges == "same":
                    ratios[net, method] = s.compression
            a, b = cells
            lines.append(
                f"| {net} | {method} | {_kib(a.float32_bytes)} | {_kib(a.packed_bytes)} | "
                f"{a.compression:.1f} | {_kib(b.packed_bytes)} | {b.compression:.1f} |"
            )
    lines += [
        "",
        "Binary weights approach 32x and ternary 16x only when every layer is quantized and the "
        "float extras (BatchNorm, biases, scales) are small against the kernels: the 3x4096 MLP reaches 30.7x "
        "(binary) and 15.7x (ternary), LeNet-5 28.3x / 15.1x. Keeping the first and last layer float takes "
        "LeNet-5 from 28.3x to 22.2x (binary), but the MLPs much further (3x1024: 28.3x -> 3.3x), whose "
        "float 784xN first layer is then most of the bytes.",
    ]
    _write("memory", lines)
    plots.memory_bars(ratios, os.path.join(RESULTS, "claims_memory.png"))


def _int8_summary(mcfg, shape, *, all_layers):
    import jax.numpy as jnp
    from flax import nnx

    from extremeq.nn import quantize_model
    from extremeq.nn.models import build_model
    from extremeq.summary import summary

    model = build_model(mcfg, 10, shape, nnx.Rngs(0))
    rules = (
        [(".*", dict(kernel="int8", input="int8"))]
        if all_layers
        else [("stem|head", None), (".*", dict(kernel="int8", input="int8"))]
    )
    quantize_model(model, rules, rngs=nnx.Rngs(0))
    model.eval()
    return summary(model, jnp.zeros((1,) + tuple(shape), jnp.float32))


def _kib(n: int) -> str:
    return f"{n / 1024:,.0f} KiB" if n < 1024**2 else f"{n / 1024**2:,.2f} MiB"


CLAIMS = {"ste": claim_ste, "layers": claim_layers, "distill": claim_distill, "ttq": claim_ttq, "memory": claim_memory}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("claims", nargs="+", choices=sorted(CLAIMS) + ["all"])
    p.add_argument("--workdir", default="runs/claims", help="where the training runs go (not the repo)")
    args = p.parse_args()
    names = list(CLAIMS) if "all" in args.claims else args.claims
    for name in names:
        CLAIMS[name](args.workdir)


if __name__ == "__main__":
    main()
