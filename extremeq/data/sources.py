"""Data sources that fit in memory: scikit-learn digits, npz files, and TFDS splits.

Every source returns an :class:`ArrayDataset`: the whole train and test split as NumPy arrays, images
NHWC ``uint8`` (0..255), labels ``int32``, plus the per-channel mean and standard deviation of the
training pixels in units of 1/255, so that the normalisation used by
:func:`extremeq.data.augment.normalize` is ``(x / 255 - mean) / std``. ``ArrayDataset``,
``channel_stats`` and ``STREAMED_NAMES`` live in :mod:`extremeq.data.arrays` and are re-exported here.

Names (``DATASET_NAMES``): ``digits`` (scikit-learn, offline, 8x8x1), ``mnist`` (28x28x1),
``cifar10`` / ``cifar100`` (32x32x3), ``npz`` (any file with ``x_train, y_train, x_test, y_test``),
``image_folder`` (JPEG/PNG files laid out ``<split>/<class>/<file>``, :mod:`extremeq.data.image_folder`)
and ``imagenet2012``, which does not fit in memory and is streamed by
:func:`extremeq.data.imagenet.imagenet_dataset` instead.

Sources: ``digits``; ``npz`` (a local file, NHW or NHWC ``uint8``; for ``mnist`` without a path the
file named by ``$EXTREMEQ_MNIST``, else ``<repo>/../shared/data/mnist.npz``); ``tfds`` (the prepared
TFDS data set read through ``tfds.data_source``, which needs no TensorFlow; ``tfds.load`` is used only
as a fallback when TensorFlow is importable, e.g. for data prepared in the TFRecord format);
``image_folder`` (a folder or .tar(.gz) of images; ``cifar10`` without a path reads
``$EXTREMEQ_CIFAR10``, else ``<repo>/../shared/data/cifar10_jpeg.tar.gz``).

TFDS and scikit-learn are imported inside the functions that use them, so ``import extremeq.data``
works on machines that lack them.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from extremeq.data import checks, image_folder
from extremeq.data.arrays import STREAMED_NAMES as STREAMED_NAMES
from extremeq.data.arrays import ArrayDataset, checked_array_dataset
from extremeq.data.arrays import channel_stats as channel_stats
from extremeq.data.tfds_arrays import load_tfds_arrays

DATASET_NAMES = ("digits", "mnist", "cifar10", "cifar100", "imagenet2012", "npz", "image_folder")
SOURCE_NAMES = ("digits", "npz", "tfds", "image_folder")

# Digits: train = first DIGITS_TRAIN_FRACTION of a permutation drawn with this seed, test = the rest.
DIGITS_SPLIT_SEED = 0
DIGITS_TRAIN_FRACTION = 0.8

_REPO_ROOT = Path(__file__).resolve().parents[2]


def default_mnist_path() -> Path:
    """``$EXTREMEQ_MNIST`` if set, else ``<repo>/../shared/data/mnist.npz``."""
    env = os.environ.get("EXTREMEQ_MNIST")
    if env:
        return Path(env)
    return _REPO_ROOT.parent / "shared" / "data" / "mnist.npz"


def load_digits(*, limit: int | None = None) -> ArrayDataset:
    """The scikit-learn 8x8 digits (1797 images, 10 classes), offline.

    Pixel values 0..16 are mapped to uint8 by ``round(v * 255 / 16)``. The split is deterministic:
    ``perm = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(1797)``; the first
    ``int(0.8 * 1797) = 1437`` indices of ``perm`` are train, the last 360 are test.
    """
    from sklearn.datasets import load_digits as _sk_load_digits  # pylint: disable=g-import-not-at-top

    bunch = _sk_load_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    labels = bunch.target.astype(np.int32)
    n = images.shape[0]
    perm = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(n)
    n_train = int(DIGITS_TRAIN_FRACTION * n)
    tr, te = perm[:n_train], perm[n_train:]
    return checked_array_dataset(
        "digits",
        images[tr],
        labels[tr],
        images[te],
        labels[te],
        10,
        limit,
        origin="scikit-learn digits",
        whence="digits has 10",
    )


def load_npz(
    path: str | os.PathLike, *, name: str = "npz", num_classes: int | None = None, limit: int | None = None
) -> ArrayDataset:
    """A local ``.npz`` with ``x_train, y_train, x_test, y_test`` (images NHW or NHWC uint8).

    ``num_classes``: the given one, else the file's ``num_classes`` entry, else the classes of
    ``name`` (``checks.DECLARED_NUM_CLASSES``), else inferred (:func:`checks.infer_num_classes`);
    labels outside ``[0, num_classes)`` are refused, naming the split, index and value.
    """
    path = Path(path)
    if not path.is_file():
        hint = ""
        if name == "mnist":
            hint = (
                " Point $EXTREMEQ_MNIST (or config.dataset.path) at an MNIST npz, or use "
                "source='tfds' with a prepared TFDS mnist."
            )
        raise FileNotFoundError(f"npz file {str(path)!r} not found for data set {name!r}.{hint}")
    whence = "given (config.dataset.num_classes)"
    with checks.open_npz(path) as f:
        if num_classes is None and "num_classes" in f.files:
            num_classes, whence = int(f["num_classes"]), "declared by the file's num_classes entry"
        missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in f.files]
        if missing:
            raise KeyError(
                f"{path} lacks keys {missing}; an npz data set needs x_train, y_train, x_test, y_test "
                f"(it has {sorted(f.files)})."
            )
        x_train = checks.as_nhwc_uint8(f["x_train"], f"{path}: x_train")
        x_test = checks.as_nhwc_uint8(f["x_test"], f"{path}: x_test")
        y_train = checks.as_labels(f["y_train"], x_train.shape[0], f"{path}: y_train")
        y_test = checks.as_labels(f["y_test"], x_test.shape[0], f"{path}: y_test")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise ValueError(
            f"{path}: train images {x_train.shape[1:]} and test images {x_test.shape[1:]} differ in shape."
        )
    if num_classes is None and name in checks.DECLARED_NUM_CLASSES:
        num_classes, whence = checks.DECLARED_NUM_CLASSES[name], f"{name} has {checks.DECLARED_NUM_CLASSES[name]}"
    return checked_array_dataset(
        name, x_train, y_train, x_test, y_test, num_classes, limit, origin=str(path), whence=whence
    )


def _default_source(name: str, path) -> str:
    if name == "digits":
        return "digits"
    if name == "image_folder" or (path and (Path(path).is_dir() or image_folder.is_archive(path))):
        return "image_folder"
    if name == "npz" or path:
        return "npz"
    if name == "mnist" and default_mnist_path().is_file():
        return "npz"
    if name == "cifar10" and image_folder.default_cifar10_path().exists():
        return "image_folder"
    return "tfds"


def load_arrays(
    name: str,
    *,
    source: str | None = None,
    path: str | os.PathLike | None = None,
    data_dir: str | None = None,
    limit: int | None = None,
    num_classes: int | None = None,
) -> ArrayDataset:
    """Loads a data set whole into memory; the arguments mirror ``config.dataset``.

    Args:
      name: one of ``DATASET_NAMES`` except ``imagenet2012`` (streamed instead).
      source: ``"digits"``, ``"npz"``, ``"tfds"`` or ``"image_folder"``; ``None`` picks ``image_folder``
        for image_folder, a folder or .tar(.gz) path, and cifar10 when its default archive exists; ``npz``
        for npz, any other path, and mnist when :func:`default_mnist_path` exists; ``tfds`` otherwise.
      path: the npz file, or image folder / archive; mnist and cifar10 have defaults (see above).
      data_dir: the TFDS data directory (source ``tfds``); ``None`` means TFDS's default.
      limit: keep only the first ``limit`` training examples (``None`` or negative: all).
      num_classes: the number of classes (``None``: the data set's declared classes, see
        :mod:`extremeq.data.checks`); every label must lie in ``[0, num_classes)``.

    Returns:
      An :class:`ArrayDataset`.
    """
    if name not in DATASET_NAMES:
        raise ValueError(f"data set {name!r} unknown; choose one of {', '.join(DATASET_NAMES)}.")
    if source is None or source == "":
        source = _default_source(name, path)
    if source not in SOURCE_NAMES:
        raise ValueError(f"data source {source!r} unknown; choose one of {', '.join(SOURCE_NAMES)}.")
    if limit is not None and limit < 0:
        limit = None
    if source == "digits":
        if name != "digits":
            raise ValueError(f"source 'digits' serves only the data set 'digits', not {name!r}.")
        if num_classes not in (None, 10):
            raise ValueError(f"digits has 10 classes, not num_classes = {num_classes}.")
        return load_digits(limit=limit)
    if source == "npz":
        if not path:
            if name == "mnist":
                path = default_mnist_path()
            else:
                raise ValueError(
                    f"source 'npz' for data set {name!r} needs a path (config.dataset.path) to a file with "
                    "x_train, y_train, x_test, y_test."
                )
        return load_npz(path, name=name, limit=limit, num_classes=num_classes)
    if source == "image_folder":
        return image_folder.load_named(name, path, limit=limit, num_classes=num_classes)
    if name in ("digits", "npz", "image_folder"):
        raise ValueError(f"data set {name!r} is not a TFDS data set; use source={name!r}.")
    return load_tfds_arrays(name, data_dir=data_dir, limit=limit, num_classes=num_classes)


def load_from_config(dataset_config) -> ArrayDataset:
    """:func:`load_arrays` from a ``config.dataset`` ConfigDict (fields name, source, path, data_dir,
    limit_train, num_classes); missing fields take their defaults (num_classes <= 0: declared by the data)."""
    get = dataset_config.get if hasattr(dataset_config, "get") else (lambda k, d=None: getattr(dataset_config, k, d))
    num_classes = get("num_classes", None) or 0
    return load_arrays(
        get("name"),
        source=get("source", None) or None,
        path=get("path", None) or None,
        data_dir=get("data_dir", None) or None,
        limit=get("limit_train", None),
        num_classes=int(num_classes) if num_classes > 0 else None,
    )
