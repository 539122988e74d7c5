"""Figures of the reproductions and claims (matplotlib, Agg backend, PNG).

Each function takes plain numbers (no training), draws one figure and saves it to ``path``:
  paper_bars        measured accuracy per method (mean +- std over seeds) beside the paper's bar
  training_curves   train loss and test accuracy per epoch, one line per method (mean over seeds)
  weight_histogram  latent weights of a trained layer, TWN's +-Delta and alpha, TTQ's +-Delta, W_p, -W_n
  flip_ratio        fraction of binary weights whose sign changed in each epoch
  ste_grid, layer_grid, bars_with_errors, memory_bars: the claims' figures
"""

from __future__ import annotations

import numpy as np


def _plt():
    import matplotlib  # pylint: disable=g-import-not-at-top

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

    return plt


def _save(fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    print(f"-> {path}")


def paper_bars(rows, path, title, ylim=None):
    """rows: list of (label, measured mean %, measured std %, paper % or None)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(1.3 * len(rows) + 2.5, 3.8))
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [r[1] for r in rows], 0.4, yerr=[r[2] for r in rows], capsize=4, label="measured (this repo)")
    paper = [np.nan if r[3] is None else r[3] for r in rows]
    ax.bar(x + 0.2, paper, 0.4, color="tab:gray", label="paper")
    for xi, r in zip(x, rows):
        ax.text(xi - 0.2, r[1], f"{r[1]:.2f}", ha="center", va="bottom", fontsize=7)
        if r[3] is not None:
            ax.text(xi + 0.2, r[3], f"{r[3]:.2f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x, [r[0] for r in rows])
    lo = min([r[1] - r[2] for r in rows] + [p for p in paper if np.isfinite(p)])
    hi = max([r[1] + r[2] for r in rows] + [p for p in paper if np.isfinite(p)])
    ax.set_ylim(ylim or (max(0.0, lo - 0.6), min(100.0, hi + 0.4)))
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    _save(fig, path)


def training_curves(curves, path, title):
    """curves: {label: list of per-seed lists of metric rows (dicts with epoch, train_loss, test_accuracy)}."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for label, runs in curves.items():
        runs = [r for r in runs if r]
        if not runs:
            continue
        n = min(len(r) for r in runs)
        epochs = np.arange(1, n + 1)
        for ax, key, scale in ((axes[0], "train_loss", 1.0), (axes[1], "test_accuracy", 100.0)):
            vals = np.array([[row[key] for row in r[:n]] for r in runs]) * scale
            ax.errorbar(epochs, vals.mean(0), yerr=vals.std(0), marker="o", capsize=3, label=label)
    axes[0].set_ylabel("train loss")
    axes[1].set_ylabel("test accuracy (%)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.set_xticks(np.arange(1, max(len(r) for v in curves.values() for r in v if r) + 1))
    axes[1].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    _save(fig, path)


def weight_histogram(panels, path, title):
    """panels: list of dicts with label, weights (latent, any shape), and optional
    delta (threshold), alpha (TWN scale), w_p, w_n (TTQ scales)."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.4), squeeze=False)
    for ax, p in zip(axes[0], panels):
        w = np.asarray(p["weights"]).ravel()
        ax.hist(w, bins=120, color="tab:blue", alpha=0.8)
        if p.get("delta") is not None:
            for s in (-1, 1):
                ax.axvline(s * p["delta"], color="k", ls="--", lw=1, label="±Δ (threshold)" if s > 0 else None)
        if p.get("alpha") is not None:
            for s in (-1, 1):
                ax.axvline(s * p["alpha"], color="tab:red", lw=1.5, label="±α (TWN scale)" if s > 0 else None)
        if p.get("w_p") is not None:
            ax.axvline(p["w_p"], color="tab:green", lw=1.5, label="W_p (TTQ)")
            ax.axvline(-p["w_n"], color="tab:purple", lw=1.5, label="-W_n (TTQ)")
        ax.set_title(p["label"], fontsize=8)
        ax.set_xlabel("latent weight")
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("count")
    fig.suptitle(title, fontsize=9)
    _save(fig, path)


def flip_ratio(series, path, title):
    """series: {label: list of (epoch, flip ratio)}."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 3.6))
    for label, pts in series.items():
        if pts:
            e, f = zip(*pts)
            ax.plot(e, 100 * np.asarray(f), marker="o", label=label)
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("weights whose sign flipped in the epoch (%)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    _save(fig, path)


def ste_grid(grid, stes, lrs, path):
    """grid: {(method, ste, lr): accuracy %}; one heat map per method."""
    plt = _plt()
    methods = sorted({k[0] for k in grid})
    fig, axes = plt.subplots(1, len(methods), figsize=(4.4 * len(methods), 3.6), squeeze=False)
    for ax, m in zip(axes[0], methods):
        a = np.array([[grid[m, s, lr] for lr in lrs] for s in stes])
        im = ax.imshow(a, cmap="viridis", aspect="auto")
        for i in range(len(stes)):
            for j in range(len(lrs)):
                ax.text(
                    j,
                    i,
                    f"{a[i, j]:.1f}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="k" if a[i, j] > a.min() + 0.6 * (a.max() - a.min()) else "w",
                )
        ax.set_xticks(range(len(lrs)), [f"{lr:g}" for lr in lrs])
        ax.set_yticks(range(len(stes)), stes)
        ax.set_xlabel("Adam learning rate")
        ax.set_title(f"{m.upper()}: test accuracy (%)", fontsize=9)
        fig.colorbar(im, ax=ax)
    _save(fig, path)


def layer_grid(table, edges, names, path):
    """table: {(first, last): accuracy %}."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.6, 3.6))
    a = np.array([[table[f, l] for l in edges] for f in edges])
    im = ax.imshow(a, cmap="viridis")
    for i in range(len(edges)):
        for j in range(len(edges)):
            ax.text(
                j,
                i,
                f"{a[i, j]:.2f}",
                ha="center",
                va="center",
                fontsize=8,
                color="k" if a[i, j] > a.min() + 0.6 * (a.max() - a.min()) else "w",
            )
    ax.set_xticks(range(len(edges)), [names[e] for e in edges])
    ax.set_yticks(range(len(edges)), [names[e] for e in edges])
    ax.set_xlabel("last layer")
    ax.set_ylabel("first layer")
    ax.set_title("BNN MLP: test accuracy (%)", fontsize=9)
    fig.colorbar(im, ax=ax)
    _save(fig, path)


def bars_with_errors(values, path, reference=None, title=""):
    """values: {label: list of accuracies %}; reference: (label, value) drawn as a line."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(1.1 * len(values) + 2.5, 3.4))
    labels = list(values)
    means = [np.mean(values[k]) for k in labels]
    stds = [np.std(values[k], ddof=1) if len(values[k]) > 1 else 0.0 for k in labels]
    ax.bar(range(len(labels)), means, yerr=stds, capsize=4)
    for i, m in enumerate(means):
        ax.text(i, m, f"{m:.2f}", ha="center", va="bottom", fontsize=7)
    if reference:
        ax.axhline(reference[1], color="k", ls="--", lw=1, label=f"{reference[0]} {reference[1]:.2f}")
        ax.legend(fontsize=7)
    ax.set_xticks(range(len(labels)), labels, rotation=20)
    lo = min(m - s for m, s in zip(means, stds))
    hi = max([m + s for m, s in zip(means, stds)] + ([reference[1]] if reference else []))
    ax.set_ylim(max(0, lo - 1.0), min(100, hi + 0.5))
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title, fontsize=9)
    _save(fig, path)


def memory_bars(ratios, path):
    """ratios: {(network, method): float32 bytes / packed bytes}."""
    plt = _plt()
    nets = list(dict.fromkeys(k[0] for k in ratios))
    methods = list(dict.fromkeys(k[1] for k in ratios))
    fig, ax = plt.subplots(figsize=(8, 3.6))
    w = 0.8 / len(nets)
    for i, net in enumerate(nets):
        x = np.arange(len(methods)) + (i - (len(nets) - 1) / 2) * w
        ax.bar(x, [ratios[net, m] for m in methods], w, label=net)
    for y, lab in ((32, "32x (1 bit)"), (16, "16x (2 bits)"), (4, "4x (8 bits)")):
        ax.axhline(y, color="gray", ls=":", lw=1)
        ax.text(len(methods) - 0.5, y, lab, fontsize=7, va="bottom", ha="right")
    ax.set_xticks(range(len(methods)), methods)
    ax.set_ylabel("compression vs float32 (x)")
    ax.set_title("Packed size, every layer quantized (extremeq.summary)", fontsize=9)
    ax.legend(fontsize=7)
    _save(fig, path)
