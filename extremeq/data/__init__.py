"""Data: in-memory sources (digits, npz, TFDS, image folders), on-device augmentation and batching,
ImageNet streaming.

Small data sets (digits, MNIST, CIFAR-10/100) are held whole in device memory. Each epoch is a
permutation drawn from ``fold_in(key, epoch)``; the jitted train step gathers its batch with
``jnp.take`` and augments it on device, so the host does no per-step work::

    import jax, jax.numpy as jnp
    from extremeq import data

    ds = data.load_arrays("cifar10", source="tfds", data_dir="/data/tfds")  # or "mnist" / "digits"
    x_all, y_all = jax.device_put(ds.x_train), jax.device_put(ds.y_train)   # uint8 NHWC, int32

    @jax.jit
    def train_step(state, x_all, y_all, idx, key):      # pass the arrays as arguments, not closures
      x = jnp.take(x_all, idx, axis=0)                   # [B, H, W, C] uint8
      y = jnp.take(y_all, idx, axis=0)
      x = data.augment_batch(key, x, crop_padding=4, flip=True, mean=ds.mean, std=ds.std)
      ...

    rng = jax.random.key(config.seed)
    shuffle_key, aug_key = jax.random.split(rng)
    for epoch in range(start_epoch, config.num_epochs):
      plan = data.epoch_indices(shuffle_key, ds.num_train, config.batch_size, epoch)  # [steps, B]
      for step in range(start_step, plan.shape[0]):    # resume: same (key, epoch) -> same order
        key = jax.random.fold_in(jax.random.fold_in(aug_key, epoch), step)
        state = train_step(state, x_all, y_all, plan[step], key)

    idx, mask = data.eval_indices(ds.num_test, config.eval_batch_size)  # every test example once
    # correct = sum over batches of sum(mask[b] * (argmax(logits(jnp.take(x_test, idx[b], 0))) == y))

ImageNet is streamed: ``imagenet_dataset(imagenet_source("train"), train=True, ...)`` (see
:mod:`extremeq.data.imagenet`).

Nothing here imports tensorflow_datasets, grain or scikit-learn at module level.
"""

from extremeq.data.augment import augment_batch, augment_params, normalize, random_crop, random_flip
from extremeq.data.batching import epoch_indices, eval_indices, num_train_steps
from extremeq.data.checks import DataError
from extremeq.data.image_folder import ImageFolderError, default_cifar10_path, load_cifar10, load_image_folder
from extremeq.data.imagenet import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    imagenet_dataset,
    imagenet_iterator,
    imagenet_source,
    process_shard,
)
from extremeq.data.sources import (
    DATASET_NAMES,
    ArrayDataset,
    default_mnist_path,
    load_arrays,
    load_digits,
    load_from_config,
    load_npz,
)
from extremeq.data.tfds_arrays import DatasetNotPreparedError, load_tfds_arrays
