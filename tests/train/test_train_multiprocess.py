"""Training over 2 processes on localhost (jax.distributed, gloo CPU collectives), 2 fake CPU devices
each, against one process with 4 devices: same global batch, same seed.

One launch of each kind serves all the checks (one test, so that pytest-xdist runs the launches
once, on one worker), in this order:

    ref   1 process x 4 devices: the full run (2 epochs of 4 steps), and a run stopped at step 4;
          the streamed (grain) run;
    mp    2 processes x 2 devices: the full run; the 1-process step-4 run resumed to the end;
          a run stopped at step 4; the streamed run; a run whose process 1 is SIGKILLed before step 6;
    one   1 process x 4 devices: the 2-process step-4 run and the killed run resumed to the end.

Tolerance. The parameters agree to within a few float32 ulps, not bitwise: the gradient all-reduce
of 4 devices in one process sums in XLA:CPU's order, across 2 processes gloo's reduction (over 4
ranks) adds the same 4 partial sums in another order, and float addition is not associative; the
difference after 8 steps is ~1e-7. Everything integer (step, dropout RNG counters and keys, the
example ids, the accuracies' counts) is compared exactly.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
WORKER = os.path.join(HERE, "multiprocess_worker.py")
CONFIG = {"dataset.limit_train": 512, "num_epochs": 2}  # 512 digits / batch 128 = 4 steps per epoch
STEPS = 8
RTOL, ATOL = 1e-5, 1e-6

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(num_processes, devices, runs, out):
    os.makedirs(out, exist_ok=True)
    port, procs = _free_port(), []
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, HERE]), JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    for i in range(num_processes):
        spec = os.path.join(out, f"spec{i}.json")
        with open(spec, "w") as f:
            json.dump(
                {
                    "process_id": i,
                    "num_processes": num_processes,
                    "port": port,
                    "devices": devices,
                    "out": str(out),
                    "runs": runs,
                },
                f,
            )
        log = open(os.path.join(out, f"log{i}.txt"), "w")  # noqa: SIM115 - closed with the process
        procs.append(
            (subprocess.Popen([sys.executable, WORKER, spec], env=env, stdout=log, stderr=subprocess.STDOUT), log)
        )
    return procs


def _log(out, i):
    with open(os.path.join(out, f"log{i}.txt")) as f:
        return f.read()[-3000:]


def _wait(procs, out, timeout=240, killed=None):
    """Waits for every process; with ``killed = i``, process i must die by SIGKILL and the others,
    stuck in a collective without it, are killed as a cluster scheduler would."""
    deadline = time.time() + timeout
    if killed is not None:
        p, _ = procs[killed]
        assert p.wait(timeout=timeout) == -signal.SIGKILL, _log(out, killed)
        deadline = time.time() + 5
    codes = []
    for i, (p, log) in enumerate(procs):
        try:
            codes.append(p.wait(timeout=max(deadline - time.time(), 0.1)))
        except subprocess.TimeoutExpired:
            assert killed is not None, f"process {i} timed out:\n{_log(out, i)}"
            p.kill()
            codes.append(p.wait())
        log.close()
    if killed is None:
        for i, code in enumerate(codes):
            assert code == 0, f"process {i} exited {code}:\n{_log(out, i)}"
    return codes


def _run(name, workdir, **config):
    return {"name": name, "workdir": str(workdir), "config": dict(CONFIG, **config)}


def _launch_all(root):
    wd = {k: root / k for k in ("ref", "ref_half", "ref_streamed", "mp", "mp_half", "mp_streamed", "kill")}
    out = {k: root / f"out_{k}" for k in ("ref", "mp", "one")}
    streamed = {"streamed": True, "config": {"num_epochs": 2}}
    _wait(
        _start(
            1,
            4,
            [
                _run("full", wd["ref"]),
                _run("half", wd["ref_half"], max_steps=4),
                dict(_run("streamed", wd["ref_streamed"]), **streamed),
            ],
            out["ref"],
        ),
        out["ref"],
    )
    kill = dict(_run("kill", wd["kill"]), kill_at_step=6, kill_process=1)
    _wait(
        _start(
            2,
            2,
            [
                _run("full", wd["mp"]),
                _run("from1", wd["ref_half"]),
                _run("half", wd["mp_half"], max_steps=4),
                dict(_run("streamed", wd["mp_streamed"]), **streamed),
                kill,
            ],
            out["mp"],
        ),
        out["mp"],
        killed=1,
    )
    _wait(_start(1, 4, [_run("from2", wd["mp_half"]), _run("after_kill", wd["kill"])], out["one"]), out["one"])
    return wd, out


def test_multiprocess_training(tmp_path):
    """One test (one set of launches, one pytest-xdist worker): each check below is a function."""
    runs = _launch_all(tmp_path)
    _check_two_processes_equal_one_process_four_devices(runs)
    _check_each_process_gathers_a_disjoint_half_of_every_batch(runs)
    _check_streamed_two_processes_equal_one(runs)
    _check_checkpoints_resume_across_process_counts(runs)
    _check_a_killed_process_loses_nothing(runs)


def _params(out, name, pid=0):
    with np.load(os.path.join(out, f"{name}_p{pid}.npz")) as f:
        return {k: f[k] for k in f.files}


def _json(path):
    with open(path) as f:
        return json.load(f)


def _rows(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [{k: v for k, v in json.loads(line).items() if k != "time_s"} for line in f if line.strip()]


def _assert_close(a, b):
    assert sorted(a) == sorted(b)
    for k in a:
        if np.issubdtype(a[k].dtype, np.floating):
            np.testing.assert_allclose(a[k], b[k], rtol=RTOL, atol=ATOL, err_msg=k)
        else:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def _assert_rows_close(rows, ref):
    assert [r["epoch"] for r in rows] == [r["epoch"] for r in ref]
    for r, q in zip(rows, ref):
        assert r.keys() == q.keys()
        for k in r:
            if isinstance(r[k], float):
                assert r[k] == pytest.approx(q[k], rel=RTOL, abs=ATOL), k
            else:
                assert r[k] == q[k], k


def _check_two_processes_equal_one_process_four_devices(runs):
    wd, out = runs
    ref, p0, p1 = _params(out["ref"], "full"), _params(out["mp"], "full", 0), _params(out["mp"], "full", 1)
    for k in p0:  # the replicated parameters: the same bytes in both processes
        assert p0[k].tobytes() == p1[k].tobytes(), k
    _assert_close(p0, ref)
    _assert_rows_close(_rows(wd["mp"]), _rows(wd["ref"]))
    for pid in (0, 1):
        result = _json(os.path.join(out["mp"], f"full_p{pid}.json"))
        assert result["finished"] and result["step"] == STEPS and result["num_devices"] == 4
        # evaluation is over the whole test split, once: the same accuracy as one process
        assert result["test_accuracy"] == _json(os.path.join(out["ref"], "full_p0.json"))["test_accuracy"]
    # process 0 alone writes the run's files
    assert len(_rows(wd["mp"])) == 2
    assert _json(os.path.join(wd["mp"], "final.json"))["step"] == STEPS


def _check_each_process_gathers_a_disjoint_half_of_every_batch(runs):
    _, out = runs
    ids = [_json(os.path.join(out["mp"], f"full_ids_p{pid}.json")) for pid in (0, 1)]
    ref = _json(os.path.join(out["ref"], "full_ids_p0.json"))
    assert sorted(ref, key=int) == [str(s) for s in range(STEPS)]
    for step in ref:
        a, b = ids[0][step], ids[1][step]
        assert len(a) == len(b) == 64 and not set(a) & set(b)
        assert sorted(a + b) == ref[step]  # together: the global batch of one process
    for epoch in range(2):  # each epoch: the 512 examples exactly once
        seen = sorted(i for pid in (0, 1) for s in range(4 * epoch, 4 * epoch + 4) for i in ids[pid][str(s)])
        assert seen == list(range(512))


def _check_streamed_two_processes_equal_one(runs):
    """grain path: each process assembles its half of every global batch (100 images, batch 16: 6
    steps an epoch, 4 dropped), evaluation over 36 images padded to 48 (3 rounds of 2 x 8; dealing
    only whole rounds of 8-image batches would drop 4 of them)."""
    wd, out = runs
    _assert_close(_params(out["mp"], "streamed", 0), _params(out["ref"], "streamed"))
    rows = _rows(wd["mp_streamed"])
    assert [r["step"] for r in rows] == [6, 12]
    _assert_rows_close(rows, _rows(wd["ref_streamed"]))


def _check_checkpoints_resume_across_process_counts(runs):
    wd, out = runs
    ref = _params(out["ref"], "full")
    # saved by 1 process (4 devices) at step 4, finished by 2 processes
    assert _json(os.path.join(out["ref"], "half_p0.json"))["step"] == 4
    assert sorted(_json(os.path.join(out["mp"], "from1_ids_p0.json")), key=int) == ["4", "5", "6", "7"]
    _assert_close(_params(out["mp"], "from1", 0), ref)
    assert _params(out["mp"], "from1", 0).keys() == _params(out["mp"], "from1", 1).keys()
    _assert_rows_close(_rows(wd["ref_half"]), _rows(wd["ref"]))
    # saved by 2 processes at step 4, finished by 1 process
    assert _json(os.path.join(out["mp"], "half_p1.json"))["step"] == 4
    assert sorted(_json(os.path.join(out["one"], "from2_ids_p0.json")), key=int) == ["4", "5", "6", "7"]
    _assert_close(_params(out["one"], "from2"), ref)
    _assert_rows_close(_rows(wd["mp_half"]), _rows(wd["ref"]))


def _check_a_killed_process_loses_nothing(runs):
    wd, out = runs
    # process 1 died before step 6; the last complete checkpoint is step 4 (epoch 1)
    assert not os.path.exists(os.path.join(out["mp"], "kill_p1.json"))
    steps = sorted(int(s) for s in os.listdir(os.path.join(wd["kill"], "checkpoints")) if s.isdigit())
    assert steps == [4, STEPS]
    resumed = sorted(_json(os.path.join(out["one"], "after_kill_ids_p0.json")), key=int)
    assert resumed == ["4", "5", "6", "7"]  # steps 4 and 5 redone, from the checkpoint
    _assert_close(_params(out["one"], "after_kill"), _params(out["ref"], "full"))
    _assert_rows_close(_rows(wd["kill"]), _rows(wd["ref"]))  # each epoch once, as uninterrupted
