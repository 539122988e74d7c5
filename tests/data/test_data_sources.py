"""In-memory sources: digits, npz, real MNIST, TFDS (via tfds.testing.mock_data, no download)."""

import os
import subprocess
import sys

import numpy as np
import pytest

from extremeq import data
from extremeq.data import sources


def test_import_does_not_pull_tfds_grain_sklearn():
    code = (
        "import sys, extremeq.data; bad = [m for m in sys.modules if m.split('.')[0] in "
        "('tensorflow_datasets', 'grain', 'sklearn', 'tensorflow')]; print(bad); "
        "sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_digits_split_sizes_determinism_and_values():
    from sklearn.datasets import load_digits

    a, b = data.load_arrays("digits"), data.load_digits()
    assert a.x_train.shape == (1437, 8, 8, 1) and a.x_test.shape == (360, 8, 8, 1)
    assert a.x_train.dtype == np.uint8 and a.y_train.dtype == np.int32 and a.num_classes == 10
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    # The documented split: permutation from default_rng(0), first int(0.8 n) train.
    bunch = load_digits()
    perm = np.random.default_rng(0).permutation(1797)
    np.testing.assert_array_equal(a.y_train, bunch.target[perm[:1437]])
    np.testing.assert_array_equal(a.x_test[..., 0], np.round(bunch.images[perm[1437:]] * 255 / 16))
    # Train and test are disjoint and together hold every image.
    assert len(set(perm[:1437]) & set(perm[1437:])) == 0
    # Statistics are those of the training pixels / 255.
    np.testing.assert_allclose(a.mean, [a.x_train.mean() / 255], rtol=1e-9)
    np.testing.assert_allclose(a.std, [a.x_train.std() / 255], rtol=1e-9)
    lim = data.load_arrays("digits", limit=100)
    np.testing.assert_array_equal(lim.x_train, a.x_train[:100])
    assert lim.mean == a.mean and lim.num_test == 360


def _write_npz(path, nhwc: bool, seed=0):
    rng = np.random.default_rng(seed)
    shape = (20, 5, 6, 2) if nhwc else (20, 5, 6)
    arrays = dict(
        x_train=rng.integers(0, 256, shape, dtype=np.uint8),
        y_train=rng.integers(0, 4, 20).astype(np.uint8),
        x_test=rng.integers(0, 256, (7,) + shape[1:], dtype=np.uint8),
        y_test=np.array([0, 1, 2, 3, 4, 0, 1], np.int64),
    )
    np.savez(path, **arrays)
    return arrays


@pytest.mark.parametrize("nhwc", [False, True])
def test_npz_nhw_and_nhwc(tmp_path, nhwc):
    arrays = _write_npz(tmp_path / "d.npz", nhwc)
    ds = data.load_arrays("npz", path=str(tmp_path / "d.npz"))
    c = 2 if nhwc else 1
    assert ds.x_train.shape == (20, 5, 6, c) and ds.x_test.shape == (7, 5, 6, c)
    assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int32 and ds.y_test.dtype == np.int32
    np.testing.assert_array_equal(ds.x_train.reshape(arrays["x_train"].shape), arrays["x_train"])
    np.testing.assert_array_equal(ds.y_test, arrays["y_test"])
    assert ds.num_classes == 5 and ds.name == "npz"
    x = arrays["x_train"].astype(np.float64).reshape(-1, c) / 255
    np.testing.assert_allclose(ds.mean, x.mean(0), rtol=1e-9)
    np.testing.assert_allclose(ds.std, x.std(0), rtol=1e-9)
    assert data.load_arrays("npz", path=str(tmp_path / "d.npz"), limit=3).num_train == 3


def test_npz_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        data.load_arrays("npz", path=str(tmp_path / "missing.npz"))
    np.savez(tmp_path / "bad.npz", x_train=np.zeros((2, 3, 3), np.uint8), y_train=np.zeros(2))
    with pytest.raises(KeyError, match="x_test"):
        data.load_npz(tmp_path / "bad.npz")
    np.savez(
        tmp_path / "flt.npz",
        x_train=np.zeros((2, 3, 3)),
        y_train=np.zeros(2, int),
        x_test=np.zeros((2, 3, 3)),
        y_test=np.zeros(2, int),
    )
    with pytest.raises(ValueError, match="uint8"):
        data.load_npz(tmp_path / "flt.npz")
    with pytest.raises(ValueError, match="needs a path"):
        data.load_arrays("cifar10", source="npz")


def test_unknown_names_list_valid_ones():
    with pytest.raises(ValueError, match="cifar10, cifar100"):
        data.load_arrays("cifar11")
    with pytest.raises(ValueError, match="digits, npz, tfds"):
        data.load_arrays("mnist", source="hdf5")
    with pytest.raises(ValueError, match="stream"):
        data.load_arrays("imagenet2012", source="tfds")


def test_mnist_path_env_and_default(monkeypatch, tmp_path):
    monkeypatch.setenv("EXTREMEQ_MNIST", str(tmp_path / "m.npz"))
    assert data.default_mnist_path() == tmp_path / "m.npz"
    _write_npz(tmp_path / "m.npz", nhwc=False)
    ds = data.load_arrays("mnist", source="npz")
    assert ds.name == "mnist" and ds.x_train.shape == (20, 5, 6, 1)
    monkeypatch.delenv("EXTREMEQ_MNIST")
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(sources.__file__))))
    assert str(data.default_mnist_path()) == os.path.join(os.path.dirname(repo), "shared", "data", "mnist.npz")


