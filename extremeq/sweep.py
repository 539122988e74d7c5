"""Run a results table: every (method, seed) of a sweep config, one after another.

    python -m extremeq.sweep --config configs/sweeps/digits_mlp.py --workdir runs/digits_table
    python -m extremeq.sweep --config configs/sweeps/digits_mlp.py --workdir ... --seeds 0 --methods fp,bwn

A sweep config (``configs/sweeps/<table>.py``, ``get_config()``) has:
  config     the training config file (``configs/digits_mlp.py``), relative to the repository root
             or the current directory;
  methods    the variants passed to its ``get_config(variant)``, e.g. ["fp", "bwn", "twn"];
  seeds      e.g. [0, 1, 2];
  overrides  applied to every run, sections nested (``{"num_epochs": 5, "optimizer": {"learning_rate": 1e-3}}``);
  metric     the metrics.jsonl key summarised from each run's last epoch (``test_accuracy``);
  title      the table's heading;
  method_overrides  (optional) per-method overrides, applied after ``overrides``. A string
             ``"@<method>"`` as ``quant.init_from`` or ``distill.teacher_workdir`` names the run of
             that method with the same seed, which then runs first: TTQ fine-tuned from the FP
             row is ``{"resnet20:ttq": {"quant": {"init_from": "@resnet20:fp"}}}``.

Run ``(m, s)`` lives in ``<workdir>/<m>/seed<s>``; a run whose ``final.json`` exists is skipped
(an interrupted run resumes from its checkpoint). Then ``results.csv`` and ``results.md`` hold, per
method, n, mean and sample standard deviation (ddof = 1; 0 for n = 1) of the metric over seeds,
and ``accuracy.png`` / ``curves.png`` plot it per method and per epoch (matplotlib, Agg).
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import traceback

import numpy as np

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SWEEP_KEYS = ("config", "methods", "seeds", "overrides", "metric", "title", "method_overrides")
REFERENCE_KEYS = (("quant", "init_from"), ("distill", "teacher_workdir"))


def _resolve(path: str) -> str:
    base, _, variant = path.partition(":")
    for candidate in (base, os.path.join(_REPO_ROOT, base)):
        if os.path.isfile(candidate):
            return candidate + (":" + variant if variant else "")
    raise FileNotFoundError(f"sweep config: training config {base!r} not found (relative to the "
                            f"current directory or {_REPO_ROOT})")


def check_sweep_config(sweep) -> None:
    """Raises ValueError naming the bad key of a sweep config."""
    unknown = sorted(set(sweep.keys()) - set(SWEEP_KEYS))
    if unknown:
        raise ValueError(f"sweep config: unknown key(s) {unknown}; known: {list(SWEEP_KEYS)}")
    for key in ("config", "methods", "seeds"):
        if key not in sweep or not sweep[key]:
            raise ValueError(f"sweep config: '{key}' is required and must not be empty")
    if len(set(sweep.methods)) != len(sweep.methods) or len(set(sweep.seeds)) != len(sweep.seeds):
        raise ValueError("sweep config: 'methods' and 'seeds' must not repeat")
    extra = sorted(set((sweep.get("method_overrides") or {}).keys()) - set(sweep.methods))
    if extra:
        raise ValueError(f"sweep config: method_overrides for {extra}, which are not in 'methods'")
    run_order(sweep)


def run_dir_name(method: str) -> str:
    """A directory name for a variant string (``resnet20:ttq,ste=clipped`` -> ``resnet20_ttq_ste-clipped``)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", method.replace("=", "-"))


def apply_overrides(config, overrides) -> None:
    """Nested override sections merge into the config's sections; other values replace."""
    for key, value in overrides.items():
        if hasattr(value, "items") and key in config and hasattr(config[key], "items"):
            apply_overrides(config[key], value)
        else:
            config[key] = value


def run_path(workdir: str, method: str, seed: int) -> str:
    return os.path.join(workdir, run_dir_name(method), f"seed{seed}")


