"""Inputs: a clear error before the first step, never a silently wrong model (issue 10, points 7, 8).

Each bad input is tried through ``train_and_evaluate`` (the error must come before any training:
no metrics, no checkpoint) and, where the data layer is the one to say it, through ``load_arrays``.
"""

import os

import numpy as np
import pytest
from train_testing import tiny_config

from extremeq import data
from extremeq.train import train_and_evaluate
from extremeq.train.config import ConfigError


def _write(path, n_train=40, n_test=20, **replace):
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, 8, 8), dtype=np.uint8),
        "y_train": np.arange(n_train) % 10,
        "x_test": rng.integers(0, 256, (n_test, 8, 8), dtype=np.uint8),
        "y_test": np.arange(n_test) % 10,
    }
    arrays.update(replace)
    np.savez(path, **arrays)
    return str(path)


def _config(path, name="npz", **overrides):
    c = tiny_config("fp", **{"batch_size": 8, "eval_batch_size": 8, **overrides})
    c.dataset.name = name
    c.dataset.source = "npz"
    c.dataset.path = path
    c.dataset.augment.crop_padding = 0
    c.dataset.augment.flip = False
    return c


def _assert_nothing_trained(workdir):
    assert not os.path.exists(os.path.join(workdir, "metrics.jsonl"))
    ckpts = os.path.join(workdir, "checkpoints")  # the folder is made (and its writability checked) up front
    assert not os.path.exists(ckpts) or not os.listdir(ckpts)


@pytest.mark.parametrize("name", ["mnist", "npz"])
def test_label_outside_the_classes_is_refused_naming_file_split_index_value(tmp_path, name):
    y = np.arange(40) % 10
    y[17] = 200
    path = _write(tmp_path / "mnist_like.npz", y_train=y)
    with pytest.raises(data.DataError, match=r"mnist_like\.npz: train label 200 at index 17"):
        data.load_arrays(name, source="npz", path=path)
    with pytest.raises(ValueError, match="label 200 at index 17"):
        train_and_evaluate(_config(path, name), str(tmp_path / "run"))
    _assert_nothing_trained(str(tmp_path / "run"))


def test_test_label_and_negative_label_are_refused(tmp_path):
    y = np.arange(20) % 10
    y[3] = 10
    path = _write(tmp_path / "a.npz", y_test=y)
    with pytest.raises(ValueError, match=r"test label 10 at index 3 is outside \[0, 10\)"):
        data.load_arrays("mnist", source="npz", path=path)
    y = np.arange(40) % 10
    y[5] = -1
    path = _write(tmp_path / "b.npz", y_train=y)
    with pytest.raises(ValueError, match=r"train label -1 at index 5"):
        data.load_arrays("npz", source="npz", path=path)


def test_declared_classes_are_used_not_inferred(tmp_path):
    # classes declared by the file (12) and by the config (num_classes=12): labels 0..9 are fine,
    # and the model gets 12 outputs, not max(label) + 1 = 10
    path = _write(tmp_path / "c.npz", num_classes=np.int64(12))
    assert data.load_arrays("npz", path=path).num_classes == 12
    path = _write(tmp_path / "d.npz")
    assert data.load_arrays("npz", path=path, num_classes=12).num_classes == 12
    with pytest.raises(ValueError, match=r"train label 5 at index 5 is outside \[0, 5\)"):
        data.load_arrays("npz", path=path, num_classes=5)


def test_empty_test_split_is_refused_before_training(tmp_path):
    path = _write(tmp_path / "e.npz", x_test=np.zeros((0, 8, 8), np.uint8), y_test=np.zeros(0, int))
    with pytest.raises(ValueError, match="the test split is empty"):
        train_and_evaluate(_config(path), str(tmp_path / "run"))
    _assert_nothing_trained(str(tmp_path / "run"))


def test_empty_train_split_is_refused_before_training(tmp_path):
    path = _write(tmp_path / "e.npz", x_train=np.zeros((0, 8, 8), np.uint8), y_train=np.zeros(0, int))
    with pytest.raises(ValueError, match="the train split is empty"):
        train_and_evaluate(_config(path), str(tmp_path / "run"))
    _assert_nothing_trained(str(tmp_path / "run"))
    path = _write(tmp_path / "f.npz")
    with pytest.raises(ValueError, match="limit_train = 0 keeps none"):
        data.load_arrays("npz", path=path, limit=0)


def test_text_file_passed_as_npz_is_refused(tmp_path):
    text = tmp_path / "notes.npz"
    text.write_text("x_train,y_train\n1,2\n")
    with pytest.raises(ValueError, match=r"notes\.npz is not an npz file.*np\.savez"):
        data.load_arrays("npz", path=str(text))
    with pytest.raises(ValueError, match="is not an npz file"):
        train_and_evaluate(_config(str(text)), str(tmp_path / "run"))
    _assert_nothing_trained(str(tmp_path / "run"))
    single = tmp_path / "single.npz"
    with open(single, "wb") as f:
        np.save(f, np.zeros(3))
    with pytest.raises(ValueError, match="single array, not an npz archive"):
        data.load_arrays("npz", path=str(single))


def test_batch_larger_than_the_data_is_refused_before_training(tmp_path):
    path = _write(tmp_path / "g.npz")
    with pytest.raises(ConfigError, match="config.batch_size: 64 exceeds the 40 training examples"):
        train_and_evaluate(_config(path, batch_size=64), str(tmp_path / "run"))
    _assert_nothing_trained(str(tmp_path / "run"))
