"""Checks of an in-memory data set, run once when it is loaded, before any training step.

A data set that cannot train a meaningful model stops here with a message naming the file, the
split and the fix, instead of failing an epoch later (an empty test split) or training silently
the wrong model (one label 200 among digits 0..9 would otherwise make a 201-way classifier):

* every split must hold examples (train after ``limit_train``, and test);
* labels lie in ``[0, num_classes)``, where ``num_classes`` is the one given (``config.dataset.
  num_classes``), else the data set's declared classes (``DECLARED_NUM_CLASSES``, a TFDS data set's
  ``info.features["label"].num_classes``, an npz file's ``num_classes`` entry); only a data set that
  declares none has ``num_classes = max(label) + 1`` inferred, and then every class in
  ``0..max(label)`` must occur in some split, so that a stray label cannot add classes silently.
"""

from __future__ import annotations

import zipfile

import numpy as np


class DataError(ValueError):
    """A data set that cannot train a meaningful model; the message names the file and the fix."""


# Classes of the named data sets (an npz loaded under one of these names must respect them).
DECLARED_NUM_CLASSES = {"digits": 10, "mnist": 10, "cifar10": 10, "cifar100": 100, "imagenet2012": 1000}


def check_not_empty(num_examples: int, origin: str, split: str, fix: str = ""):
    """Raises :class:`DataError` when a split has no examples."""
    if num_examples == 0:
        raise DataError(
            f"{origin}: the {split} split is empty (0 examples); nothing to "
            f"{'train on' if split == 'train' else 'evaluate on'}.{fix}"
        )


def check_labels(labels: np.ndarray, num_classes: int, origin: str, split: str, whence: str):
    """Raises :class:`DataError` naming the first label outside ``[0, num_classes)`` (its index and value)."""
    labels = np.asarray(labels)
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        i = int(bad[0])
        raise DataError(
            f"{origin}: {split} label {int(labels[i])} at index {i} is outside [0, {num_classes}) "
            f"({num_classes} classes, {whence}; {bad.size} such label(s) in this split). Fix the "
            "labels, or declare the number of classes (a num_classes entry in the npz, or "
            "config.dataset.num_classes)."
        )


def infer_num_classes(splits: dict, origin: str) -> int:
    """``max(label) + 1`` over all splits, provided every class ``0..max`` occurs somewhere.

    Args:
      splits: {split name: int labels}.
      origin: the file or source, for messages.
    """
    present = np.unique(np.concatenate([np.asarray(y).ravel() for y in splits.values()]))
    if present.size == 0:
        return 0
    num_classes = int(present[-1]) + 1
    missing = np.setdiff1d(np.arange(num_classes), present)
    if missing.size:
        top = int(present[-1])
        split, index = next(
            (s, int(np.flatnonzero(np.asarray(y) == top)[0])) for s, y in splits.items() if np.any(np.asarray(y) == top)
        )
        raise DataError(
            f"{origin}: {split} label {top} at index {index} would make {num_classes} classes, but "
            f"{missing.size} of them (e.g. {missing[:5].tolist()}) have no example. Fix the labels, "
            "or, if those classes are intended, declare them (config.dataset.num_classes, or a "
            "num_classes entry in the npz)."
        )
    return num_classes


def as_nhwc_uint8(x: np.ndarray, what: str) -> np.ndarray:
    """NHW or NHWC integer images in 0..255 as NHWC ``uint8``; anything else is refused."""
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise DataError(f"{what} has shape {x.shape}; expected NHW or NHWC images (3 or 4 dimensions).")
    if x.dtype != np.uint8:
        if np.issubdtype(x.dtype, np.integer) and x.size and (x.min() < 0 or x.max() > 255):
            raise DataError(f"{what} holds values outside 0..255; save images as uint8 0..255.")
        if not np.issubdtype(x.dtype, np.integer):
            raise DataError(
                f"{what} has dtype {x.dtype}; expected uint8 images in 0..255 (convert with "
                "np.round(x * 255).astype(np.uint8) if they are floats in [0, 1])."
            )
        x = x.astype(np.uint8)
    return x


def as_labels(y: np.ndarray, n: int, what: str) -> np.ndarray:
    """``n`` integer labels (shape ``(n,)`` or ``(n, 1)``) as ``int32``; their range is checked by
    :func:`check_labels` once the number of classes is known."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or y.shape[0] != n:
        raise DataError(f"{what} has shape {y.shape}; expected ({n},) integer class labels.")
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{what} has dtype {y.dtype}; expected integer class labels.")
    return y.astype(np.int32)


def open_npz(path):
    """``np.load(path)`` of an npz archive; anything else (a text file, an .npy) is refused clearly."""
    try:
        f = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(
            f"{path} is not an npz file ({type(e).__name__}: {e}); save the arrays with "
            "np.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)."
        ) from e
    if not isinstance(f, np.lib.npyio.NpzFile):
        raise DataError(
            f"{path} holds a single array, not an npz archive; save the arrays with "
            "np.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)."
        )
    return f
