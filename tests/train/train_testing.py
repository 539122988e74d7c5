"""Helpers for the training tests: the tiny digits config, reading a run's checkpoint and metrics,
and a CLI run stopped by a signal then resumed."""

import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TINY_CONFIG = os.path.join(HERE, "tiny_config.py")


def tiny_config(method="bc", **overrides):
    """The tests' tiny digits config with dotted-key overrides (``optimizer__name="adam"``)."""
    from extremeq.train.config import load_config_file

    c = load_config_file(f"{TINY_CONFIG}:{method}")
    for key, value in overrides.items():
        node = c
        *parents, leaf = key.split("__")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return c


def load_raw(workdir, step=None):
    """(model leaves, train leaves, meta) of a checkpoint as saved: {name: np.ndarray} dicts."""
    import numpy as np
    import orbax.checkpoint as ocp

    mngr = ocp.CheckpointManager(os.path.join(workdir, "checkpoints"), item_names=("model", "train", "meta"))
    step = mngr.latest_step() if step is None else step
    r = mngr.restore(
        step,
        args=ocp.args.Composite(
            model=ocp.args.StandardRestore(), train=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore()
        ),
    )
    mngr.close()
    model = {k: np.asarray(v) for k, v in r["model"].items()}
    train = {k: np.asarray(v) for k, v in r["train"].items()}
    return model, train, r["meta"]


def leaves_by_path(flat, paths):
    return {p: flat[f"{i:06d}"] for i, p in enumerate(paths)}


def read_rows(workdir, drop=("time_s",)):
    import json

    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rows = [json.loads(l) for l in f if l.strip()]
    return [{k: v for k, v in r.items() if k not in drop} for r in rows]


def cli_argv(workdir, method, *flags):
    """The command line of ``python -m extremeq.train`` on the tiny config, ``flags`` appended
    (``"--config.num_epochs=5"``)."""
    return [sys.executable, "-m", "extremeq.train", f"--config={TINY_CONFIG}:{method}", f"--workdir={workdir}", *flags]


def start_cli_run(workdir, until, *, method="bc", num_epochs=500, timeout_s=120, poll_s=0.05):
    """``python -m extremeq.train`` on the tiny config in a subprocess (CPU), returned once ``until()``
    holds; asserts that the run is still going then (else shows the end of its stderr). The caller
    signals it and reads ``proc.communicate()`` (stderr is piped, stdout discarded)."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.Popen(
        cli_argv(workdir, method, f"--config.num_epochs={num_epochs}"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.time() + timeout_s
    while time.time() < deadline and proc.poll() is None and not until():
        time.sleep(poll_s)
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    return proc


def assert_resume_is_exact(workdir, reference_dir, *, extra_steps=5, method="bc", num_epochs=500):
    """Resumes the stopped run in ``workdir`` for ``extra_steps`` more steps and asserts that its
    checkpoint and metrics rows equal those of an uninterrupted run (in ``reference_dir``) to the
    same step, bit for bit."""
    import numpy as np

    from extremeq.train import train_and_evaluate

    _, _, meta = load_raw(str(workdir))
    target = meta["step"] + extra_steps
    r = train_and_evaluate(tiny_config(method, num_epochs=num_epochs, max_steps=target), str(workdir))
    assert r["step"] == target
    train_and_evaluate(tiny_config(method, num_epochs=num_epochs, max_steps=target), str(reference_dir))
    m1, t1, _ = load_raw(str(workdir))
    m2, t2, _ = load_raw(str(reference_dir))
    assert m1.keys() == m2.keys() and t1.keys() == t2.keys()
    for k in m2:
        np.testing.assert_array_equal(m1[k], m2[k])
    for k in t2:
        np.testing.assert_array_equal(t1[k], t2[k])
    assert read_rows(str(workdir)) == read_rows(str(reference_dir))
