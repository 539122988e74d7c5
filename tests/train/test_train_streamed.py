"""The streamed (grain, ImageNet-style) path on a fake random-access source: exact resume."""

import numpy as np
import pytest
from train_testing import load_raw, read_rows, tiny_config

from extremeq import data as data_lib
from extremeq.train import train_and_evaluate


class FakeImageNet:
    """n examples of varying-size uint8 RGB images, labels in [0, 10)."""

    def __init__(self, n, seed):
        rng = np.random.default_rng(seed)
        self.items = [
            {"image": rng.integers(0, 256, (20 + i % 7, 24 + i % 5, 3), dtype=np.uint8), "label": np.int64(i % 10)}
            for i in range(n)
        ]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


@pytest.fixture
def fake_imagenet(monkeypatch):
    sources = {"train": FakeImageNet(96, 0), "validation": FakeImageNet(40, 1)}
    monkeypatch.setattr(data_lib, "imagenet_source", lambda split, data_dir=None: sources[split])


def _config(**kw):
    c = tiny_config("bwn", batch_size=16, eval_batch_size=16, num_epochs=2, **kw)
    c.dataset.name = "imagenet2012"
    c.dataset.image_size = 16
    c.dataset.augment.crop_padding = 0
    c.model.hidden = [16, 16, 16]
    return c


def test_streamed_resume_is_exact(fake_imagenet, tmp_path):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    ra = train_and_evaluate(_config(), a)
    assert ra["finished"] and ra["step"] == 12  # 96 // 16 = 6 steps per epoch
    rows = read_rows(a)
    assert len(rows) == 2 and 0.0 <= rows[-1]["test_accuracy"] <= 1.0
    assert train_and_evaluate(_config(max_steps=4), b)["step"] == 4
    assert train_and_evaluate(_config(), b)["step"] == 12
    (m1, t1, _), (m2, t2, _) = load_raw(a), load_raw(b)
    for k in m1:
        np.testing.assert_array_equal(m1[k], m2[k])
    for k in t1:
        np.testing.assert_array_equal(t1[k], t2[k])
    assert read_rows(b) == rows
