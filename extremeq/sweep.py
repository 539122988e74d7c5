"""Run a results table: every (method, seed) of a sweep config, one after another, in parallel
local worker processes, or as a SLURM job array.

    python -m extremeq.sweep --config configs/sweeps/digits_mlp.py --workdir runs/digits_table
    python -m extremeq.sweep --config configs/sweeps/digits_mlp.py --workdir ... --seeds 0 --methods fp,bwn
    python -m extremeq.sweep --config ... --workdir ... --jobs 4         # 4 rows at a time, this machine
    python -m extremeq.sweep --config ... --workdir ... --slurm [--submit] [--slurm_options=--gres=gpu:1]
    python -m extremeq.sweep --config ... --workdir ... --row 0:fp      # one row (what a worker runs)
    python -m extremeq.sweep --config ... --workdir ... --summarize     # the tables of the finished rows

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
(an interrupted run resumes from its checkpoint). A row starts only once the rows it references
(``"@<method>"``, same seed) are finished, in every mode: ``--jobs`` (extremeq.sweep_parallel)
starts it when they are, ``--slurm`` (extremeq.sweep_slurm) submits one job array per dependency
level, each after the previous level. Then ``results.csv`` and ``results.md`` hold, per
method, n, mean and sample standard deviation (ddof = 1; 0 for n = 1) of the metric over seeds,
and ``accuracy.png`` / ``curves.png`` plot it per method and per epoch (matplotlib, Agg).
"""

from __future__ import annotations

import math
import os
import re
import traceback

import numpy as np

from extremeq.sweep_results import plot_results, write_results  # noqa: F401 - public names

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SWEEP_KEYS = ("config", "methods", "seeds", "overrides", "metric", "title", "method_overrides")
REFERENCE_KEYS = (("quant", "init_from"), ("distill", "teacher_workdir"))


def _resolve(path: str) -> str:
    base, _, variant = path.partition(":")
    for candidate in (base, os.path.join(_REPO_ROOT, base)):
        if os.path.isfile(candidate):
            return candidate + (":" + variant if variant else "")
    raise FileNotFoundError(
        f"sweep config: training config {base!r} not found (relative to the current directory or {_REPO_ROOT})"
    )


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
                raise ValueError(
                    f"sweep config: method_overrides[{method!r}].{section}.{key} = {value!r} "
                    f"names no method of the sweep; methods: {list(sweep.methods)}"
                )
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


def rows(sweep) -> list[tuple[str, int]]:
    """Every (method, seed), each after the rows it references."""
    return [(m, int(s)) for m in run_order(sweep) for s in sweep.seeds]


def row_needs(sweep, method: str, seed: int) -> list[tuple[str, int]]:
    """The rows that must be finished before row (method, seed) starts."""
    return [(r, seed) for r in _references(sweep, method)]


def row_text(method: str, seed: int) -> str:
    """``"<seed>:<method>"``, the value of ``--row`` (methods may hold ':' and ',')."""
    return f"{seed}:{method}"


def parse_row(sweep, text: str) -> tuple[str, int]:
    """(method, seed) of a ``--row`` value; a ValueError names what is wrong."""
    seed, sep, method = text.partition(":")
    if not sep or not seed.strip().lstrip("-").isdigit():
        raise ValueError(f"--row {text!r}: expected <seed>:<method>, e.g. --row 0:{sweep.methods[0]}")
    if method not in sweep.methods or int(seed) not in [int(s) for s in sweep.seeds]:
        raise ValueError(
            f"--row {text!r}: not a row of this sweep (methods {list(sweep.methods)}, seeds {list(sweep.seeds)})"
        )
    return method, int(seed)


def is_finished(workdir: str, method: str, seed: int) -> bool:
    return os.path.isfile(os.path.join(run_path(workdir, method, seed), "final.json"))


def run_row(sweep, workdir: str, method: str, seed: int, train_fn=None) -> str | None:
    """Trains row (method, seed) unless finished; returns None, or why it failed or could not start."""
    from extremeq.train import train_and_evaluate  # pylint: disable=g-import-not-at-top

    run_dir = run_path(workdir, method, seed)
    if is_finished(workdir, method, seed):
        print(f"[sweep] {method} seed {seed}: finished, skipped", flush=True)
        return None
    missing = [r for r, s in row_needs(sweep, method, seed) if not is_finished(workdir, r, s)]
    if missing:
        why = f"needs the finished run(s) {missing} of seed {seed}"
        print(f"[sweep] {method} seed {seed} SKIPPED: {why}", flush=True)
        return why
    print(f"[sweep] {method} seed {seed} -> {run_dir}", flush=True)
    try:
        (train_fn or train_and_evaluate)(run_config(sweep, method, seed, workdir), run_dir)
    except Exception as e:  # one failed run must not lose the others
        why = f"{type(e).__name__}: {e}"
        print(f"[sweep] {method} seed {seed} FAILED: {why}", flush=True)
        traceback.print_exc()
        return why
    return None


