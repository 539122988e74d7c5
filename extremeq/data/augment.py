"""On-device augmentation for data sets held whole in device memory (run inside ``jax.jit``).

CIFAR-style augmentation (He et al., 2016, "Deep Residual Learning", Sec. 4.2): pad each side of the
image by ``p`` pixels with zeros, take a random ``H x W`` crop, flip horizontally with probability
1/2, then normalise per channel:

    x_aug[i, h, w, c] = pad(x)[i, h + dy_i, w' , c],  w' = (W - 1 - w + dx_i) if flip_i else (w + dx_i)
    normalize(x)      = (x / 255 - mean_c) / std_c

with ``dy_i, dx_i ~ U{0, ..., 2p}`` and ``flip_i ~ Bernoulli(1/2)``. The zero padding is applied to
the raw 0..255 pixels, before normalisation (as torchvision's ``RandomCrop(padding=p)`` on PIL
images does), so padded pixels become ``-mean/std``.

The random draws come from :func:`augment_params` alone, so a test (or a user) can recompute exactly
which crop and flip an example received from the key.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp


def normalize(images: jax.Array, mean: Sequence[float], std: Sequence[float]) -> jax.Array:
    """``(images / 255 - mean) / std`` per channel (last axis) in float32.

    ``images`` are uint8 (or float) pixels in 0..255; ``mean`` and ``std`` are in units of 1/255
    (e.g. MNIST: 0.1307, 0.3081), one value per channel or a single value for all channels.
    """
    mean = jnp.asarray(mean, jnp.float32)
    std = jnp.asarray(std, jnp.float32)
    return (images.astype(jnp.float32) / 255.0 - mean) / std


def augment_params(key: jax.Array, batch_size: int, *, crop_padding: int, flip: bool):
    """The random draws of :func:`augment_batch`: ``(dy, dx, do_flip)``, each of shape ``[batch]``.

    ``dy, dx`` are int32 crop offsets into the padded image, uniform on ``{0, ..., 2 * crop_padding}``;
    ``do_flip`` is a bool, Bernoulli(1/2) when ``flip`` else all False.
    """
    k_y, k_x, k_f = jax.random.split(key, 3)
    hi = 2 * crop_padding + 1
    dy = jax.random.randint(k_y, (batch_size,), 0, hi, dtype=jnp.int32)
    dx = jax.random.randint(k_x, (batch_size,), 0, hi, dtype=jnp.int32)
    if flip:
        do_flip = jax.random.bernoulli(k_f, 0.5, (batch_size,))
    else:
        do_flip = jnp.zeros((batch_size,), jnp.bool_)
    return dy, dx, do_flip


def random_crop(images: jax.Array, dy: jax.Array, dx: jax.Array, crop_padding: int) -> jax.Array:
    """Zero-pads NHWC ``images`` by ``crop_padding`` on each side of H and W and crops
    ``pad(x)[i, dy_i : dy_i + H, dx_i : dx_i + W]`` per example."""
    if crop_padding == 0:
        return images
    n, h, w, c = images.shape
    p = crop_padding
    padded = jnp.pad(images, ((0, 0), (p, p), (p, p), (0, 0)))

    def crop_one(img, oy, ox):
        return jax.lax.dynamic_slice(img, (oy, ox, 0), (h, w, c))

    return jax.vmap(crop_one)(padded, dy, dx)


def random_flip(images: jax.Array, do_flip: jax.Array) -> jax.Array:
    """Reverses the W axis of NHWC ``images[i]`` where ``do_flip[i]``."""
    return jnp.where(do_flip[:, None, None, None], images[:, :, ::-1, :], images)


def augment_batch(
    key: jax.Array,
    images: jax.Array,
    *,
    crop_padding: int = 4,
    flip: bool = True,
    mean: Sequence[float] = (0.0,),
    std: Sequence[float] = (1.0,),
) -> jax.Array:
    """Random crop (zero pad ``crop_padding``), random horizontal flip, then :func:`normalize`.

    Args:
      key: PRNG key for this batch (e.g. ``jax.random.fold_in(epoch_key, step)``).
      images: NHWC uint8 (or float) pixels in 0..255.
      crop_padding: pixels of zero padding per side; 0 disables the crop.
      flip: whether to flip horizontally with probability 1/2.
      mean, std: per-channel statistics in units of 1/255 (``ArrayDataset.mean`` / ``.std``).

    Returns:
      float32 images of the input's shape.
    """
    dy, dx, do_flip = augment_params(key, images.shape[0], crop_padding=crop_padding, flip=flip)
    x = random_crop(images, dy, dx, crop_padding)
    if flip:
        x = random_flip(x, do_flip)
    return normalize(x, mean, std)
