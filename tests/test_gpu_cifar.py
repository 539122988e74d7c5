"""experiments/gpu_cifar.sh --dry-run: the GPU table's whole path on the CPU (tiny archive, 2 epochs):
the FP lane, TTQ fine-tuned from that FP run, the results table, and a rerun that skips finished runs."""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(out, env):
    return subprocess.run(
        ["bash", os.path.join(REPO, "experiments", "gpu_cifar.sh"), "--dry-run", str(out)],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=5400,
    )


@pytest.mark.slow
def test_gpu_cifar_dry_run_fp_then_ttq_and_resume(tmp_path):
    env = dict(os.environ, LANES="fp,ttq", PYTHON=sys.executable, BUDGET_S="5000")  # no cut on a slow CPU
    out = tmp_path / "out"
    r = _run(out, env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    table = (out / "results.md").read_text()
    rows = {
        line.split("|")[1].strip(): [c.strip() for c in line.split("|")[1:-1]]
        for line in table.splitlines()
        if line.startswith("| resnet20:")
    }
    # Lane "fp,ttq" ran both, 2 of 2 epochs each, finished; the other methods are absent, not faked.
    for m in ("resnet20:fp", "resnet20:ttq"):
        assert rows[m][2] == "2/2" and rows[m][-1] == "yes", table
    for m in ("resnet20:bwn", "resnet20:twn", "resnet20:xnor"):
        assert rows[m][2] == "0/-" and rows[m][3] == "-" and rows[m][-1].startswith("NO"), table
    # TTQ started from the FP run of the same sweep (the paper's protocol); its gap is against that FP.
    cfg = json.loads((out / "runs" / "resnet20_ttq" / "seed0" / "config.json").read_text())
    assert cfg["quant"]["init_from"] == str(out / "runs" / "resnet20_fp" / "seed0")
    fp_acc, ttq_acc, gap = float(rows["resnet20:fp"][3]), float(rows["resnet20:ttq"][3]), float(rows["resnet20:ttq"][5])
    assert abs((ttq_acc - fp_acc) - gap) < 0.011
    assert rows["resnet20:ttq"][8] == "-0.64"  # the TTQ paper's gap, 91.13 - 91.77
    assert (out / "state.tar.gz").stat().st_size > 0
    # A rerun continues where the first stopped: finished runs are skipped, not retrained.
    r2 = _run(out, env)
    assert r2.returncode == 0, r2.stdout[-3000:] + r2.stderr[-3000:]
    log = (out / "logs" / "lane_fp_ttq.log").read_text()
    assert "resnet20:fp seed 0: finished, skipped" in log and "resnet20:ttq seed 0: finished, skipped" in log
    assert (out / "results.md").read_text() == table
