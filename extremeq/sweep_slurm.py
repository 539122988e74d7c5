"""``python -m extremeq.sweep --slurm [--submit]``: a sweep as SLURM job arrays, one array task per row.

Written under ``<workdir>/slurm/``:

    rows_<L>.txt    the rows of dependency level L, one ``<seed>:<method>`` a line (level 0: rows
                    that reference no other row; level L: rows whose references are below L);
    row.sbatch      the array task: line ``$SLURM_ARRAY_TASK_ID + 1`` of the rows file it is given
                    is its row, run by ``python -m extremeq.sweep <--config flags> --workdir W --row R``;
    summary.sbatch  ``--summarize``: the tables and plots, once every row has ended;
    submit.sh       ``sbatch --parsable --array=0-<n-1> [--dependency=afterany:<previous levels>]
                    row.sbatch rows_<L>.txt`` per level, then the summary after all of them.

``afterany``, not ``afterok``: a level starts when the previous one has ended, and a row whose
reference failed says so and exits 1 (``--row`` checks that its references are finished), instead of
every dependent job waiting forever on ``DependencyNeverSatisfied``. Each row resumes from its
checkpoint when resubmitted; finished rows are skipped.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys

from extremeq import sweep as sweep_lib


def levels(sweep) -> list[list[tuple[str, int]]]:
    """The rows grouped by dependency level (a row's level is one more than its references')."""
    level = {}
    for method, seed in sweep_lib.rows(sweep):  # references come first
        level[(method, seed)] = 1 + max((level[n] for n in sweep_lib.row_needs(sweep, method, seed)), default=-1)
    out = [[] for _ in range(1 + max(level.values(), default=-1))]
    for row, lv in level.items():
        out[lv].append(row)
    return out


def _sbatch_header(name: str, logs: str, options) -> list[str]:
    lines = ["#!/bin/bash", f"#SBATCH --job-name={name}", f"#SBATCH --output={logs}/%x_%A_%a.out"]
    lines += [f"#SBATCH {o}" for o in options]
    return lines + ["set -euo pipefail", f"cd {shlex.quote(os.getcwd())}"]


def _python_command(args) -> str:
    return " ".join(shlex.quote(a) for a in [sys.executable, "-m", "extremeq.sweep", *args])


def write_slurm(sweep, workdir: str, config_args, *, options=(), select_args=()) -> str:
    """Writes the scripts (module docstring) and returns the path of submit.sh.

    ``config_args``: ``--config=<file>`` and its overrides, passed to every task; ``options``: extra
    ``#SBATCH`` lines (``--partition=gpu``, ``--gres=gpu:1``); ``select_args``: ``--seeds``/``--methods``
    for the summary."""
    workdir = os.path.abspath(workdir)
    out = os.path.join(workdir, "slurm")
    logs = os.path.join(out, "logs")
    os.makedirs(logs, exist_ok=True)
    name = f"sweep-{os.path.basename(workdir)}"
    config_args = [_absolute_config(a) for a in config_args]
    row = _sbatch_header(name, logs, options) + [
        'ROW="$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" "$1")"',
        f'exec {_python_command([*config_args, f"--workdir={workdir}"])} --row="$ROW"',
    ]
    summary = _sbatch_header(f"{name}-summary", logs, options) + [
        f"exec {_python_command([*config_args, *select_args, f'--workdir={workdir}', '--summarize'])}"
    ]
    submit = ["#!/bin/bash", "set -euo pipefail", f"cd {shlex.quote(out)}"]
    jobs = []
    for lv, rows in enumerate(levels(sweep)):
        with open(os.path.join(out, f"rows_{lv}.txt"), "w") as f:
            f.writelines(sweep_lib.row_text(m, s) + "\n" for m, s in rows)
        after = f" --dependency=afterany:{':'.join(jobs)}" if jobs else ""
        submit.append(f"j{lv}=$(sbatch --parsable --array=0-{len(rows) - 1}{after} row.sbatch rows_{lv}.txt)")
        submit.append(f"j{lv}=${{j{lv}%%;*}}")  # --parsable prints <job id>[;<cluster>]
        jobs.append(f"$j{lv}")
    submit.append(f"sbatch --parsable --dependency=afterany:{':'.join(jobs)} summary.sbatch")
    for file, lines in (("row.sbatch", row), ("summary.sbatch", summary), ("submit.sh", submit)):
        with open(os.path.join(out, file), "w") as f:
            f.write("\n".join(lines) + "\n")
    return os.path.join(out, "submit.sh")


def _absolute_config(arg: str) -> str:
    """``--config=<file>`` with the file's absolute path (the tasks may start elsewhere)."""
    if not arg.lstrip("-").startswith("config="):
        return arg
    path, sep, variant = arg.split("=", 1)[1].partition(":")
    return f"--config={os.path.abspath(path)}{sep}{variant}" if os.path.isfile(path) else arg


def submit(script: str) -> str:
    """Runs submit.sh (its sbatch calls); returns what it printed (the summary's job id)."""
    if shutil.which("sbatch") is None:
        raise RuntimeError(f"sbatch is not on PATH here; run `bash {script}` on the cluster's login node")
    done = subprocess.run(["bash", script], capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{script} failed (status {done.returncode}): {done.stderr.strip()[-500:]}")
    print(done.stdout, end="")
    return done.stdout