def _references(sweep, method: str) -> list[str]:
    """The methods whose runs ``method`` starts from (``"@<method>"`` values)."""
    own = (sweep.get("method_overrides") or {}).get(method) or {}
    refs = []
    for section, key in REFERENCE_KEYS:
        value = (own.get(section) or {}).get(key, "") if hasattr(own.get(section), "get") else ""
        if isinstance(value, str) and value.startswith("@"):
            if value[1:] not in sweep.methods:
                raise ValueError(f"sweep config: method_overrides[{method!r}].{section}.{key} = {value!r} "
                                 f"names no method of the sweep; methods: {list(sweep.methods)}")
            refs.append(value[1:])
    return refs


def run_order(sweep) -> list[str]:
    """The methods, each after the ones it references (otherwise in the given order)."""
    order, visiting = [], set()

    def visit(m):
        if m in order:
            return
        if m in visiting:
            raise ValueError(f"sweep config: method_overrides reference each other in a cycle at {m!r}")
        visiting.add(m)
        for r in _references(sweep, m):
            visit(r)
        visiting.discard(m)
        order.append(m)

    for m in sweep.methods:
        visit(m)
    return order


def run_config(sweep, method: str, seed: int, workdir: str = ""):
    """The training config of run (method, seed); ``"@<method>"`` references resolved in ``workdir``."""
    from extremeq.train.config import load_config_file  # pylint: disable=g-import-not-at-top

    config = load_config_file(_resolve(f"{sweep.config}:{method}"))
    config.seed = int(seed)
    apply_overrides(config, sweep.get("overrides") or {})
    apply_overrides(config, (sweep.get("method_overrides") or {}).get(method) or {})
    for section, key in REFERENCE_KEYS:
        value = config[section][key] if section in config and key in config[section] else ""
        if isinstance(value, str) and value.startswith("@"):
            config[section][key] = run_path(workdir, value[1:], seed)
    return config


def _last_row(run_dir: str) -> dict | None:
    from extremeq.train.metrics import read_metrics  # pylint: disable=g-import-not-at-top

    rows = read_metrics(run_dir)
    return rows[-1] if rows else None


