"""Reproductions of the MNIST paper tables: run them, then write results/ (tables, csv, figures).

    # train (seed-major order: every method of seed 0 first, so a cut-short budget still fills each row)
    python experiments/repro_mnist.py run lenet5 bc --workdir runs
    # tables and figures from whatever has finished
    python experiments/repro_mnist.py report --workdir runs

Each table is a sweep config in configs/sweeps/ (``python -m extremeq.sweep --config
configs/sweeps/<table>.py --workdir runs/<table>`` runs the same runs in method-major order and
writes the plain sweep tables); the run directories are the same (<workdir>/<table>/<method>/seed<s>),
so either command reuses the other's finished runs.

Tables (configs/sweeps/<file>.py, paper numbers in each file's PAPER):
  lenet5        twn_mnist_lenet5         TWN paper Table 2: FP, BWN, TWN      (3 seeds)
  lenet5_extra  twn_mnist_lenet5_extra   additions: TTQ, XNOR-Net             (1 seed)
  bc            binaryconnect_mnist_mlp  BinaryConnect Table 2: FP, det., stoch. (3 seeds)
  bnn           binarynet_mnist_mlp      BinaryNet MLP 3x4096, 1 epoch        (1 seed)
  bnn_3ep       binarynet_mnist_mlp_3ep  the same, 3 epochs                   (1 seed)
On a GPU (experiments/gpu_session.sh runs them side by side on one H100):
  lenet5_gpu    twn_mnist_lenet5_gpu         the lenet5 table again, for its wall times
  bc_gpu        binaryconnect_mnist_mlp_gpu  BinaryConnect, the authors' recipe, 100 epochs
  bnn_gpu       binarynet_mnist_mlp_gpu      BinaryNet, the authors' loss and lr scale, 40 epochs
  bnn_gpu_ce    binarynet_mnist_mlp_gpu_ce   BinaryNet, cross-entropy + cosine, 40 epochs

The report writes results/mnist_<table>.md and .csv (measured mean +- std over seeds, paper, gap,
within-0.3 flag, epochs, wall time per run), results/mnist_<table>_vs_paper.png, _curves.png,
results/mnist_weight_histograms.png (a trained LeNet-5 layer under TWN and TTQ) and
results/mnist_flip_ratio.png.

Wall time of a run = mtime(final.json) - mtime(config.json): data loading, compilation, training,
evaluation and checkpoints, on whatever share of the shared CPU the run got.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import runpy
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "results")
sys.path.insert(0, os.path.join(REPO, "experiments"))

TABLES = {
    "lenet5": "twn_mnist_lenet5",
    "lenet5_extra": "twn_mnist_lenet5_extra",
    "bc": "binaryconnect_mnist_mlp",
    "bnn": "binarynet_mnist_mlp",
    "bnn_3ep": "binarynet_mnist_mlp_3ep",
    "lenet5_gpu": "twn_mnist_lenet5_gpu",
    "bc_gpu": "binaryconnect_mnist_mlp_gpu",
    "bnn_gpu": "binarynet_mnist_mlp_gpu",
    "bnn_gpu_ce": "binarynet_mnist_mlp_gpu_ce",
}
GPU_TABLES = ("lenet5_gpu", "bc_gpu", "bnn_gpu", "bnn_gpu_ce")
CPU_TABLES = tuple(t for t in TABLES if t not in GPU_TABLES)  # what `run` trains by default
CPU_NOTE = (
    "Wall time per run on the shared 2-core CPU (other workers' jobs running beside it, so it "
    "measures contention as much as the code)."
)
GPU_NOTE = (
    "Wall time per run on one NVIDIA H100 80GB (jax 0.11.2, Python 3.12), shared: "
    "experiments/gpu_session.sh ran 6-9 training processes side by side on the one GPU with the "
    "kernel test suite, so a run alone is faster."
)
LABELS = {
    "fp": "FP",
    "bwn": "BWN",
    "twn": "TWN",
    "ttq": "TTQ",
    "xnor": "XNOR",
    "bc": "BC det.",
    "bc_stochastic": "BC stoch.",
    "bnn": "BNN",
}
NETS = {
    "lenet5": "LeNet-5",
    "lenet5_extra": "LeNet-5",
    "bc": "MLP 3x1024",
    "bnn": "MLP 3x4096",
    "bnn_3ep": "MLP 3x4096",
    "lenet5_gpu": "LeNet-5",
    "bc_gpu": "MLP 3x1024",
    "bnn_gpu": "MLP 3x4096",
    "bnn_gpu_ce": "MLP 3x4096",
}
GOAL = 0.3  # points: the "within 0.3 of the paper"


def load_sweep(table: str, with_notes: bool = False):
    """(sweep ConfigDict, PAPER dict[, NOTES str]) of configs/sweeps/<file>.py."""
    mod = runpy.run_path(os.path.join(REPO, "configs", "sweeps", f"{TABLES[table]}.py"))
    out = (mod["get_config"](), mod.get("PAPER", {}))
    return out + (mod.get("NOTES", ""),) if with_notes else out


def run_dir(workdir: str, table: str, method: str, seed: int) -> str:
    from extremeq.sweep import run_dir_name

    return os.path.join(workdir, TABLES[table], run_dir_name(method), f"seed{seed}")


def run_tables(tables, workdir: str, seeds=None, methods=None) -> None:
    from extremeq.sweep import run_config
    from extremeq.train import train_and_evaluate

    for table in tables:
        sweep, _ = load_sweep(table)
        for seed in sweep.seeds:
            if seeds is not None and seed not in seeds:
                continue
            for method in sweep.methods:
                if methods is not None and method not in methods:
                    continue
                d = run_dir(workdir, table, method, seed)
                if os.path.isfile(os.path.join(d, "final.json")):
                    print(f"[repro] {table} {method} seed {seed}: finished, skipped", flush=True)
                    continue
                print(f"[repro] {table} {method} seed {seed} -> {d}", flush=True)
                train_and_evaluate(run_config(sweep, method, seed), d)


def _finished(d: str):
    from extremeq.train.metrics import read_metrics

    final = os.path.join(d, "final.json")
    if not os.path.isfile(final):
        return None
    rows = read_metrics(d)
    wall = os.path.getmtime(final) - os.path.getmtime(os.path.join(d, "config.json"))
    with open(final) as f:
        at_best_val = json.load(f).get("test_accuracy_at_best_val")
    return dict(
        rows=rows,
        acc=100 * rows[-1]["test_accuracy"],
        wall=wall,
        train_s=sum(r.get("time_s", 0.0) for r in rows),
        at_best_val=None if at_best_val is None else 100 * at_best_val,
    )


def report_table(table: str, workdir: str):
    import plots

    sweep, paper, notes = load_sweep(table, with_notes=True)
    gpu = table.endswith(("_gpu", "_gpu_ce"))
    epochs = int(sweep.overrides.get("num_epochs", 0))
    rows, curves, csv_rows = [], {}, []
    for method in sweep.methods:
        runs = [(s, _finished(run_dir(workdir, table, method, s))) for s in sweep.seeds]
        done = [(s, r) for s, r in runs if r is not None]
        if not done:
            continue
        acc = np.array([r["acc"] for _, r in done])
        mean, std = acc.mean(), (acc.std(ddof=1) if acc.size > 1 else 0.0)
        p = paper.get(method)
        best = [r["at_best_val"] for _, r in done if r["at_best_val"] is not None]
        rows.append(
            dict(
                method=method,
                n=len(done),
                mean=mean,
                std=std,
                per_seed=acc,
                paper=p,
                walls=[r["wall"] for _, r in done],
                train_s=[r["train_s"] for _, r in done],
                at_best_val=np.array(best) if len(best) == len(done) else None,
            )
        )
        curves[LABELS.get(method, method)] = [r["rows"] for _, r in done]
        for s, r in done:
            csv_rows.append(
                [
                    method,
                    s,
                    f"{r['acc']:.2f}",
                    "" if p is None else p,
                    epochs,
                    f"{r['wall']:.0f}",
                    f"{r['train_s']:.0f}",
                ]
            )
    if not rows:
        print(f"[repro] {table}: no finished runs under {workdir}")
        return None
    lines = [
        f"# {sweep.title}",
        "",
        f"Real MNIST (10000 test images). Sweep `configs/sweeps/{TABLES[table]}.py` on `{sweep.config}`, "
        f"{epochs} epoch(s) per run, overrides `{_json(sweep.overrides)}`. Accuracy after the last epoch, "
        "mean +- sample std (ddof=1) over the seeds that finished. " + (GPU_NOTE if gpu else CPU_NOTE),
        "",
        "| method | seeds | measured (%) | per seed | paper (%) | measured - paper | within 0.3 | wall per run (s) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        gap = "-" if r["paper"] is None else f"{r['mean'] - r['paper']:+.2f}"
        ok = "-" if r["paper"] is None else ("yes" if r["mean"] >= r["paper"] - GOAL else "no")
        lines.append(
            f"| {LABELS.get(r['method'], r['method'])} | {r['n']} | {r['mean']:.2f} +- {r['std']:.2f} | "
            f"{', '.join(f'{v:.2f}' for v in r['per_seed'])} | {r['paper'] if r['paper'] is not None else '-'} "
            f"| {gap} | {ok} | {', '.join(f'{w:.0f}' for w in r['walls'])} |"
        )
    if any(r["at_best_val"] is not None for r in rows):
        lines += [
            "",
            "Test accuracy at the epoch of the best validation accuracy (the papers' protocol; "
            "validation = the training images past limit_train): "
            + "; ".join(
                f"{LABELS.get(r['method'], r['method'])} {_mean_std(r['at_best_val'])}"
                for r in rows
                if r["at_best_val"] is not None
            )
            + ".",
        ]
    total = sum(sum(r["walls"]) for r in rows)
    lines += [
        "",
        f"Total wall time of these runs: {total / 60:.1f} min (sum over runs; "
        + ("they shared the GPU, see above)." if gpu else "two runs shared the CPU at a time, beside other workers)."),
    ]
    if notes:
        lines += ["", " ".join(notes.split())]
    with open(os.path.join(RESULTS, f"mnist_{table}.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(RESULTS, f"mnist_{table}.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "seed", "test_accuracy", "paper", "epochs", "wall_s", "train_s"])
        w.writerows(csv_rows)
    print("\n".join(lines))
    plots.paper_bars(
        [(LABELS.get(r["method"], r["method"]), r["mean"], r["std"], r["paper"]) for r in rows],
        os.path.join(RESULTS, f"mnist_{table}_vs_paper.png"),
        sweep.title,
    )
    plots.training_curves(curves, os.path.join(RESULTS, f"mnist_{table}_curves.png"), sweep.title)
    return rows


def _mean_std(v) -> str:
    return f"{v.mean():.2f} +- {(v.std(ddof=1) if v.size > 1 else 0.0):.2f}"


def _json(o) -> str:
    import json

    return json.dumps(o.to_dict() if hasattr(o, "to_dict") else dict(o))


def weight_histograms(workdir: str) -> None:
    """Latent weights of LeNet-5's second conv after training under TWN and TTQ, with the
    TWN threshold Delta = 0.7 E|W| and scale alpha, and TTQ's Delta = 0.05 max|W|, W_p, -W_n."""
    import plots

    from extremeq import quantizers
    from extremeq.nn import quant_layers
    from extremeq.train.model import load_model_vars, restore_model_vars

    panels = []
    for table, method in (("lenet5", "twn"), ("lenet5_extra", "ttq")):
        d = run_dir(workdir, table, method, 0)
        if _finished(d) is None:
            continue
        _, model, model_vars = restore_model_vars(d, 10, (28, 28, 1))

        load_model_vars(model, model_vars)  # the same loader the train loop uses
        layers = dict(quant_layers(model))
        path = next(p for p in layers if p != "stem" and p != "head")
        layer = layers[path]
        w = np.asarray(layer.kernel[...])
        panel = dict(label=f"{method.upper()}, LeNet-5 '{path}' ({w.size} weights)", weights=w)
        if method == "twn":
            delta = float(quantizers.twn_threshold(w))
            panel.update(delta=delta, alpha=float(quantizers.twn_scale(w, delta)))
        else:
            panel.update(
                delta=float(quantizers.ttq_threshold(w)),
                w_p=float(np.mean(layer.ttq_wp[...])),
                w_n=float(np.mean(layer.ttq_wn[...])),
            )
        panels.append(panel)
    if panels:
        plots.weight_histogram(
            panels,
            os.path.join(RESULTS, "mnist_weight_histograms.png"),
            "Trained latent weights, TWN threshold/scale and TTQ scales (seed 0)",
        )


