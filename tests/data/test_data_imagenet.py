"""ImageNet transforms (closed forms) and the grain pipeline over a mocked tfds.data_source."""

import numpy as np
import pytest

from extremeq.data import imagenet as inet

tfds = pytest.importorskip("tensorflow_datasets")
pytest.importorskip("grain")


def test_random_resized_crop_box_respects_scale_ratio_and_bounds():
    rng = np.random.default_rng(0)
    for _ in range(300):
        h, w = int(rng.integers(50, 400)), int(rng.integers(50, 400))
        top, left, ch, cw = inet.random_resized_crop_box(rng, h, w)
        assert 0 <= top and top + ch <= h and 0 <= left and left + cw <= w and ch > 0 and cw > 0
        if (ch, cw) != (h, w) or (top, left) != (0, 0):
            # Rounding h and w moves area and ratio by at most a pixel each.
            assert 0.08 * h * w - (ch + cw + 1) <= ch * cw <= h * w
            assert 3 / 4 * (1 - 2 / ch) - 1e-9 <= cw / ch <= 4 / 3 * (1 + 2 / min(ch, cw)) + 1e-9


def test_random_resized_crop_box_fallback_is_central_and_in_ratio():
    # With no tries (attempts=0) a 2 x 300 strip, far wider than 4/3, falls back to the central crop of
    # full height 2 and width round(2 * 4/3) = 3.
    top, left, ch, cw = inet.random_resized_crop_box(np.random.default_rng(0), 2, 300, attempts=0)
    assert (top, ch, cw) == (0, 2, 3) and left == (300 - 3) // 2
    # A square image within the ratio range falls back to the whole image.
    assert inet.random_resized_crop_box(np.random.default_rng(0), 10, 10, attempts=0) == (0, 0, 10, 10)


def test_center_crop_box_closed_form():
    # 224 / 256 of the shorter side, centred.
    assert inet.center_crop_box(256, 320, 224) == (16, 48, 224, 224)
    assert inet.center_crop_box(500, 375, 224) == ((500 - 328) // 2, (375 - 328) // 2, 328, 328)


def test_crop_and_resize_linear_ramp_and_exact_crop():
    ramp = np.tile((np.arange(40) * 5).astype(np.uint8)[None, :, None], (6, 1, 3))
    # Bilinear resampling of a linear ramp is the ramp at the sample centres
    # x = (j + 0.5) * in / out - 0.5 (interior columns; edges are clamped).
    for out in (20, 80):
        got = inet.crop_and_resize(ramp, (0, 0, 6, 40), out)
        assert got.shape == (out, out, 3) and got.dtype == np.uint8
        j = np.arange(2, out - 2)
        want = 5 * ((j + 0.5) * 40 / out - 0.5)
        np.testing.assert_allclose(got[out // 2, j, 0], want, atol=1.0)
    img = np.random.default_rng(1).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    np.testing.assert_array_equal(inet.crop_and_resize(img, (3, 7, 16, 16), 16), img[3:19, 7:23])


def test_train_transform_replays_from_rng():
    img = np.random.default_rng(2).integers(0, 256, (30, 45, 3), dtype=np.uint8)
    flips = 0
    for seed in range(100):
        out = inet.train_transform({"image": img, "label": np.int64(7)}, np.random.default_rng(seed), image_size=12)
        rng = np.random.default_rng(seed)
        ref = inet.crop_and_resize(img, inet.random_resized_crop_box(rng, 30, 45), 12)
        if rng.random() < 0.5:
            ref = ref[:, ::-1]
            flips += 1
        np.testing.assert_array_equal(out["image"], ref)
        assert out["label"] == 7 and out["label"].dtype == np.int32
    assert 30 <= flips <= 70  # Bernoulli(1/2), 100 draws: 4 sigma


def _labels(source):
    return np.array([int(source[i]["label"]) for i in range(len(source))])


def test_grain_train_pipeline_on_mock_imagenet():
    with tfds.testing.mock_data(num_examples=16):
        src = inet.imagenet_source("train", data_dir="/nonexistent/tfds")
        assert len(src) == 16
        ds = inet.imagenet_dataset(src, train=True, batch_size=4, image_size=32, seed=3, num_epochs=2)
        batches = [ds[i] for i in range(len(ds))]
        again = inet.imagenet_dataset(src, train=True, batch_size=4, image_size=32, seed=3, num_epochs=2)[1]
        other = inet.imagenet_dataset(src, train=True, batch_size=4, image_size=32, seed=4)[1]
        labels = _labels(src)
    assert len(batches) == 8
    for b in batches:
        assert b["image"].shape == (4, 32, 32, 3) and b["image"].dtype == np.uint8
        assert b["label"].shape == (4,) and b["label"].dtype == np.int32 and b["mask"].all()
    # Each epoch visits every example once; epochs are reshuffled; the same seed replays.
    e0 = np.concatenate([b["label"] for b in batches[:4]])
    e1 = np.concatenate([b["label"] for b in batches[4:]])
    np.testing.assert_array_equal(np.sort(e0), np.sort(labels))
    np.testing.assert_array_equal(np.sort(e1), np.sort(labels))
    assert not np.array_equal(e0, e1)
    np.testing.assert_array_equal(again["image"], batches[1]["image"])
    assert not np.array_equal(other["image"], batches[1]["image"])


def test_grain_eval_pipeline_covers_each_example_once():
    with tfds.testing.mock_data(num_examples=10):
        src = inet.imagenet_source("validation")
        ds = inet.imagenet_dataset(src, train=False, batch_size=4, image_size=24)
        batches = [ds[i] for i in range(len(ds))]
        labels = _labels(src)
        ref = inet.eval_transform(src[9], image_size=24)["image"]
    assert len(batches) == 3
    mask = np.concatenate([b["mask"] for b in batches])
    assert mask.tolist() == [True] * 10 + [False] * 2
    np.testing.assert_array_equal(np.concatenate([b["label"] for b in batches])[mask], labels)
    assert all(b["image"].shape == (4, 24, 24, 3) for b in batches)
    np.testing.assert_array_equal(batches[2]["image"][1], ref)


def test_grain_worker_processes_match_in_process():
    with tfds.testing.mock_data(num_examples=8):
        src = inet.imagenet_source("train")
        ds = inet.imagenet_dataset(src, train=True, batch_size=4, image_size=16, seed=0)
        local = list(inet.imagenet_iterator(ds))
        it = inet.imagenet_iterator(ds, worker_count=1, start_step=1)
        remote = list(it)
    assert len(local) == 2 and len(remote) == 1
    np.testing.assert_array_equal(remote[0]["image"], local[1]["image"])
    np.testing.assert_array_equal(remote[0]["label"], local[1]["label"])


def test_imagenet_not_prepared_error(tmp_path):
    from extremeq.data import DatasetNotPreparedError

    with pytest.raises(DatasetNotPreparedError, match="imagenet2012"):
        inet.imagenet_source("train", data_dir=str(tmp_path))