def test_real_mnist_shapes_and_statistics():
    path = data.default_mnist_path()
    if not path.is_file():
        pytest.skip(f"real MNIST not at {path} (set EXTREMEQ_MNIST)")
    ds = data.load_arrays("mnist", source="npz")
    assert ds.x_train.shape == (60000, 28, 28, 1) and ds.x_test.shape == (10000, 28, 28, 1)
    assert ds.num_classes == 10 and ds.y_train.dtype == np.int32
    np.testing.assert_array_equal(ds.y_train[:10], [5, 0, 4, 1, 9, 2, 1, 3, 1, 4])
    np.testing.assert_array_equal(ds.y_test[:10], [7, 2, 1, 0, 4, 1, 4, 9, 5, 9])
    np.testing.assert_array_equal(np.bincount(ds.y_train), [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949])
    assert abs(ds.mean[0] - 0.1307) < 5e-5 and abs(ds.std[0] - 0.3081) < 5e-5


def test_load_from_config_fields():
    ml_collections = pytest.importorskip("ml_collections")
    cfg = ml_collections.ConfigDict(dict(name="digits", source="digits", path="", data_dir="", limit_train=50))
    ds = data.load_from_config(cfg)
    assert ds.num_train == 50 and ds.num_test == 360


# TFDS through tfds.testing.mock_data: no download and no TensorFlow needed.
tfds = pytest.importorskip("tensorflow_datasets")


@pytest.mark.parametrize("name,classes", [("cifar10", 10), ("cifar100", 100), ("mnist", 10)])
def test_tfds_mock_arrays(name, classes):
    with tfds.testing.mock_data(num_examples=12):
        ds = data.load_arrays(name, source="tfds", data_dir="/nonexistent/tfds", limit=5)
    hw, c = (28, 1) if name == "mnist" else (32, 3)
    assert ds.x_train.shape == (5, hw, hw, c) and ds.x_test.shape == (12, hw, hw, c)
    assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int32
    assert ds.num_classes == classes
    assert 0 <= ds.y_test.min() and ds.y_test.max() < classes
    assert len(ds.mean) == c and all(0 < s for s in ds.std)


def test_tfds_not_prepared_error_says_how_to_prepare(tmp_path):
    with pytest.raises(data.DatasetNotPreparedError, match=r"tfds build cifar10.*npz"):
        data.load_arrays("cifar10", source="tfds", data_dir=str(tmp_path))
