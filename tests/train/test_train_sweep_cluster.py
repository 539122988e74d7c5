"""Sweeps past one process: ``--jobs N`` local workers (run for real on a 3-row sweep whose TTQ and
distillation rows start from the FP row) and the SLURM job-array scripts (their exact commands,
the sbatch calls of ``--submit`` against a stand-in sbatch, and one array task run for real)."""

import json
import os
import shlex
import stat
import subprocess
import sys

import pytest

from extremeq import sweep as sweep_lib
from extremeq import sweep_slurm
from extremeq.train.config import load_config_file

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SWEEP = os.path.join(HERE, "sweep_tiny.py")


def _sweep_cli(*args, cwd=None, env=None):
    env = dict(env or os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu")
    return subprocess.run(
        [sys.executable, "-m", "extremeq.sweep", *args],
        capture_output=True,
        text=True,
        cwd=cwd or REPO,
        env=env,
        timeout=600,
        check=False,
    )


def _events(stdout):
    """[(method, event)] from the '[sweep] <method> seed 0 <event>' lines, in order."""
    out = []
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[0] == "[sweep]" and parts[2:4] == ["seed", "0"]:
            out.append((parts[1], parts[4]))
    return out


@pytest.mark.slow
def test_jobs_run_rows_in_parallel_after_their_references(tmp_path):
    wd = tmp_path / "sweep"
    r = _sweep_cli(f"--config={SWEEP}", f"--workdir={wd}", "--jobs=2")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    events = _events(r.stdout)
    assert events[:2] == [("fp", "started"), ("fp", "finished")]  # ttq and bwn wait for fp
    assert sorted(events[2:4]) == [("bwn", "started"), ("ttq", "started")]  # then run together
    assert sorted(events[4:]) == [("bwn", "finished"), ("ttq", "finished")]
    for method in ("fp", "ttq", "bwn"):
        assert os.path.isfile(wd / method / "seed0" / "final.json")
        assert os.path.isfile(wd / "logs" / f"{method}_seed0.log")
    with open(wd / "ttq" / "seed0" / "config.json") as f:
        assert json.load(f)["quant"]["init_from"] == str(wd / "fp" / "seed0")
    with open(wd / "bwn" / "seed0" / "config.json") as f:
        assert json.load(f)["distill"]["teacher_workdir"] == str(wd / "fp" / "seed0")
    with open(wd / "results.md") as f:
        table = f.read()
    assert all(f"| {m} | 1 |" in table for m in ("fp", "ttq", "bwn"))
    again = _sweep_cli(f"--config={SWEEP}", f"--workdir={wd}", "--jobs=2")  # all finished: nothing runs
    assert again.returncode == 0 and "started" not in again.stdout


@pytest.mark.slow
def test_jobs_do_not_start_rows_whose_reference_failed(tmp_path):
    wd = tmp_path / "sweep"
    r = _sweep_cli(f"--config={SWEEP}:bad_fp", f"--workdir={wd}", "--jobs=3")
    assert r.returncode == 1
    assert ("fp", "FAILED:") in _events(r.stdout)
    for method in ("ttq", "bwn"):
        assert (method, "SKIPPED:") in _events(r.stdout)
        assert not os.path.exists(wd / method)
    assert "needs the finished run(s) ['fp'] of seed 0" in r.stdout


def test_levels_and_rows():
    s = load_config_file(SWEEP)
    s.seeds = [0, 1]
    assert sweep_slurm.levels(s) == [[("fp", 0), ("fp", 1)], [("ttq", 0), ("ttq", 1), ("bwn", 0), ("bwn", 1)]]
    assert sweep_lib.parse_row(s, "1:ttq") == ("ttq", 1)
    for bad in ("ttq", "2:ttq", "0:twn", "x:fp"):
        with pytest.raises(ValueError, match="--row"):
            sweep_lib.parse_row(s, bad)


def test_slurm_scripts_hold_the_exact_commands(tmp_path):
    wd = tmp_path / "sweep"
    r = _sweep_cli(
        f"--config={SWEEP}:seeds2",
        "--config.overrides.num_epochs=2",
        f"--workdir={wd}",
        "--slurm",
        "--slurm_options=--partition=gpu,--gres=gpu:1",
    )
    assert r.returncode == 0, r.stderr[-3000:]
    out = wd / "slurm"
    assert (out / "rows_0.txt").read_text() == "0:fp\n1:fp\n"
    assert (out / "rows_1.txt").read_text() == "0:ttq\n1:ttq\n0:bwn\n1:bwn\n"
    common = " ".join(
        shlex.quote(a)
        for a in [
            sys.executable,
            "-m",
            "extremeq.sweep",
            f"--config={SWEEP}:seeds2",
            "--config.overrides.num_epochs=2",
            f"--workdir={wd}",
        ]
    )
    assert (out / "row.sbatch").read_text().splitlines() == [
        "#!/bin/bash",
        f"#SBATCH --job-name=sweep-{wd.name}",
        f"#SBATCH --output={out}/logs/%x_%A_%a.out",
        "#SBATCH --partition=gpu",
        "#SBATCH --gres=gpu:1",
        "set -euo pipefail",
        f"cd {REPO}",
        'ROW="$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" "$1")"',
        f'exec {common} --row="$ROW"',
    ]
    assert (out / "summary.sbatch").read_text().splitlines()[-1] == f"exec {common} --summarize"
    assert (out / "submit.sh").read_text().splitlines() == [
        "#!/bin/bash",
        "set -euo pipefail",
        f"cd {out}",
        "j0=$(sbatch --parsable --array=0-1 row.sbatch rows_0.txt)",
        "j0=${j0%%;*}",
        "j1=$(sbatch --parsable --array=0-3 --dependency=afterany:$j0 row.sbatch rows_1.txt)",
        "j1=${j1%%;*}",
        "sbatch --parsable --dependency=afterany:$j0:$j1 summary.sbatch",
    ]


@pytest.mark.slow
def test_submit_calls_sbatch_and_an_array_task_runs_its_row(tmp_path):
    bin_dir, calls = tmp_path / "bin", tmp_path / "sbatch_calls.txt"
    bin_dir.mkdir()
    fake = bin_dir / "sbatch"  # records its arguments, answers job ids 101, 102, ... as sbatch --parsable
    fake.write_text(f'#!/bin/bash\necho "$*" >> {calls}\necho "$((100 + $(wc -l < {calls})));cluster"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    wd = tmp_path / "sweep"
    r = _sweep_cli(f"--config={SWEEP}", f"--workdir={wd}", "--submit", env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert calls.read_text().splitlines() == [
        "--parsable --array=0-0 row.sbatch rows_0.txt",
        "--parsable --array=0-1 --dependency=afterany:101 row.sbatch rows_1.txt",
        "--parsable --dependency=afterany:101:102 summary.sbatch",
    ]
    # array task 0 of level 0, as SLURM would start it: trains the FP row
    task = subprocess.run(
        ["bash", str(wd / "slurm" / "row.sbatch"), str(wd / "slurm" / "rows_0.txt")],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env=dict(os.environ, SLURM_ARRAY_TASK_ID="0", PYTHONPATH=REPO, JAX_PLATFORMS="cpu"),
    )
    assert task.returncode == 0, task.stderr[-3000:]
    assert os.path.isfile(wd / "fp" / "seed0" / "final.json") and not os.path.exists(wd / "ttq")


def test_submit_without_sbatch_says_where_to_run(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match="sbatch is not on PATH"):
        sweep_slurm.submit(str(tmp_path / "submit.sh"))
