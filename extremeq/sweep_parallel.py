"""``python -m extremeq.sweep --jobs N``: a sweep's rows in up to N worker processes on this machine.

Each row runs in a fresh process, ``python -m extremeq.sweep <the same --config flags> --workdir W
--row <seed>:<method>`` (its own JAX runtime; its output in ``W/logs/<method>_seed<s>.log``). A row
starts once every row it references (TTQ from the FP run, a distillation teacher: ``"@<method>"``
in ``method_overrides``, same seed) has finished; a row whose reference failed is not started and
is reported as failed with the reason. Rows already finished are skipped, as in the serial sweep.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from extremeq import sweep as sweep_lib

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def row_command(config_args, workdir: str, method: str, seed: int) -> list[str]:
    """The command that runs one row (``config_args``: ``--config=<file>`` and its overrides)."""
    return [
        sys.executable,
        "-m",
        "extremeq.sweep",
        *config_args,
        f"--workdir={workdir}",
        f"--row={sweep_lib.row_text(method, seed)}",
    ]


def log_path(workdir: str, method: str, seed: int) -> str:
    return os.path.join(workdir, "logs", f"{sweep_lib.run_dir_name(method)}_seed{seed}.log")


def run_parallel(sweep, workdir: str, config_args, *, jobs: int, poll_s: float = 0.2) -> dict:
    """Runs the unfinished rows of ``sweep``, at most ``jobs`` at once, each after the rows it needs.

    Returns {(method, seed): why} of the rows that failed or could not start.
    """
    if jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {jobs}")
    workdir = os.path.abspath(workdir)
    os.makedirs(os.path.join(workdir, "logs"), exist_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_REPO_ROOT, env.get("PYTHONPATH", "")) if p)
    pending = [r for r in sweep_lib.rows(sweep) if not sweep_lib.is_finished(workdir, *r)]
    running, failures = {}, {}
    while pending or running:
        for row in list(pending):
            needs = sweep_lib.row_needs(sweep, *row)
            failed = [n for n in needs if n in failures]
            if failed:
                failures[row] = f"needs the finished run(s) {[m for m, _ in failed]} of seed {row[1]}"
                pending.remove(row)
                print(f"[sweep] {row[0]} seed {row[1]} SKIPPED: {failures[row]}", flush=True)
            elif len(running) < jobs and all(n not in running and sweep_lib.is_finished(workdir, *n) for n in needs):
                log = open(log_path(workdir, *row), "a")  # noqa: SIM115 - closed when the row ends
                cmd = row_command(config_args, workdir, *row)
                running[row] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log)
                pending.remove(row)
                print(f"[sweep] {row[0]} seed {row[1]} started (log: {log.name})", flush=True)
        for row, (proc, log) in list(running.items()):
            code = proc.poll()
            if code is None:
                continue
            log.close()
            del running[row]
            if code == 0 and sweep_lib.is_finished(workdir, *row):
                print(f"[sweep] {row[0]} seed {row[1]} finished", flush=True)
            else:
                failures[row] = f"worker exited with status {code}; see {log.name}"
                print(f"[sweep] {row[0]} seed {row[1]} FAILED: {failures[row]}", flush=True)
        if running:
            time.sleep(poll_s)
    return failures