def _flip_points(d: str) -> list:
    """(epoch, flip ratio) of every metrics row of run directory ``d`` that has one ([] if no run)."""
    from extremeq.train.metrics import read_metrics

    rows = read_metrics(d) if os.path.isdir(d) else []
    return [(r["epoch"], r["flip_ratio"]) for r in rows if r.get("flip_ratio") is not None]


def flip_ratios(workdir: str) -> None:
    """Per-epoch flip ratio of the binary weights of every finished binary run (seed 0)."""
    import plots

    series = {}
    for table, method in (
        ("bc", "bc"),
        ("bc", "bc_stochastic"),
        ("lenet5", "bwn"),
        ("lenet5_extra", "xnor"),
        ("bnn_3ep", "bnn"),
    ):
        pts = _flip_points(run_dir(workdir, table, method, 0))
        if pts:
            series[
                f"{NETS[table]} {LABELS.get(method, method)} (1 epoch)"
                if len(pts) == 1
                else f"{NETS[table]} {LABELS.get(method, method)}"
            ] = pts
    ste_dir = os.path.join(workdir, "claims", "ste")
    for lr in ("0.0001", "0.001", "0.01"):
        pts = _flip_points(os.path.join(ste_dir, f"bnn_clipped_lr{float(lr):g}"))
        if pts:
            series[f"claims BNN MLP 3x256, Adam lr {float(lr):g}"] = pts
    if series:
        plots.flip_ratio(
            series, os.path.join(RESULTS, "mnist_flip_ratio.png"), "Flip ratio of binary weights per epoch (seed 0)"
        )


