"""The character source: vocabulary, nanoGPT's 90/10 split, training windows and validation windows."""

import hashlib

import jax
import numpy as np
import pytest

from extremeq.data.text import (
    default_shakespeare_path,
    eval_windows,
    load_text,
    sample_windows,
)

TEXT = "to be, or not to be: that is the question.\n" * 5


def test_vocab_split_and_round_trip(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text(TEXT)
    ds = load_text(path)
    assert ds.vocab == "".join(sorted(set(TEXT)))
    n = int(len(TEXT) * 0.9)
    assert len(ds.train) == n and len(ds.val) == len(TEXT) - n
    assert ds.decode(ds.train) + ds.decode(ds.val) == TEXT
    np.testing.assert_array_equal(ds.encode(TEXT[:n]), ds.train)
    assert ds.sha256 == hashlib.sha256(TEXT.encode()).hexdigest()
    with pytest.raises(ValueError, match="not in"):
        ds.encode("Z")


def test_windows(tmp_path):
    tokens = np.arange(100, dtype=np.int32)
    x, y = eval_windows(tokens, 8)
    assert x.shape == (12, 8)  # (100 - 1) // 8 non-overlapping windows
    np.testing.assert_array_equal(x.reshape(-1), tokens[:96])
    np.testing.assert_array_equal(y, x + 1)
    xs, ys = sample_windows(jax.random.key(0), tokens, 32, 8)
    xs, ys = np.asarray(xs), np.asarray(ys)
    np.testing.assert_array_equal(ys, xs + 1)
    np.testing.assert_array_equal(np.diff(xs, axis=1), 1)  # contiguous windows
    assert xs.min() >= 0 and ys.max() <= 99
    with pytest.raises(ValueError, match="no window"):
        eval_windows(tokens[:5], 8)


def test_env_override_and_missing_file(tmp_path, monkeypatch):
    monkeypatch.setenv("EXTREMEQ_SHAKESPEARE", str(tmp_path / "nope.txt"))
    assert default_shakespeare_path() == tmp_path / "nope.txt"
    with pytest.raises(FileNotFoundError, match="EXTREMEQ_SHAKESPEARE"):
        load_text()


def test_tiny_shakespeare_as_documented():
    """The corpus: 1,115,394 characters, 65 symbols; first 90% train (nanoGPT's split)."""
    path = default_shakespeare_path()
    if not path.is_file():
        pytest.skip(f"{path} not present (set $EXTREMEQ_SHAKESPEARE)")
    ds = load_text(path)
    assert ds.vocab_size == 65 and len(ds.train) + len(ds.val) == 1_115_394
    assert len(ds.train) == 1_003_854
    assert ds.decode(ds.train[:14]) == "First Citizen:"
    assert eval_windows(ds.val, 64)[0].shape == (1742, 64)
