"""CIFAR-10 helpers: throughput of candidate networks, the augmentation picture, and result tables.

    python experiments/cifar.py probe                 # images/s of the candidate quick recipes
    python experiments/cifar.py probe --only r20w16,vgg7w16
    python experiments/cifar.py augment --out results/cifar10_augment.png
    python experiments/cifar.py table --sweep configs/sweeps/cifar10_resnet20.py --workdir runs/cifar10_resnet20
    python experiments/cifar.py runs runs/quick_fp runs/quick_bwn     # per-epoch curves of single runs
    python experiments/cifar.py start runs/quick_fp --methods ttq,twn,bwn   # quantized from FP, before any step

``probe`` times the real jitted training step (gather from device-resident images, pad-4 crop +
flip on device, forward, backward, SGD) of each candidate on synthetic CIFAR-shaped uint8 data:
the median over ``--steps`` steps after ``--warmup``, each waited on with ``jax.block_until_ready``.
It is what picked the quick recipe's network and epochs (``configs/cifar10_quick.py``).

``augment`` writes a grid: the first row 8 real training images of the JPEG archive, the rows
below the same images after ``extremeq.data.augment_batch`` with CIFAR's pad-4 crop + flip under
three keys, so that the augmentation the CIFAR configs use can be seen.

``table`` reads a sweep's run directories (``<workdir>/<method>/seed<s>``) and writes, per run:
epochs done of those planned, the last epoch's test accuracy, our FP run of the same sweep and seed,
the gap to it, the paper's numbers and gap (the sweep file's ``PAPER``), the difference of the two
gaps, and the training wall time (sum of the epochs' ``time_s``). Unfinished runs are marked, so the
table of a cut GPU session says what it holds. ``runs`` prints each run's per-epoch train loss and
test accuracy.

``start`` loads a finished FP run (``quant.init_from``), quantizes it with each method of
``--methods`` (the run's own config file and recipe), and prints the test accuracy on the first
``--limit`` test images before any training step: with the FP run's BatchNorm statistics
(``quant.init_bn_batches=0``) and with them re-estimated on ``--bn-batches`` training batches.

The training runs themselves go through the CLI (``python -m extremeq.train`` / ``extremeq.sweep``;
see ``results/cifar10_cpu.md`` for the exact commands).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import runpy
import statistics
import sys
import time

import jax
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

# name -> (config file and variant, overrides): the quick-recipe candidates.
CANDIDATES = {
    "r20w16": ("cifar10_resnet.py:resnet20:fp", {}),
    "r20w8": ("cifar10_resnet.py:resnet20:fp", {"width": 8}),
    "vgg7w16": ("cifar10_vgg7.py:fp", {"width": 16, "fc_features": 128}),
    "vgg7w32": ("cifar10_vgg7.py:fp", {"width": 32, "fc_features": 256}),
    "vgg7w32bwn": ("cifar10_vgg7.py:bwn", {"width": 32, "fc_features": 256}),
    "vgg7w32xnor": ("cifar10_vgg7.py:xnor", {"width": 32, "fc_features": 256}),
    "r20w16bwn": ("cifar10_resnet.py:resnet20:bwn", {}),
}


def build_step(config_arg: str, model_overrides: dict, batch: int):
    """A zero-argument callable running one jitted train step on synthetic CIFAR-shaped data."""
    from extremeq.data import epoch_indices
    from extremeq.train.config import load_config_file, validate_config
    from extremeq.train.train import (
        _make_mesh,
        build_quantized_model,
        create_train_state,
        in_memory_train_step,
    )

    config = load_config_file(os.path.join(REPO, "configs", config_arg))
    config.batch_size = batch
    config.num_devices = 1
    for key, value in model_overrides.items():
        config.model[key] = value
    config = validate_config(config)
    n = batch * 4
    rng = np.random.default_rng(0)
    x = jax.device_put(rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8))
    y = jax.device_put(rng.integers(0, 10, (n,), dtype=np.int32))
    net = build_quantized_model(config, 10, (32, 32, 3))
    state, ctx = create_train_state(
        config, net, n // batch, _make_mesh(1), mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26)
    )
    plan = jax.device_put(epoch_indices(ctx.shuffle_key, n, batch, 0))
    step = jax.jit(functools.partial(in_memory_train_step, ctx=ctx), donate_argnums=(0,))
    holder = [state]

    def run_once():
        holder[0] = jax.block_until_ready(step(holder[0], x, y, plan, ctx.aug_key, None))

    return run_once


def probe(args) -> None:
    names = args.only.split(",") if args.only else list(CANDIDATES)
    print(f"| candidate | config | model overrides | batch | images/s (median of {args.steps}) |")
    print("| --- | --- | --- | --- | --- |")
    for name in names:
        config_arg, overrides = CANDIDATES[name]
        run_once = build_step(config_arg, overrides, args.batch)
        for _ in range(args.warmup):
            run_once()
        times = []
        for _ in range(args.steps):
            t0 = time.perf_counter()
            run_once()
            times.append(time.perf_counter() - t0)
        ips = args.batch / statistics.median(times)
        print(f"| {name} | {config_arg} | {overrides} | {args.batch} | {ips:.0f} |", flush=True)
    print(f"\nload average {os.getloadavg()}; jax {jax.__version__}; {os.cpu_count()} CPUs")


def augment(args) -> None:
    import jax.numpy as jnp
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from extremeq.data import augment_batch
    from extremeq.data.image_folder import load_cifar10

    ds = load_cifar10(per_class=1)
    x = jnp.asarray(ds.x_train[:8])
    rows = [np.asarray(x)]
    for k in range(3):
        out = augment_batch(jax.random.key(k), x, crop_padding=4, flip=True, mean=(0.0,), std=(1.0,))
        rows.append(np.clip(np.asarray(out) * 255.0, 0, 255).astype(np.uint8))
    fig, axes = plt.subplots(len(rows), 8, figsize=(8, len(rows)))
    for r, row in enumerate(rows):
        for c in range(8):
            axes[r, c].imshow(row[c])
            axes[r, c].axis("off")
    axes[0, 0].set_title("real", fontsize=7, loc="left")
    axes[1, 0].set_title("pad-4 crop + flip (3 keys)", fontsize=7, loc="left")
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")


def _metrics(run_dir: str) -> list[dict]:
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _planned_epochs(run_dir: str):
    path = os.path.join(run_dir, "config.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f).get("num_epochs")


def _fmt(v, spec="+.2f"):
    return "-" if v is None else format(v, spec)


def table_lines(sweep_file: str, workdir: str, variant: str | None = None) -> list[str]:
    """The markdown table of a CIFAR sweep's runs (see the module docstring)."""
    from extremeq.sweep import run_path

    module = runpy.run_path(sweep_file)
    sweep = module["get_config"](variant) if variant else module["get_config"]()
    paper = module.get("PAPER", {})
    lines = [
        f"# {sweep.title}",
        "",
        (
            f"Sweep `{os.path.relpath(sweep_file, REPO)}`{':' + variant if variant else ''}, workdir `{workdir}`. "
            "Accuracy: test top-1 % after the last epoch run; gap: minus our FP run of the same sweep and "
            "seed; paper gap: the paper's quantized minus its FP."
        ),
        "",
        (
            "| method | seed | epochs | test % | our FP % | gap | paper % | paper FP % | paper gap | "
            "gap - paper gap | train wall (s) | finished |"
        ),
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    fp_method = next((m for m in sweep.methods if m.split(":")[-1] == "fp"), None)
    for method in sweep.methods:
        for seed in sweep.seeds:
            run_dir = run_path(workdir, method, seed)
            rows = _metrics(run_dir)
            acc = 100 * rows[-1]["test_accuracy"] if rows else None
            fp_rows = _metrics(run_path(workdir, fp_method, seed)) if fp_method else []
            fp = 100 * fp_rows[-1]["test_accuracy"] if fp_rows else None
            gap = acc - fp if acc is not None and fp is not None and method != fp_method else None
            p = paper.get(method)
            p_acc, p_fp = (p[0], p[1]) if p else (None, None)
            p_gap = p_acc - p_fp if p and method != fp_method else None
            diff = gap - p_gap if gap is not None and p_gap is not None else None
            wall = sum(r.get("time_s", 0.0) for r in rows) if rows else None
            done = os.path.isfile(os.path.join(run_dir, "final.json"))
            planned = _planned_epochs(run_dir)
            lines.append(
                f"| {method} | {seed} | {len(rows)}/{planned if planned is not None else '-'} | {_fmt(acc, '.2f')} | "
                f"{_fmt(fp, '.2f')} | {_fmt(gap)} | {_fmt(p_acc, '.2f')} | {_fmt(p_fp, '.2f')} | {_fmt(p_gap)} | "
                f"{_fmt(diff)} | {_fmt(wall, '.0f')} | {'yes' if done else 'NO (resume: rerun)'} |"
            )
    sources = sorted({p[2] for p in paper.values() if p})
    if sources:
        lines += ["", "Paper numbers: " + "; ".join(sources) + "."]
    return lines


def table(args) -> None:
    lines = table_lines(args.sweep, args.workdir, args.variant or None)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


def runs(args) -> None:
    for run_dir in args.dirs:
        rows = _metrics(run_dir)
        final = os.path.isfile(os.path.join(run_dir, "final.json"))
        print(f"## {run_dir} ({len(rows)}/{_planned_epochs(run_dir)} epochs, finished: {final})")
        print("| epoch | train loss | train acc % | test acc % | time (s) |")
        print("| --- | --- | --- | --- | --- |")
        for r in rows:
            print(
                f"| {r['epoch']} | {r.get('train_loss', float('nan')):.3f} | "
                f"{100 * r.get('train_accuracy', float('nan')):.2f} | {100 * r['test_accuracy']:.2f} | "
                f"{r.get('time_s', float('nan')):.0f} |"
            )
        print()


def start(args) -> None:
    from extremeq import data as data_lib
    from extremeq.train.config import load_config_file, validate_config
    from extremeq.train.model import model_spec, split_model
    from extremeq.train.steps import Inputs, evaluate_in_memory, make_mesh
    from extremeq.train.train import create_model_for_data
    from extremeq.train.workdir import load_run_config

    src = load_run_config(args.fp_run)
    config_file = os.path.join(REPO, "configs", args.config)
    ds = data_lib.load_from_config(src.dataset)
    inputs = Inputs.from_config(src, make_mesh(1), ds.mean, ds.std)
    n = min(args.limit, ds.num_test)
    idx, mask = data_lib.eval_indices(n, 500)

    def accuracy(model):
        _, params, state = split_model(model)
        _, correct, count = evaluate_in_memory(
            {"params": params, "model_state": state},
            ds.x_test[:n],
            ds.y_test[:n],
            idx,
            mask,
            model=model_spec(model),
            inputs=inputs,
            loss=src.loss,
        )
        return 100 * float(correct / count)

    print(
        f"| method (from {args.fp_run}) | test % on {n}, FP statistics | BN re-estimated on {args.bn_batches} batches |"
    )
    print("| --- | --- | --- |")
    for method in ["fp"] + [m for m in args.methods.split(",") if m]:
        out = []
        for k in (0, args.bn_batches):
            c = load_config_file(f"{config_file}:{method}")
            c.quant.init_from, c.quant.init_bn_batches = args.fp_run, (k if method != "fp" else 0)
            out.append(accuracy(create_model_for_data(validate_config(c), ds)))
        print(f"| {method} | {out[0]:.2f} | {out[1]:.2f} |", flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("probe")
    p.add_argument("--only", default="")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    a = sub.add_parser("augment")
    a.add_argument("--out", default=os.path.join(REPO, "results", "cifar10_augment.png"))
    t = sub.add_parser("table")
    t.add_argument("--sweep", default=os.path.join(REPO, "configs", "sweeps", "cifar10_resnet20.py"))
    t.add_argument("--variant", default="")
    t.add_argument("--workdir", required=True)
    t.add_argument("--out", default="")
    r = sub.add_parser("runs")
    r.add_argument("dirs", nargs="+")
    s = sub.add_parser("start")
    s.add_argument("fp_run")
    s.add_argument("--config", default="cifar10_quick.py", help="the FP run's config file (in configs/)")
    s.add_argument("--methods", default="ttq,twn,bwn")
    s.add_argument("--limit", type=int, default=2000)
    s.add_argument("--bn-batches", type=int, default=20)
    args = parser.parse_args(argv)
    {"probe": probe, "augment": augment, "table": table, "runs": runs, "start": start}[args.command](args)


if __name__ == "__main__":
    main()