def summarize(values) -> tuple[int, float, float]:
    """(n, mean, sample std with ddof = 1, or 0 for a single value)."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], np.float64)
    if v.size == 0:
        return 0, float("nan"), float("nan")
    return int(v.size), float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def run_sweep(sweep, workdir: str, *, train_fn=None) -> list[dict]:
    """Runs every (method, seed) not yet finished, then writes the tables and plots.

    Returns one dict per method: method, n, mean, std, values (per seed), failed (seeds).
    """
    from extremeq.train import train_and_evaluate  # pylint: disable=g-import-not-at-top

    train_fn = train_fn or train_and_evaluate
    check_sweep_config(sweep)
    os.makedirs(workdir, exist_ok=True)
    metric = sweep.get("metric", "test_accuracy")
    failures = {}
    for method in run_order(sweep):
        for seed in sweep.seeds:
            run_dir = run_path(workdir, method, seed)
            if os.path.isfile(os.path.join(run_dir, "final.json")):
                print(f"[sweep] {method} seed {seed}: finished, skipped", flush=True)
                continue
            missing = [r for r in _references(sweep, method)
                       if not os.path.isfile(os.path.join(run_path(workdir, r, seed), "final.json"))]
            if missing:
                failures[(method, seed)] = f"needs the finished run(s) {missing} of seed {seed}"
                print(f"[sweep] {method} seed {seed} SKIPPED: {failures[(method, seed)]}", flush=True)
                continue
            print(f"[sweep] {method} seed {seed} -> {run_dir}", flush=True)
            try:
                train_fn(run_config(sweep, method, seed, workdir), run_dir)
            except Exception as e:  # one failed run must not lose the others
                failures[(method, seed)] = f"{type(e).__name__}: {e}"
                print(f"[sweep] {method} seed {seed} FAILED: {failures[(method, seed)]}", flush=True)
                traceback.print_exc()
    results = []
    for method in sweep.methods:
        values, failed = [], []
        for seed in sweep.seeds:
            run_dir = run_path(workdir, method, seed)
            row = _last_row(run_dir) if os.path.isfile(os.path.join(run_dir, "final.json")) else None
            if row is None or row.get(metric) is None:
                failed.append(seed)
                values.append(None)
            else:
                values.append(float(row[metric]))
        n, mean, std = summarize(values)
        results.append(dict(method=method, n=n, mean=mean, std=std, values=values, failed=failed))
    write_results(sweep, workdir, results, failures)
    plot_results(sweep, workdir, results)
    return results


def write_results(sweep, workdir, results, failures=None) -> None:
    metric = sweep.get("metric", "test_accuracy")
    with open(os.path.join(workdir, "results.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "n", f"{metric}_mean", f"{metric}_std"] + [f"seed{s}" for s in sweep.seeds])
        for r in results:
            w.writerow([r["method"], r["n"], repr(r["mean"]), repr(r["std"])]
                       + ["" if v is None else repr(v) for v in r["values"]])
    scale = 100.0 if "accuracy" in metric else 1.0
    unit = " (%)" if scale == 100.0 else ""
    lines = [f"# {sweep.get('title', 'Sweep')}", "",
             f"Training config `{sweep.config}`, seeds {list(sweep.seeds)}, overrides "
             f"`{_overrides_json(sweep)}`; {metric} after the last epoch, "
             "mean +- sample std (ddof=1) over seeds.", "",
             f"| method | n | {metric}{unit} | per seed |", "| --- | --- | --- | --- |"]
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


def select(sweep, seeds=None, methods=None):
    """The sweep restricted to ``seeds`` (ints or their strings) and ``methods`` (its own names), so
    that parallel processes can each run a part into the same workdir."""
    if seeds:
        try:
            sweep.seeds = [int(x) for x in seeds]
        except ValueError as e:
            raise ValueError(f"--seeds takes integers separated by commas, got {list(seeds)}") from e
    if methods:
        unknown = sorted(set(methods) - set(sweep.methods))
        if unknown:
            raise ValueError(f"--methods {unknown} not in this sweep's methods {list(sweep.methods)}")
        kept = [m for m in sweep.methods if m in methods]
        overrides = sweep.get("method_overrides") or {}
        for m in kept:  # a kept method that starts from a dropped one's run: say so
            missing = [r for r in _references(sweep, m) if r not in kept]
            if missing:
                raise ValueError(f"--methods keeps {m!r} but drops {missing}, whose run {m!r} starts from "
                                 f"(method_overrides); add {', '.join(missing)} to --methods")
        sweep.methods = kept
        if overrides:
            sweep.method_overrides = {m: v for m, v in overrides.items() if m in kept}
    return sweep


def main(argv):
    from absl import flags  # pylint: disable=g-import-not-at-top

    del argv
    FLAGS = flags.FLAGS  # pylint: disable=invalid-name
    sweep = select(FLAGS.config, FLAGS.seeds, FLAGS.methods)
    results = run_sweep(sweep, FLAGS.workdir)
    with open(os.path.join(FLAGS.workdir, "results.md")) as f:
        print(f.read())
    if any(r["failed"] for r in results):
        raise SystemExit(1)


def run():
    from absl import app, flags  # pylint: disable=g-import-not-at-top
    from ml_collections import config_flags  # pylint: disable=g-import-not-at-top

    flags.DEFINE_string("workdir", None, "Directory of the sweep (one sub-directory per run).")
    config_flags.DEFINE_config_file("config", None, "Sweep config file (configs/sweeps/<table>.py).",
                                    lock_config=False)
    flags.DEFINE_list("seeds", None, "Run only these seeds (comma-separated), e.g. --seeds 0,1.")
    flags.DEFINE_list("methods", None, "Run only these methods of the sweep (comma-separated).")
    flags.mark_flags_as_required(["config", "workdir"])
    app.run(main)


if __name__ == "__main__":
    run()
