"""ImageNet (ILSVRC-2012) streamed from ``tfds.data_source("imagenet2012")`` through a grain pipeline.

``tfds.data_source`` returns each example as a dict of decoded NumPy arrays (``image``: HWC uint8 of
varying size, ``label``: int64), without TensorFlow, when the data set is prepared as array_record.
The pipeline does the per-example work on CPU (in grain worker processes when ``worker_count > 0``)
and yields uint8 batches; normalisation belongs on the device
(``extremeq.data.normalize(batch["image"], IMAGENET_MEAN, IMAGENET_STD)``).

Training transform, the "Inception" random-resized crop (Szegedy et al., 2015, "Going Deeper with
Convolutions", Sec. 6; as in torchvision ``RandomResizedCrop``): draw area fraction
``s ~ U[0.08, 1]`` and log aspect ratio ``log r ~ U[log 3/4, log 4/3]``, crop
``h = round(sqrt(s * A / r)), w = round(sqrt(s * A * r))`` at a uniform position if it fits
(up to 10 tries; else a central crop of the whole image clamped to the ratio range), resize it to
``image_size x image_size`` (bilinear), then flip horizontally with probability 1/2.

Evaluation transform: the central square crop of side ``image_size / (image_size + 32) * min(H, W)``
(224/256 = 0.875 of the shorter side for 224), resized to ``image_size`` (bilinear), as in the Flax
ImageNet example.

Determinism: the shuffle is seeded by ``seed`` and reseeded each epoch; each example's augmentation
generator is seeded by ``(seed, position in the pipeline)``, so ``dataset[step]`` is the same batch on
every run and a resumed run can continue from any step with ``dataset.slice(slice(step, None))``.

Several processes (``num_shards = P``, :func:`process_shard`). Training: epoch ``e`` is the first
``floor(N / (P B)) P B`` examples of its own permutation (the remainder of each epoch is dropped, so
epochs stay aligned with passes), cut into local batches of ``B``; process ``p`` takes batches
``p, p + P, p + 2P, ...``, so global step ``s`` is local batches ``sP .. sP + P - 1``, the processes'
examples are disjoint and together every kept example once per epoch. Evaluation: the split padded
(masked copies of example 0) to a multiple of ``P B``, batches dealt the same way, so every process
runs the same number of batches and every example is counted once.
"""

from __future__ import annotations

import math

import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGENET_NUM_CLASSES = 1000
IMAGENET_TRAIN_SIZE = 1_281_167
IMAGENET_EVAL_SIZE = 50_000


