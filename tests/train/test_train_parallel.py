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
