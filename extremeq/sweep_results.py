"""A sweep's tables and plots: ``results.csv``, ``results.md`` (per method: n, mean and sample standard
deviation, ddof = 1, of the metric over seeds, and each seed's value), ``accuracy.png`` and
``curves.png`` (matplotlib, Agg)."""

from __future__ import annotations

import csv
import json
import os

import numpy as np


def write_results(sweep, workdir, results, failures=None) -> None:
    metric = sweep.get("metric", "test_accuracy")
    with open(os.path.join(workdir, "results.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "n", f"{metric}_mean", f"{metric}_std"] + [f"seed{s}" for s in sweep.seeds])
        for r in results:
            w.writerow(
                [r["method"], r["n"], repr(r["mean"]), repr(r["std"])]
                + ["" if v is None else repr(v) for v in r["values"]]
            )
    scale = 100.0 if "accuracy" in metric else 1.0
    unit = " (%)" if scale == 100.0 else ""
    lines = [
        f"# {sweep.get('title', 'Sweep')}",
        "",
        f"Training config `{sweep.config}`, seeds {list(sweep.seeds)}, overrides "
        f"`{_overrides_json(sweep)}`; {metric} after the last epoch, "
        "mean +- sample std (ddof=1) over seeds.",
        "",
        f"| method | n | {metric}{unit} | per seed |",
        "| --- | --- | --- | --- |",
    ]
    for r in results:
        per_seed = ", ".join("-" if v is None else f"{v * scale:.2f}" for v in r["values"])
        cell = "-" if r["n"] == 0 else f"{r['mean'] * scale:.2f} +- {r['std'] * scale:.2f}"
        lines.append(f"| {r['method']} | {r['n']} | {cell} | {per_seed} |")
    if failures:
        lines += ["", "Failed runs:"] + [f"- {m} seed {s}: {msg}" for (m, s), msg in failures.items()]
    with open(os.path.join(workdir, "results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


def _overrides_json(sweep) -> str:
    o = sweep.get("overrides") or {}
    return json.dumps(o.to_dict() if hasattr(o, "to_dict") else dict(o))


def plot_results(sweep, workdir, results) -> None:
    """accuracy.png (mean +- std per method) and curves.png (per-epoch means over seeds)."""
    import matplotlib  # pylint: disable=g-import-not-at-top

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

    from extremeq.sweep import run_dir_name  # pylint: disable=g-import-not-at-top
    from extremeq.train.metrics import read_metrics  # pylint: disable=g-import-not-at-top

    metric = sweep.get("metric", "test_accuracy")
    fig, ax = plt.subplots(figsize=(max(4, 1.0 * len(results) + 2), 3.5))
    names = [r["method"] for r in results]
    ax.bar(range(len(results)), [r["mean"] for r in results], yerr=[r["std"] for r in results], capsize=4)
    ax.set_xticks(range(len(results)), names, rotation=30)
    ax.set_ylabel(metric)
    ax.set_title(sweep.get("title", "sweep"))
    fig.tight_layout()
    fig.savefig(os.path.join(workdir, "accuracy.png"), dpi=120)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for r in results:
        curves = {"train_loss": [], metric: []}
        for seed in sweep.seeds:
            rows = read_metrics(os.path.join(workdir, run_dir_name(r["method"]), f"seed{seed}"))
            for key in curves:
                curves[key].append([row.get(key) for row in rows])
        for ax, key in zip(axes, curves):
            runs = [c for c in curves[key] if c and None not in c]
            if not runs:
                continue
            length = min(len(c) for c in runs)
            mean = np.mean([c[:length] for c in runs], axis=0)
            ax.plot(np.arange(1, length + 1), mean, label=r["method"])
    for ax, key in zip(axes, ("train_loss", metric)):
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(workdir, "curves.png"), dpi=120)
    plt.close(fig)
