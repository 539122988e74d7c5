"""The language-model loop: per-token loss, whole-split validation and perplexity in metrics.jsonl,
checkpoints, and a resumed run equal to an uninterrupted one."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from extremeq.data.text import eval_windows, load_text
from extremeq.train.config import load_config_file
from extremeq.train.lm import load_trained_gpt, token_cross_entropy, train_lm

CONFIG = str(Path(__file__).resolve().parents[2] / "configs" / "shakespeare_char.py")
TEXT = "".join(f"{w} thee, {w} me; the {w} doth speak.\n" for w in ("Speak", "hear", "see", "know", "love") * 20)


def tiny(tmp_path, steps, variant="bitnet"):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT)
    c = load_config_file(f"{CONFIG}:{variant}")
    c.dataset.path = str(path)
    c.max_steps, c.eval_every, c.batch_size, c.eval_batch_size = steps, 3, 4, 8
    c.model.block_size, c.model.num_layers, c.model.num_heads, c.model.width = 8, 1, 2, 16
    c.optimizer.warmup_steps = 2
    return c


def test_metrics_and_resume_equal_an_uninterrupted_run(tmp_path):
    straight = train_lm(tiny(tmp_path, 6), str(tmp_path / "a"))
    train_lm(tiny(tmp_path, 3), str(tmp_path / "b"))  # "interrupted" after 3 steps
    resumed = train_lm(tiny(tmp_path, 6), str(tmp_path / "b"))
    rows_a = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    rows_b = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows_a] == [r["step"] for r in rows_b] == [3, 6]
    for ra, rb in zip(rows_a, rows_b):
        assert ra["val_loss"] == rb["val_loss"] and ra["train_loss"] == rb["train_loss"]
    assert straight["val_loss"] == resumed["val_loss"]
    assert math.isclose(straight["val_perplexity"], math.exp(straight["val_loss"]), rel_tol=1e-9)
    # val_loss is the mean per-token cross-entropy over every non-overlapping window of the split
    model, ds = load_trained_gpt(str(tmp_path / "a"))
    x, y = eval_windows(ds.val, 8)
    ref = float(np.mean(np.asarray(token_cross_entropy(model(x), y))))
    assert abs(ref - straight["val_loss"]) < 1e-5
    assert load_text(tmp_path / "corpus.txt").vocab_size == ds.vocab_size


def test_bad_config_is_refused(tmp_path):
    c = tiny(tmp_path, 2, "fp")
    c.dataset.name = "mnist"
    with pytest.raises(ValueError, match="dataset.name"):
        train_lm(c, str(tmp_path / "x"))
    with pytest.raises(ValueError, match="variant"):
        load_config_file(f"{CONFIG}:ternary")


def test_cli_trains_the_language_model_from_its_config(tmp_path):
    """``python -m extremeq.train --config configs/shakespeare_char.py:bitnet`` runs the LM loop (its config
    file is its schema: its keys are not the image schema's) with command-line overrides, and writes the
    same metrics as the API."""
    import os  # pylint: disable=g-import-not-at-top
    import subprocess  # pylint: disable=g-import-not-at-top
    import sys  # pylint: disable=g-import-not-at-top

    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    args = [
        f"--config={CONFIG}:bitnet",
        f"--workdir={tmp_path / 'cli'}",
        f"--config.dataset.path={corpus}",
        "--config.max_steps=3",
        "--config.eval_every=3",
        "--config.batch_size=4",
        "--config.eval_batch_size=8",
        "--config.model.block_size=8",
        "--config.model.num_layers=1",
        "--config.model.num_heads=2",
        "--config.model.width=16",
        "--config.optimizer.warmup_steps=2",
    ]
    r = subprocess.run(
        [sys.executable, "-m", "extremeq.train", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    cli = json.loads((tmp_path / "cli" / "metrics.jsonl").read_text().splitlines()[-1])
    api = train_lm(tiny(tmp_path, 3), str(tmp_path / "api"))  # this process: one CPU device
    # the CLI split the CPU into the config's cpu_devices (2) and the batch over them: the same run up
    # to the order of float sums
    assert json.loads((tmp_path / "cli" / "final.json").read_text())["num_devices"] == 2
    assert api["num_devices"] == 1
    assert cli["step"] == 3 and math.isclose(cli["val_loss"], api["val_loss"], rel_tol=1e-5)


def test_cpu_devices_must_be_set_before_jax_starts():
    import jax  # pylint: disable=g-import-not-at-top

    from extremeq.train.distributed import split_cpu  # pylint: disable=g-import-not-at-top

    jax.devices()  # this process has its devices
    with pytest.raises(RuntimeError, match="config.cpu_devices=3 must be set before JAX touches a device"):
        split_cpu(3)
    with pytest.raises(ValueError, match="config.cpu_devices must be >= 1"):
        split_cpu(0)
    split_cpu(1)  # JAX's default: nothing to change