def flip_ratios_gpu(workdir: str) -> None:
    """Per-epoch flip ratio of the GPU tables' binary runs (seed 0), and of ``<workdir>/first_run``
    (the first H100 run's BNN and BC stoch., kept there by hand) where present."""
    import plots

    runs = [
        ("bc_gpu", "bc", workdir, ""),
        ("bc_gpu", "bc_stochastic", workdir, ""),
        ("bnn_gpu_ce", "bnn", workdir, " CE + cosine"),
        ("bnn_gpu", "bnn", workdir, " authors', from midpoint"),
        ("bnn_gpu", "bnn", os.path.join(workdir, "first_run"), " authors', compressed decay"),
    ]
    series = {}
    for table, method, root, what in runs:
        pts = _flip_points(run_dir(root, table, method, 0))
        if pts:
            series[f"{NETS[table]} {LABELS.get(method, method)}{what}"] = pts
    if series:
        plots.flip_ratio(
            series,
            os.path.join(RESULTS, "mnist_flip_ratio_gpu.png"),
            "Flip ratio of binary weights per epoch, H100 runs (seed 0)",
        )


def report(workdir: str, tables=None) -> None:
    """Tables and figures of ``tables`` (default: all, plus the weight histograms and flip ratios)."""
    os.makedirs(RESULTS, exist_ok=True)
    for table in tables or TABLES:
        report_table(table, workdir)
    if not tables:
        weight_histograms(workdir)
        flip_ratios(workdir)
    if not tables or any(t in GPU_TABLES for t in tables):
        flip_ratios_gpu(workdir)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=["run", "report"])
    p.add_argument(
        "tables",
        nargs="*",
        default=[],
        help=f"some of {list(TABLES)} (default: run trains the CPU tables, report writes all)",
    )
    p.add_argument("--workdir", default="runs")
    p.add_argument("--seeds", type=int, nargs="*", default=None, help="run only these seeds of each table")
    p.add_argument("--methods", nargs="*", default=None, help="run only these methods of each table")
    p.add_argument("--no-report", action="store_true", help="train only")
    args = p.parse_args()
    unknown = sorted(set(args.tables) - set(TABLES))
    if unknown:
        p.error(f"table(s) {unknown} unknown; choose from {list(TABLES)}")
    if args.action == "run":
        run_tables(args.tables or list(CPU_TABLES), args.workdir, args.seeds, args.methods)
    if not args.no_report:
        report(args.workdir, args.tables or None)


if __name__ == "__main__":
    main()