def run_sweep(sweep, workdir: str, *, train_fn=None) -> list[dict]:
    """Runs every (method, seed) not yet finished, then writes the tables and plots.

    Returns one dict per method: method, n, mean, std, values (per seed), failed (seeds).
    """
    check_sweep_config(sweep)
    os.makedirs(workdir, exist_ok=True)
    failures = {}
    for method, seed in rows(sweep):
        why = run_row(sweep, workdir, method, seed, train_fn)
        if why:
            failures[(method, seed)] = why
    return collect_results(sweep, workdir, failures)


def collect_results(sweep, workdir: str, failures=None) -> list[dict]:
    """The metric of every finished row, summarised per method; writes the tables and plots."""
    metric = sweep.get("metric", "test_accuracy")
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
                raise ValueError(
                    f"--methods keeps {m!r} but drops {missing}, whose run {m!r} starts from "
                    f"(method_overrides); add {', '.join(missing)} to --methods"
                )
        sweep.methods = kept
        if overrides:
            sweep.method_overrides = {m: v for m, v in overrides.items() if m in kept}
    return sweep


def config_args(argv) -> list[str]:
    """The ``--config`` flag and its ``--config.<key>`` overrides in ``argv``, for the workers."""
    out, i = [], 0
    while i < len(argv):
        arg = argv[i]
        name = arg.lstrip("-").split("=", 1)[0]
        if arg.startswith("-") and (name == "config" or name.startswith("config.")):
            out.append(arg)
            if "=" not in arg and i + 1 < len(argv):
                out.append(argv[i + 1])
                i += 1
        i += 1
    return out


def main(argv):
    import sys  # pylint: disable=g-import-not-at-top

    from absl import flags  # pylint: disable=g-import-not-at-top

    del argv
    FLAGS = flags.FLAGS  # pylint: disable=invalid-name
    sweep, workdir = FLAGS.config, os.path.abspath(FLAGS.workdir)
    if FLAGS.row:
        check_sweep_config(sweep)
        method, seed = parse_row(sweep, FLAGS.row)
        raise SystemExit(1 if run_row(sweep, workdir, method, seed) else 0)
    sweep = select(sweep, FLAGS.seeds, FLAGS.methods)
    check_sweep_config(sweep)
    if FLAGS.slurm or FLAGS.submit:
        from extremeq import sweep_slurm  # pylint: disable=g-import-not-at-top

        select_args = [f"--{k}={','.join(v)}" for k, v in (("seeds", FLAGS.seeds), ("methods", FLAGS.methods)) if v]
        script = sweep_slurm.write_slurm(
            sweep, workdir, config_args(sys.argv[1:]), options=FLAGS.slurm_options or (), select_args=select_args
        )
        print(f"[sweep] SLURM scripts written; submit with: bash {script}")
        if FLAGS.submit:
            sweep_slurm.submit(script)
        return
    if FLAGS.summarize:
        results = collect_results(sweep, workdir)
    elif FLAGS.jobs > 1:
        from extremeq import sweep_parallel  # pylint: disable=g-import-not-at-top

        failures = sweep_parallel.run_parallel(sweep, workdir, config_args(sys.argv[1:]), jobs=FLAGS.jobs)
        results = collect_results(sweep, workdir, failures)
    else:
        results = run_sweep(sweep, workdir)
    with open(os.path.join(workdir, "results.md")) as f:
        print(f.read())
    if any(r["failed"] for r in results):
        raise SystemExit(1)


def run():
    from absl import app, flags  # pylint: disable=g-import-not-at-top
    from ml_collections import config_flags  # pylint: disable=g-import-not-at-top

    flags.DEFINE_string("workdir", None, "Directory of the sweep (one sub-directory per run).")
    config_flags.DEFINE_config_file("config", None, "Sweep config file (configs/sweeps/<table>.py).", lock_config=False)
    flags.DEFINE_list("seeds", None, "Run only these seeds (comma-separated), e.g. --seeds 0,1.")
    flags.DEFINE_list("methods", None, "Run only these methods of the sweep (comma-separated).")
    flags.DEFINE_integer("jobs", 1, "Rows run at once, each in its own worker process on this machine.")
    flags.DEFINE_string("row", None, "Run only this row, <seed>:<method> (what each worker runs).")
    flags.DEFINE_boolean("summarize", False, "Only write the tables and plots of the finished rows.")
    flags.DEFINE_boolean(
        "slurm",
        False,
        "Write SLURM job-array scripts (one array task per row, one array "
        "per dependency level) under <workdir>/slurm instead of training.",
    )
    flags.DEFINE_boolean("submit", False, "With --slurm: submit them with sbatch.")
    flags.DEFINE_list(
        "slurm_options",
        None,
        "Extra sbatch options for every job, comma-separated, e.g. "
        "--slurm_options=--partition=gpu,--gres=gpu:1,--time=04:00:00",
    )
    flags.mark_flags_as_required(["config", "workdir"])
    app.run(main)


if __name__ == "__main__":
    run()
