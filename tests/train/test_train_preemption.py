"""SIGTERM: the CLI run saves a checkpoint and exits cleanly; resuming it equals the run that was
never interrupted, bit for bit."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
from train_testing import TINY_CONFIG, load_raw, read_rows, tiny_config

from extremeq.train import train_and_evaluate


def test_sigterm_saves_and_resume_is_exact(tmp_path):
    wd = tmp_path / "preempted"
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "extremeq.train",
            f"--config={TINY_CONFIG}:bc",
            f"--workdir={wd}",
            "--config.num_epochs=500",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    metrics = wd / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists() and metrics.read_text().count("\n") >= 1:
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    assert "SIGTERM" in err
    _, _, meta = load_raw(str(wd))
    stopped = meta["step"]
    assert 11 <= stopped < 500 * 11
    assert not (wd / "final.json").exists()

    # resume for 5 more steps; compare with an uninterrupted run to the same step
    target = stopped + 5
    r = train_and_evaluate(tiny_config("bc", num_epochs=500, max_steps=target), str(wd))
    assert r["step"] == target
    ref = tmp_path / "reference"
    train_and_evaluate(tiny_config("bc", num_epochs=500, max_steps=target), str(ref))
    m1, t1, _ = load_raw(str(wd))
    m2, t2, _ = load_raw(str(ref))
    for k in m1:
        np.testing.assert_array_equal(m1[k], m2[k])
    for k in t1:
        np.testing.assert_array_equal(t1[k], t2[k])
    assert read_rows(str(wd)) == read_rows(str(ref))
