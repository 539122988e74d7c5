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
