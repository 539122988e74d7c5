"""Data parallelism: a run sharded over 8 (fake CPU) devices computes what the 1-device run does."""

import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


def test_sharded_equals_single_device(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    r = subprocess.run(
        [sys.executable, os.path.join(HERE, "sharded_check.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    rows1, rows8 = out["rows1"], out["rows8"]
    assert len(rows1) == len(rows8) == 1
    for key in ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "flip_ratio"):
        assert rows8[0][key] == pytest.approx(rows1[0][key], rel=1e-5, abs=1e-6), key
    assert out["max_param_diff"] < 1e-4


def test_cli_splits_the_cpu_into_cpu_devices(tmp_path):
    """``--config.cpu_devices=2``: the CLI makes two XLA:CPU devices before JAX starts and the run is
    data-parallel over them (its result records the mesh size); the metrics equal the 1-device run's
    up to the order of float sums."""
    from train_testing import cli_argv  # pylint: disable=g-import-not-at-top

    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    finals = {}
    for n in (1, 2):
        workdir = tmp_path / f"cpu{n}"
        flags = ("--config.num_epochs=1", f"--config.cpu_devices={n}", "--config.progress_bar=False")
        r = subprocess.run(cli_argv(workdir, "bc", *flags), capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        finals[n] = json.loads((workdir / "final.json").read_text())
    assert finals[1]["num_devices"] == 1 and finals[2]["num_devices"] == 2
    for key in ("train_loss", "test_loss", "test_accuracy"):
        assert finals[2][key] == pytest.approx(finals[1][key], rel=1e-5, abs=1e-6), key
