"""The image-folder source: both layouts (folder, tar.gz), labels, bad archives, the cache, the
CIFAR-10 default, config resolution, and a 2-step training smoke on the real JPEG archive."""

import io
import json
import os
import tarfile

import numpy as np
import pytest
from PIL import Image

from extremeq.data import image_folder as imf
from extremeq.data import sources

H, W = 4, 5


def _image(uid: int, channels: int = 3) -> np.ndarray:
    """A unique lossless image: every pixel of channel c is (uid * 7 + c * 50) % 256."""
    x = np.zeros((H, W, channels), np.uint8)
    for c in range(channels):
        x[..., c] = (uid * 7 + c * 50) % 256
    x[0, 0, 0] = uid  # uid stays readable from pixel (0, 0, 0)
    return x


def _png(x: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(x[..., 0] if x.shape[-1] == 1 else x).save(buf, format="PNG")
    return buf.getvalue()


def _files(classes=("cat", "dog", "emu"), per_split=None, channels=3):
    """{relative path: bytes} and {uid: (split, class, image)} for a tiny <split>/<class>/<file> set."""
    per_split = per_split or {"train": 3, "test": 2}
    files, truth, uid = {}, {}, 1
    for split, n in per_split.items():
        for cls in classes:
            for i in range(n):
                x = _image(uid, channels)
                files[f"{split}/{cls}/{i:03d}.png"] = _png(x)
                truth[uid] = (split, cls, x)
                uid += 1
    return files, truth


def _write_folder(root, files, extra_dirs=()):
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    for d in extra_dirs:
        (root / d).mkdir(parents=True, exist_ok=True)
    return root


def _write_tar(path, files, prefix="", extra_dirs=()):
    with tarfile.open(path, "w:gz") as tar:
        for d in extra_dirs:
            info = tarfile.TarInfo(prefix + d)
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
        for rel, data in files.items():
            info = tarfile.TarInfo(prefix + rel)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("EXTREMEQ_CACHE", str(tmp_path / "cache"))


def _check_against_truth(arrays, classes, truth):
    for split in ("train", "test"):
        x, y = arrays[split]
        assert x.dtype == np.uint8 and y.dtype == np.int32
        uids = [int(v) for v in x[:, 0, 0, 0]]
        assert sorted(uids) == sorted(u for u, t in truth.items() if t[0] == split)
        for xi, yi, uid in zip(x, y, uids):
            _, cls, expected = truth[uid]
            np.testing.assert_array_equal(xi, expected)
            assert classes[yi] == cls


@pytest.mark.parametrize("layout", ["folder", "tar.gz", "tar.gz under a top folder", "plain tar"])
def test_both_layouts_decode_exact_pixels_and_labels(tmp_path, layout):
    files, truth = _files()
    if layout == "folder":
        path = _write_folder(tmp_path / "set", files)
    elif layout == "plain tar":
        path = tmp_path / "set.tar"
        with tarfile.open(path, "w") as tar:
            for rel, data in files.items():
                info = tarfile.TarInfo(rel)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    else:
        prefix = "mydata/" if "top" in layout else ""
        path = _write_tar(tmp_path / "set.tar.gz", files, prefix=prefix)
    arrays, classes = imf.read_image_folder(path, cache=False)
    assert classes == ("cat", "dog", "emu")  # sorted folder names
    assert arrays["train"][0].shape == (9, H, W, 3) and arrays["test"][0].shape == (6, H, W, 3)
    _check_against_truth(arrays, classes, truth)
    # The documented order: labels (class by class, files by path) under default_rng(0)'s permutation.
    expected_train = np.repeat(np.arange(3), 3)[np.random.default_rng(imf.SHUFFLE_SEED).permutation(9)]
    np.testing.assert_array_equal(arrays["train"][1], expected_train)


def test_given_class_list_sets_the_labels(tmp_path):
    files, truth = _files()
    path = _write_tar(tmp_path / "set.tar.gz", files)
    arrays, classes = imf.read_image_folder(path, classes=("emu", "cat", "dog"), cache=False)
    assert classes == ("emu", "cat", "dog")
    _check_against_truth(arrays, classes, truth)
    with pytest.raises(imf.ImageFolderError, match=r"train/emu.*not in the class list"):
        imf.read_image_folder(path, classes=("cat", "dog"), cache=False)


def test_grayscale_stays_one_channel_and_mixed_becomes_rgb(tmp_path):
    files, _ = _files(channels=1)
    arrays, _ = imf.read_image_folder(_write_tar(tmp_path / "g.tar.gz", files), cache=False)
    assert arrays["train"][0].shape[-1] == 1
    files["train/cat/009.png"] = _png(_image(200, 3))
    arrays, _ = imf.read_image_folder(_write_tar(tmp_path / "m.tar.gz", files), cache=False)
    x = arrays["train"][0]
    assert x.shape[-1] == 3
    gray = x[x[:, 0, 0, 0] == 1][0]  # uid 1 was a one-channel image: replicated to R = G = B
    np.testing.assert_array_equal(gray[..., 0], gray[..., 2])


@pytest.mark.parametrize("layout", ["folder", "tar.gz"])
def test_bad_archives_name_the_file(tmp_path, layout):
    def build(files, name, extra_dirs=()):
        if layout == "folder":
            return _write_folder(tmp_path / name, files, extra_dirs)
        return _write_tar(tmp_path / f"{name}.tar.gz", files, extra_dirs=extra_dirs)

    files, _ = _files()
    no_test = {k: v for k, v in files.items() if k.startswith("train/")}
    with pytest.raises(imf.ImageFolderError, match="split 'test' is missing"):
        imf.read_image_folder(build(no_test, "a"), cache=False)
    no_emu_test = {k: v for k, v in files.items() if not k.startswith("test/emu/")}
    with pytest.raises(imf.ImageFolderError, match=r"split 'test' lacks the class folder\(s\) \['test/emu'\]"):
        imf.read_image_folder(build(no_emu_test, "b"), cache=False)
    with pytest.raises(imf.ImageFolderError, match=r"class folder test/emu holds no \.jpg/\.png image"):
        imf.read_image_folder(build(no_emu_test, "c", extra_dirs=("test/emu",)), cache=False)
    corrupt = dict(files)
    corrupt["train/dog/001.png"] = b"\x89PNG\r\n\x1a\n this is not an image"
    with pytest.raises(imf.ImageFolderError, match=r"train/dog/001\.png: cannot decode"):
        imf.read_image_folder(build(corrupt, "d"), cache=False)
    sizes = dict(files)
    sizes["test/cat/001.png"] = _png(np.zeros((H + 1, W, 3), np.uint8))
    with pytest.raises(imf.ImageFolderError, match=r"test/cat/001\.png is 5x5 pixels"):
        imf.read_image_folder(build(sizes, "e"), cache=False)


def test_not_an_archive_and_missing_path(tmp_path):
    bad = tmp_path / "x.tar.gz"
    bad.write_bytes(b"not a tar")
    with pytest.raises(imf.ImageFolderError, match="x.tar.gz: not a readable"):
        imf.read_image_folder(bad, cache=False)
    with pytest.raises(FileNotFoundError, match="nowhere.tar.gz"):
        imf.read_image_folder(tmp_path / "nowhere.tar.gz")


def _cache_files():
    return sorted(imf.cache_dir().glob("image_folder-*.npz"))


def test_cache_reuse_and_invalidation(tmp_path, monkeypatch):
    files, _truth = _files()
    path = _write_tar(tmp_path / "set.tar.gz", files)
    first, classes = imf.read_image_folder(path)
    assert len(_cache_files()) == 1
    # Reuse: a second read does not decode.
    real_decode = imf.decode_image_folder
    monkeypatch.setattr(imf, "decode_image_folder", lambda *a, **k: pytest.fail("decoded again"))
    again, classes2 = imf.read_image_folder(path)
    assert classes2 == classes
    for s in ("train", "test"):
        np.testing.assert_array_equal(again[s][0], first[s][0])
        np.testing.assert_array_equal(again[s][1], first[s][1])
    # Invalidation: new archive content -> new key -> decoded, and the new image is there.
    monkeypatch.setattr(imf, "decode_image_folder", real_decode)
    files["train/cat/777.png"] = _png(_image(250))
    _write_tar(path, files)
    changed, _ = imf.read_image_folder(path)
    assert 250 in changed["train"][0][:, 0, 0, 0] and len(_cache_files()) == 2
    # Another class list is another key too.
    imf.read_image_folder(path, classes=("dog", "cat", "emu"))
    assert len(_cache_files()) == 3
    # A damaged cache file is rebuilt, not trusted.
    key_file = imf.cache_dir() / f"image_folder-{imf.cache_key(path)}.npz"
    key_file.write_bytes(b"garbage")
    rebuilt, _ = imf.read_image_folder(path)
    np.testing.assert_array_equal(rebuilt["train"][0], changed["train"][0])


def test_folder_cache_key_follows_the_listing(tmp_path):
    files, _ = _files()
    root = _write_folder(tmp_path / "set", files)
    k1 = imf.cache_key(root)
    assert imf.cache_key(root) == k1
    (root / "train/cat/000.png").write_bytes(_png(_image(99)))  # new size and mtime
    os.utime(root / "train/cat/000.png", ns=(1, 1))
    k2 = imf.cache_key(root)
    assert k2 != k1
    (root / "test/dog/new.png").write_bytes(_png(_image(98)))
    assert imf.cache_key(root) != k2


def _cifar_like(tmp_path):
    files, truth = _files(classes=imf.CIFAR10_CLASSES, per_split={"train": 2, "test": 1})
    return _write_tar(tmp_path / "cifar.tar.gz", files), truth


def test_load_arrays_image_folder_and_cifar10_default(tmp_path, monkeypatch):
    files, truth = _files()
    path = _write_tar(tmp_path / "set.tar.gz", files)
    ds = sources.load_arrays("image_folder", path=str(path))
    assert (ds.name, ds.num_classes, ds.num_train, ds.num_test) == ("image_folder", 3, 9, 6)
    mean, std = sources.channel_stats(ds.x_train)
    assert ds.mean == mean and ds.std == std
    with pytest.raises(ValueError, match="needs config.dataset.path"):
        sources.load_arrays("image_folder", source="image_folder")
    # cifar10 with no path: $EXTREMEQ_CIFAR10, labels in CIFAR-10's order.
    cifar, truth = _cifar_like(tmp_path)
    monkeypatch.setenv("EXTREMEQ_CIFAR10", str(cifar))
    assert sources._default_source("cifar10", None) == "image_folder"
    ds = sources.load_arrays("cifar10")
    assert ds.name == "cifar10" and ds.num_classes == 10 and ds.num_train == 20
    assert np.bincount(ds.y_train).tolist() == [2] * 10
    uid_of_truck = next(u for u, t in truth.items() if t[:2] == ("train", "truck"))
    assert ds.y_train[list(ds.x_train[:, 0, 0, 0]).index(uid_of_truck)] == 9
    monkeypatch.setenv("EXTREMEQ_CIFAR10", str(tmp_path / "absent.tar.gz"))
    assert sources._default_source("cifar10", None) == "tfds"
    with pytest.raises(FileNotFoundError, match=r"absent\.tar\.gz.*EXTREMEQ_CIFAR10"):
        imf.load_cifar10()


def test_cifar_configs_resolve_to_the_archive_without_a_gpu(tmp_path, monkeypatch):
    from extremeq.train.config import ConfigError, load_config_file, validate_config

    cifar, _ = _cifar_like(tmp_path)
    monkeypatch.setenv("EXTREMEQ_CIFAR10", str(cifar))
    for arg, model, method in (
        ("cifar10_resnet.py:resnet20:ttq", "resnet20", "ttq"),
        ("cifar10_vgg7.py:twn", "vgg7", "twn"),
        ("cifar10_quick.py:xnor", "vgg7", "xnor"),
    ):
        c = validate_config(load_config_file(f"configs/{arg}"), num_devices=1)
        assert (c.dataset.name, c.model.name, c.quant.method) == ("cifar10", model, method)
        assert (c.dataset.augment.crop_padding, c.dataset.augment.flip) == (4, True)
        assert sources._default_source(c.dataset.name, c.dataset.path or None) == "image_folder"
    c = load_config_file("configs/base.py")
    c.dataset.name, c.dataset.source = "image_folder", ""
    with pytest.raises(ConfigError, match="dataset.path"):
        validate_config(c, num_devices=1)


def _real_archive():
    path = imf.default_cifar10_path()
    return path if path.is_file() else None


@pytest.mark.skipif(
    _real_archive() is None,
    reason="the real CIFAR-10 archive is absent: no ../shared/data/cifar10_jpeg.tar.gz "
    "beside the repository and $EXTREMEQ_CIFAR10 unset",
)
def test_real_cifar10_two_training_steps(tmp_path):
    from extremeq.train.config import load_config_file
    from extremeq.train.train import train_and_evaluate

    # 20 train + 10 test images per class, copied out of the real archive (a few hundred images).
    subset, taken = tmp_path / "cifar_subset.tar.gz", {}
    with tarfile.open(_real_archive(), "r:gz") as src, tarfile.open(subset, "w:gz") as out:
        for m in src:
            parts = m.name.split("/")
            if m.isfile() and len(parts) == 3:
                key = (parts[0], parts[1])
                if taken.get(key, 0) < {"train": 20, "test": 10}[parts[0]]:
                    taken[key] = taken.get(key, 0) + 1
                    data = src.extractfile(m).read()
                    out.addfile(m, io.BytesIO(data))
                    if key == ("train", "ship") and taken[key] == 1:
                        ship = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    ds = imf.load_cifar10(subset)
    assert ds.x_train.shape == (200, 32, 32, 3) and ds.x_test.shape == (100, 32, 32, 3)
    assert np.bincount(ds.y_train).tolist() == [20] * 10
    # The first ship read straight with Pillow is among the training images, labelled 8 (ship).
    match = np.flatnonzero((ds.x_train == ship).all(axis=(1, 2, 3)))
    assert len(match) == 1 and ds.y_train[match[0]] == 8
    # Natural images: per-channel means near CIFAR-10's (0.49, 0.48, 0.45), not noise or zeros.
    np.testing.assert_allclose(ds.mean, (0.49, 0.48, 0.45), atol=0.08)
    # The quick recipe's data, augmentation and optimizer, on a small BWN MLP (compiles in seconds).
    c = load_config_file("configs/cifar10_quick.py:bwn")
    c.dataset.path = str(subset)
    c.model = type(c.model)({"name": "mlp", "hidden": [64]})
    c.batch_size, c.eval_batch_size, c.num_epochs = 100, 100, 1
    result = train_and_evaluate(c, str(tmp_path / "run"))
    assert result["step"] == 2 and result["finished"]
    assert 1.0 < result["train_loss"] < 4.0  # about ln 10 = 2.3 after two steps from scratch
    assert 0.0 <= result["test_accuracy"] <= 1.0
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["epoch"] == 1


def test_num_classes_must_match_the_class_folders(tmp_path):
    """config.dataset.num_classes = 0 lets the folders decide; any other number must equal theirs, and a
    mismatch is a DataError (the CLI's one-line user error) naming the path and both counts."""
    from extremeq.data import DataError  # pylint: disable=g-import-not-at-top

    files, _ = _files()
    path = _write_tar(tmp_path / "set.tar.gz", files)
    assert sources.load_arrays("image_folder", path=str(path), num_classes=3).num_classes == 3
    with pytest.raises(DataError, match=r"set\.tar\.gz: config\.dataset\.num_classes = 5, but the data has 3"):
        sources.load_arrays("image_folder", path=str(path), num_classes=5)
