"""The in-memory data set record every source returns, and the one way to build it.

:class:`ArrayDataset` holds the whole train and test split as NumPy arrays, images NHWC ``uint8``
(0..255), labels ``int32``, plus the per-channel mean and standard deviation of the training pixels
in units of 1/255 (:func:`channel_stats`), so that the normalisation used by
:func:`extremeq.data.augment.normalize` is ``(x / 255 - mean) / std``. Each source
(:mod:`extremeq.data.sources`, :mod:`extremeq.data.image_folder`, :mod:`extremeq.data.tfds_arrays`)
hands its raw arrays to :func:`checked_array_dataset`, which runs the checks of
:mod:`extremeq.data.checks` and splits off the validation examples past ``limit``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from extremeq.data import checks

# Data sets too large to hold as an ArrayDataset: streamed by extremeq.data.imagenet instead.
STREAMED_NAMES = ("imagenet2012",)


@dataclasses.dataclass(frozen=True)
class ArrayDataset:
    """A data set held whole in memory.

    Attributes:
      name: data set name, e.g. ``"mnist"``.
      x_train, x_test: images, NHWC ``uint8`` in 0..255.
      y_train, y_test: labels, ``int32`` in ``[0, num_classes)``.
      num_classes: number of classes.
      mean, std: per-channel mean and standard deviation of the full training split's pixels divided
        by 255 (computed before ``limit`` is applied), one float per channel.
      x_val, y_val: the training examples past ``limit`` (BinaryConnect/BinaryNet's validation set:
        MNIST's last 10000 training images when ``limit = 50000``); ``None`` without a limit.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])

    @property
    def num_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def num_test(self) -> int:
        return int(self.x_test.shape[0])


def channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of NHWC images in units of 1/255 (population std, float64 sums)."""
    x = np.asarray(images)
    c = x.shape[-1]
    flat = x.reshape(-1, c)
    n = flat.shape[0]
    # Chunked sums keep memory at a few MB even for CIFAR-sized uint8 arrays.
    s = np.zeros(c, np.float64)
    ss = np.zeros(c, np.float64)
    for start in range(0, n, 1 << 20):
        chunk = flat[start : start + (1 << 20)].astype(np.float64)
        s += chunk.sum(0)
        ss += np.square(chunk).sum(0)
    mean = s / n
    std = np.sqrt(np.maximum(ss / n - np.square(mean), 0.0))
    return tuple(float(m) / 255.0 for m in mean), tuple(float(v) / 255.0 for v in std)


def checked_array_dataset(
    name, x_train, y_train, x_test, y_test, num_classes, limit, *, origin: str, whence: str = ""
) -> ArrayDataset:
    """The ArrayDataset of a source's raw splits, after the checks of :mod:`extremeq.data.checks`.

    ``num_classes=None``: inferred (:func:`checks.infer_num_classes`); ``origin`` (the file or data
    set) and ``whence`` (where ``num_classes`` came from) name the problem in errors. ``mean`` and
    ``std`` are :func:`channel_stats` of the full training split; ``limit`` (``None`` or negative:
    all) keeps the first ``limit`` training examples and makes the rest ``x_val, y_val``.
    """
    checks.check_not_empty(len(x_train), origin, "train")
    checks.check_not_empty(len(x_test), origin, "test")
    if num_classes is None:
        num_classes = checks.infer_num_classes({"train": y_train, "test": y_test}, origin)
        whence = "inferred as max(label) + 1"
    checks.check_labels(y_train, num_classes, origin, "train", whence)
    checks.check_labels(y_test, num_classes, origin, "test", whence)
    mean, std = channel_stats(x_train)
    x_val = y_val = None
    if limit is not None and limit >= 0:
        if limit < len(x_train):
            x_val, y_val = np.ascontiguousarray(x_train[limit:]), np.ascontiguousarray(y_train[limit:])
        x_train, y_train = x_train[:limit], y_train[:limit]
        checks.check_not_empty(
            len(x_train),
            origin,
            "train",
            f" config.dataset.limit_train = {limit} keeps none; raise it or set -1 (all).",
        )
    return ArrayDataset(
        name=name,
        x_train=np.ascontiguousarray(x_train),
        y_train=np.ascontiguousarray(y_train),
        x_test=np.ascontiguousarray(x_test),
        y_test=np.ascontiguousarray(y_test),
        num_classes=int(num_classes),
        mean=mean,
        std=std,
        x_val=x_val,
        y_val=y_val,
    )
