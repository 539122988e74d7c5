"""TFDS splits as in-memory arrays (the ``tfds`` source of :mod:`extremeq.data.sources`).

The prepared data set is read through ``tfds.data_source`` (random access, no TensorFlow needed);
``tfds.load`` is the fallback when TensorFlow is importable (data prepared as TFRecords). Nothing is
downloaded: a data set that is not prepared raises :class:`DatasetNotPreparedError` saying how to
prepare it elsewhere. TFDS is imported inside the functions, so importing this module needs none.
"""

from __future__ import annotations

import numpy as np

from extremeq.data import checks
from extremeq.data.arrays import STREAMED_NAMES, ArrayDataset, checked_array_dataset


class DatasetNotPreparedError(RuntimeError):
    """A TFDS data set is not prepared in ``data_dir`` (this machine cannot download)."""


def _not_prepared_message(name: str, data_dir) -> str:
    data_dir = data_dir or "the TFDS default (~/tensorflow_datasets or $TFDS_DATA_DIR)"
    return (
        f"TFDS data set {name!r} is not prepared in data_dir {data_dir} (or it is prepared in a "
        "format that needs TensorFlow). Prepare it on a machine with internet access, in a random-access "
        f"format: `tfds build {name} --file_format=array_record --data_dir=<dir>` (or "
        f"tfds.builder({name!r}, data_dir=...).download_and_prepare(file_format='array_record')), then "
        "copy <dir> here and set config.dataset.data_dir; or save the arrays as an npz with x_train, "
        "y_train, x_test, y_test and use source='npz' with config.dataset.path."
    )


def _tensorflow_importable() -> bool:
    import importlib.util  # pylint: disable=g-import-not-at-top

    return importlib.util.find_spec("tensorflow") is not None


def tfds_source(name: str, split: str, *, data_dir: str | None = None):
    """``tfds.data_source(name, split=split, data_dir=data_dir, download=False)`` with a clear error.

    Returns a random-access sequence of dicts of decoded NumPy arrays (``image`` HWC uint8,
    ``label`` int64 scalar). Works without TensorFlow for data prepared as array_record or parquet.
    """
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

    try:
        return tfds.data_source(name, split=split, data_dir=data_dir or None, download=False)
    except tfds.core.registered.DatasetNotFoundError as e:
        raise ValueError(f"TFDS has no data set named {name!r}.") from e
    except (NotImplementedError, FileNotFoundError, AssertionError, OSError) as e:
        raise DatasetNotPreparedError(_not_prepared_message(name, data_dir)) from e


def _read_split(source, chunk: int = 1024):
    """Stacks every example of a random-access TFDS source into (images, labels)."""
    n = len(source)
    images, labels = [], []
    for start in range(0, n, chunk):
        keys = list(range(start, min(n, start + chunk)))
        try:
            examples = source.__getitems__(keys)
        except TypeError:
            # tfds.testing.mock_data installs an unbound __getitems__ that fails; read one at a time.
            examples = [source[k] for k in keys]
        images.extend(np.asarray(ex["image"]) for ex in examples)
        labels.extend(int(ex["label"]) for ex in examples)
    return np.stack(images), np.asarray(labels, np.int32)


def _num_classes_from_source(source, name: str) -> int | None:
    info = getattr(source, "dataset_info", None)
    try:
        return int(info.features["label"].num_classes)
    except (AttributeError, KeyError, TypeError):
        return None


def load_tfds_arrays(
    name: str,
    *,
    data_dir: str | None = None,
    limit: int | None = None,
    train_split: str = "train",
    test_split: str = "test",
    num_classes: int | None = None,
) -> ArrayDataset:
    """A TFDS data set's train and test splits, read whole into memory.

    Uses ``tfds.data_source`` (no TensorFlow needed); if that fails and TensorFlow is importable,
    falls back to ``tfds.load(..., batch_size=-1)``. Raises :class:`DatasetNotPreparedError`, which
    says how to prepare the data or use an npz instead, when the data set is not prepared.
    """
    if name in STREAMED_NAMES:
        raise ValueError(
            f"{name!r} is too large to hold in memory; stream it with "
            "extremeq.data.imagenet.imagenet_dataset(...) instead of load_arrays."
        )
    try:
        train_src = tfds_source(name, train_split, data_dir=data_dir)
        test_src = tfds_source(name, test_split, data_dir=data_dir)
    except DatasetNotPreparedError:
        if not _tensorflow_importable():
            raise
        return _load_tfds_with_tensorflow(name, data_dir, limit, train_split, test_split, num_classes)
    x_train, y_train = _read_split(train_src)
    x_test, y_test = _read_split(test_src)
    whence = "given (config.dataset.num_classes)"
    if num_classes is None:
        num_classes, whence = _num_classes_from_source(train_src, name), "declared by TFDS"
    return checked_array_dataset(
        name,
        checks.as_nhwc_uint8(x_train, f"{name} train images"),
        y_train,
        checks.as_nhwc_uint8(x_test, f"{name} test images"),
        y_test,
        num_classes,
        limit,
        origin=f"TFDS {name} ({data_dir or 'default data_dir'})",
        whence=whence,
    )


def _load_tfds_with_tensorflow(name, data_dir, limit, train_split, test_split, num_classes=None) -> ArrayDataset:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

    try:
        (tr, te), info = tfds.load(
            name,
            split=[train_split, test_split],
            data_dir=data_dir or None,
            batch_size=-1,
            download=False,
            with_info=True,
        )
    except AssertionError as e:
        raise DatasetNotPreparedError(_not_prepared_message(name, data_dir)) from e
    tr, te = tfds.as_numpy(tr), tfds.as_numpy(te)
    return checked_array_dataset(
        name,
        checks.as_nhwc_uint8(tr["image"], f"{name} train images"),
        tr["label"].astype(np.int32),
        checks.as_nhwc_uint8(te["image"], f"{name} test images"),
        te["label"].astype(np.int32),
        num_classes or info.features["label"].num_classes,
        limit,
        origin=f"TFDS {name} ({data_dir or 'default data_dir'})",
        whence="given (config.dataset.num_classes)" if num_classes else "declared by TFDS",
    )
