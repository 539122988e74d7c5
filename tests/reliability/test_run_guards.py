"""Run-level guarantees of the training command (issue 10, points 3-6 and 9): a finished run rerun
rewrites nothing, a resumed run with another config or without its checkpoints is refused unless the
user says so (and then recorded), an unwritable checkpoint directory stops before the first step, and
every user error reaches the command line as one or two lines and a non-zero exit status.

Digits, an MLP with one hidden layer of 16 units, one epoch (11 steps): seconds per run.
"""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
from train_testing import TINY_CONFIG, tiny_config

from extremeq.train import train_and_evaluate

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMALL = ["--config.num_epochs=1", "--config.model.hidden=(16,)", "--config.model.dropout=0.0"]
_LOG_LINE = re.compile(r"^[IWEF]\d{4} ")  # absl's log lines


def _cli(*args, timeout=300):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.run(
        [sys.executable, "-m", "extremeq.train", *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def _small(**overrides):
    c = tiny_config("fp", num_epochs=1, **overrides)
    c.model.hidden = (16,)
    c.model.dropout = 0.0
    return c


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """(workdir, command-line arguments) of a finished one-epoch run made with the CLI."""
    wd = str(tmp_path_factory.mktemp("finished") / "run")
    args = [f"--config={TINY_CONFIG}:fp", f"--workdir={wd}", *SMALL]
    r = _cli(*args)
    assert r.returncode == 0, r.stderr[-3000:]
    return wd, args


def _files(wd):
    out = {}
    for name in ("final.json", "metrics.jsonl", "config.json"):
        with open(os.path.join(wd, name)) as f:
            out[name] = f.read()
    return out


def test_rerunning_a_finished_run_rewrites_nothing_and_says_where_its_results_are(finished_run):
    """Point 3: the same command again exits 0, leaves final.json (with its test accuracy) and
    metrics.jsonl byte for byte as they were, and names final.json."""
    wd, args = finished_run
    before = _files(wd)
    assert "test_accuracy" in json.loads(before["final.json"])
    r = _cli(*args)
    assert r.returncode == 0, r.stderr[-3000:]
    assert _files(wd) == before
    assert os.path.join(wd, "final.json") in r.stdout + r.stderr


def test_resuming_with_a_changed_config_is_refused_unless_asked_and_then_recorded(tmp_path):
    """Point 4: a run stopped at step 3 resumed with another learning rate and seed stops, naming both
    keys; with resume_with_changes it continues and config_changes.jsonl records the change and step 3."""
    wd = str(tmp_path / "run")
    assert train_and_evaluate(_small(max_steps=3), wd)["step"] == 3
    changed = _small(seed=1)
    changed.optimizer.learning_rate = 0.05
    with pytest.raises(ValueError, match=r"changed: optimizer\.learning_rate \(0\.3 -> 0\.05\), seed \(0 -> 1\)"):
        train_and_evaluate(changed, wd)
    with open(os.path.join(wd, "config.json")) as f:
        assert json.load(f)["optimizer"]["learning_rate"] == 0.3  # the run's record is untouched
    changed.resume_with_changes = True
    result = train_and_evaluate(changed, wd)
    assert result["finished"] and result["step"] == 11
    with open(os.path.join(wd, "config_changes.jsonl")) as f:
        entries = [json.loads(line) for line in f]
    assert [e["from_step"] for e in entries] == [3]
    assert entries[0]["changes"] == {"optimizer.learning_rate": {"old": 0.3, "new": 0.05}, "seed": {"old": 0, "new": 1}}
    with open(os.path.join(wd, "config.json")) as f:
        assert json.load(f)["optimizer"]["learning_rate"] == 0.05


def test_finished_run_without_its_checkpoints_is_not_silently_retrained(finished_run, tmp_path):
    """Point 5: checkpoints/ of a finished run deleted: refused, metrics untouched; with
    resume_with_changes it retrains from step 0, keeping the old metrics and final.json renamed."""
    src, _ = finished_run
    wd = str(tmp_path / "copy")
    shutil.copytree(src, wd)
    shutil.rmtree(os.path.join(wd, "checkpoints"))
    before = _files(wd)
    with pytest.raises(ValueError, match=r"no checkpoint .*resume_with_changes=True"):
        train_and_evaluate(_small(), wd)
    assert _files(wd) == before
    c = _small()
    c.resume_with_changes = True
    assert train_and_evaluate(c, wd)["finished"]
    kept = sorted(n for n in os.listdir(wd) if ".superseded-" in n)
    assert [n.split(".superseded-")[0] for n in kept] == ["final.json", "metrics.jsonl"]
    with open(os.path.join(wd, kept[1])) as f:
        assert f.read() == before["metrics.jsonl"]
    with open(os.path.join(wd, "config_changes.jsonl")) as f:
        assert json.loads(f.readline())["from_step"] == 0


def test_unwritable_checkpoint_directory_stops_before_the_first_step(tmp_path):
    """Point 6: checkpoints/ that cannot be written (a link into /proc, unwritable even for root)
    stops the run before it trains: no metrics.jsonl, a message naming the directory."""
    wd = tmp_path / "run"
    wd.mkdir()
    os.symlink("/proc/sys", wd / "checkpoints")
    with pytest.raises(ValueError, match=r"checkpoint directory .*checkpoints' is not writable"):
        train_and_evaluate(_small(), str(wd))
    assert not (wd / "metrics.jsonl").exists()


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "not_an.npz"
    path.write_text("x_train,y_train\n1,2\n")
    return str(path)


@pytest.mark.parametrize(
    "case, args, expected",
    [
        ("npz that is a text file", ["--config.dataset.name=npz", "--config.dataset.path={text}"], "config.dataset"),
        ("batch larger than the data", ["--config.batch_size=4096"], "config.batch_size: 4096 exceeds"),
        ("unknown variant token", ["--config={repo}/configs/digits_mlp.py:twm"], "variant token 'twm' unknown"),
        ("misspelled model option", ["--config.model.hiden=(8,)"], "hiden"),
        ("missing config file", ["--config={repo}/configs/no_such_file.py"], "no_such_file.py' not found"),
        ("workdir that is a file", ["--workdir={text}"], "is a file"),
        (
            "progress_bar=maybe",
            ["--config={repo}/configs/digits_mlp.py", "--config.progress_bar=maybe"],
            "progress_bar",
        ),
    ],
)
def test_user_errors_are_one_or_two_lines_and_a_nonzero_status(case, args, expected, text_file, tmp_path):
    """Point 9: what is wrong and how to fix it, without a traceback; nothing trained."""
    wd = str(tmp_path / "run")
    args = [a.format(text=text_file, repo=REPO) for a in args]
    config = next((a for a in args if a.startswith("--config=")), f"--config={TINY_CONFIG}:fp")
    workdir = next((a for a in args if a.startswith("--workdir=")), f"--workdir={wd}")
    overrides = [a for a in args if a not in (config, workdir)]
    r = _cli(config, workdir, *SMALL, "--config.max_steps=1", *overrides)
    lines = [line for line in r.stderr.splitlines() if line.strip() and not _LOG_LINE.match(line)]
    assert r.returncode != 0, (case, r.stderr[-2000:])
    assert "Traceback" not in r.stderr, (case, r.stderr[-2000:])
    assert 1 <= len(lines) <= 2, (case, lines)
    assert expected in lines[0], (case, lines)
    assert not os.path.exists(os.path.join(wd, "metrics.jsonl"))


def test_every_checkpoint_damaged_is_a_one_line_error_naming_the_folder(finished_run, tmp_path):
    """Issue 10, checkpoints point 1 through the CLI: with no intact step left the run stops with exit
    status 2 and one line (the folder and the two ways on), not an orbax traceback."""
    import shutil  # pylint: disable=g-import-not-at-top

    src, args = finished_run
    wd = str(tmp_path / "run")
    shutil.copytree(src, wd)
    os.remove(os.path.join(wd, "final.json"))
    ckpts = os.path.join(wd, "checkpoints")
    steps = [d for d in os.listdir(ckpts) if d.isdigit()]
    assert steps
    for d in steps:  # every step emptied: none is intact
        shutil.rmtree(os.path.join(ckpts, d))
        os.makedirs(os.path.join(ckpts, d))
    r = _cli(*[a if not a.startswith("--workdir=") else f"--workdir={wd}" for a in args])
    lines = [line for line in r.stderr.splitlines() if line.strip() and not _LOG_LINE.match(line)]
    assert r.returncode == 2, r.stderr[-2000:]
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    assert len(lines) == 1 and ckpts in lines[0], lines