def random_resized_crop_box(
    rng: np.random.Generator, height: int, width: int, *, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), attempts: int = 10
):
    """``(top, left, h, w)`` of an Inception-style random crop of a ``height x width`` image."""
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(attempts):
        target = area * rng.uniform(scale[0], scale[1])
        r = math.exp(rng.uniform(log_lo, log_hi))
        w = int(round(math.sqrt(target * r)))
        h = int(round(math.sqrt(target / r)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top, left, h, w
    # Fallback: the largest central crop whose aspect ratio lies in `ratio`.
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        h, w = height, int(round(height * ratio[1]))
    else:
        h, w = height, width
    h, w = max(1, min(h, height)), max(1, min(w, width))
    return (height - h) // 2, (width - w) // 2, h, w


def center_crop_box(height: int, width: int, image_size: int, *, crop_padding: int = 32):
    """``(top, left, side, side)``: the central square of side
    ``round(image_size / (image_size + crop_padding) * min(height, width))``."""
    side = int(round(image_size / (image_size + crop_padding) * min(height, width)))
    side = max(1, min(side, height, width))
    return (height - side) // 2, (width - side) // 2, side, side


def crop_and_resize(image: np.ndarray, box, size: int) -> np.ndarray:
    """Crops HWC uint8 ``image`` to ``box = (top, left, h, w)`` and resizes it to ``size x size``
    with bilinear interpolation (PIL); returns HWC uint8 ``[size, size, C]``."""
    from PIL import Image  # pylint: disable=g-import-not-at-top

    top, left, h, w = box
    crop = np.ascontiguousarray(image[top : top + h, left : left + w])
    if crop.shape[0] == size and crop.shape[1] == size:
        return crop
    squeeze = crop.shape[-1] == 1
    pil = Image.fromarray(crop[..., 0] if squeeze else crop)
    out = np.asarray(pil.resize((size, size), resample=Image.BILINEAR))
    return out[..., None] if squeeze else out


def _ensure_rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    return image


def train_transform(example, rng: np.random.Generator, *, image_size: int = 224, flip: bool = True):
    """Random-resized crop to ``image_size``, then a horizontal flip with probability 1/2."""
    image = _ensure_rgb(example["image"])
    box = random_resized_crop_box(rng, image.shape[0], image.shape[1])
    out = crop_and_resize(image, box, image_size)
    if flip and rng.random() < 0.5:
        out = out[:, ::-1]
    return {"image": np.ascontiguousarray(out), "label": np.int32(example["label"])}


def eval_transform(example, *, image_size: int = 224):
    """Central crop (``image_size / (image_size + 32)`` of the shorter side) resized to ``image_size``."""
    image = _ensure_rgb(example["image"])
    box = center_crop_box(image.shape[0], image.shape[1], image_size)
    return {"image": crop_and_resize(image, box, image_size), "label": np.int32(example["label"])}


class _TrainTransform:
    """Picklable callable for grain workers."""

    def __init__(self, image_size: int, flip: bool):
        self.image_size, self.flip = image_size, flip

    def __call__(self, example, rng):
        return train_transform(example, rng, image_size=self.image_size, flip=self.flip)


class _EvalTransform:
    def __init__(self, image_size: int):
        self.image_size = image_size

    def __call__(self, example):
        out = eval_transform(example, image_size=self.image_size)
        out["mask"] = example["mask"]
        return out


class _PadToLength:
    """Presents ``source`` as ``length`` items; items past its end are copies of item 0, masked."""

    def __init__(self, source, length: int):
        self.source, self.length = source, length

    def __len__(self):
        return self.length

    def __getitem__(self, i):
        n = len(self.source)
        i = int(i)
        if i < 0:
            i += self.length
        example = dict(self.source[i if i < n else 0])
        example["mask"] = np.bool_(i < n)
        return example


def _add_mask(example):
    example["mask"] = np.bool_(True)
    return example


def imagenet_dataset(
    source,
    *,
    train: bool,
    batch_size: int,
    image_size: int = 224,
    seed: int = 0,
    num_epochs: int | None = 1,
    flip: bool = True,
    num_shards: int = 1,
):
    """A ``grain.MapDataset`` of batches ``{"image": uint8 [B, S, S, 3], "label": int32 [B],
    "mask": bool [B]}`` with ``S = image_size``.

    Args:
      source: a random-access source of ``{"image", "label"}`` dicts, e.g.
        ``imagenet_source("train")`` or ``tfds.data_source("imagenet2012", split=...)``.
      train: True: shuffle (reseeded every epoch), random-resized crop + flip, drop the last partial
        batch, ``num_epochs`` epochs (``None``: forever). False: one pass in order, central crop, the
        last batch padded to ``batch_size`` with masked copies of example 0.
      batch_size: examples per batch (per process).
      image_size: output side ``S``.
      seed: seeds the shuffle and the augmentation.
      num_shards: the processes that will share the batches (:func:`process_shard`): each training
        epoch keeps a multiple of ``num_shards * batch_size`` examples, evaluation pads to one.
    """
    import grain  # pylint: disable=g-import-not-at-top

    global_batch = batch_size * num_shards
    if train:
        if len(source) < global_batch:
            raise ValueError(
                f"{len(source)} training examples are fewer than one global batch of {global_batch}; "
                "lower config.batch_size"
            )
        ds = grain.MapDataset.source(source).seed(seed).shuffle()
        ds = ds[: len(source) // global_batch * global_batch]  # each epoch: whole global batches
        if num_epochs != 1:
            ds = ds.repeat(num_epochs)
        ds = ds.random_map(_TrainTransform(image_size, flip)).map(_add_mask)
        return ds.batch(batch_size, drop_remainder=True)
    padded_len = -(-len(source) // global_batch) * global_batch
    ds = grain.MapDataset.source(_PadToLength(source, padded_len))
    return ds.map(_EvalTransform(image_size)).batch(batch_size, drop_remainder=True)


def process_shard(dataset, process_index: int, process_count: int):
    """Process ``process_index``'s batches of a dataset from :func:`imagenet_dataset` built with
    ``num_shards = process_count``: batches ``process_index, process_index + process_count, ...``."""
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} is not in [0, {process_count})")
    if process_count == 1:
        return dataset
    return dataset.slice(slice(process_index, None, process_count))


def imagenet_iterator(dataset, *, worker_count: int = 0, worker_buffer_size: int = 2, start_step: int = 0):
    """Iterates a dataset from :func:`imagenet_dataset` from ``start_step``, with ``worker_count``
    grain worker processes (0: in this process)."""
    import grain  # pylint: disable=g-import-not-at-top

    if start_step:
        dataset = dataset.slice(slice(start_step, None))
    it = dataset.to_iter_dataset()
    if worker_count > 0:
        from absl import flags  # pylint: disable=g-import-not-at-top

        # grain's workers read absl flags; outside absl.app.run nobody has parsed them.
        if not flags.FLAGS.is_parsed():
            flags.FLAGS.mark_as_parsed()
        it = it.mp_prefetch(
            grain.MultiprocessingOptions(num_workers=worker_count, per_worker_buffer_size=worker_buffer_size)
        )
    return iter(it)


def imagenet_source(split: str, *, data_dir: str | None = None):
    """``tfds.data_source("imagenet2012", split=split)`` (``"train"`` or ``"validation"``) with a
    clear error when the data set is not prepared."""
    from extremeq.data.tfds_arrays import tfds_source  # pylint: disable=g-import-not-at-top

    return tfds_source("imagenet2012", split, data_dir=data_dir)
