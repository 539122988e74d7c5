"""SIGTERM: the CLI run saves a checkpoint and exits cleanly; resuming it equals the run that was
never interrupted, bit for bit."""

import signal

from train_testing import assert_resume_is_exact, load_raw, start_cli_run


def test_sigterm_saves_and_resume_is_exact(tmp_path):
    wd = tmp_path / "preempted"
    metrics = wd / "metrics.jsonl"
    proc = start_cli_run(wd, lambda: metrics.exists() and metrics.read_text().count("\n") >= 1, poll_s=0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    assert "SIGTERM" in err
    _, _, meta = load_raw(str(wd))
    stopped = meta["step"]
    assert 11 <= stopped < 500 * 11
    assert not (wd / "final.json").exists()

    # resume for 5 more steps; compare with an uninterrupted run to the same step
    assert_resume_is_exact(wd, tmp_path / "reference", extra_steps=5)
