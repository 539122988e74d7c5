"""Batch index plans for data sets held whole in device memory.

Training: one permutation per epoch, ``perm_e = permutation(fold_in(key, epoch), N)``, cut into
``N // batch_size`` full batches (the remainder is dropped). The order depends only on
``(key, epoch)``, so a run resumed at epoch ``e``, step ``s`` replays ``epoch_indices(key, N, B, e)[s:]``
exactly as the uninterrupted run would have.

Evaluation: the indices ``0..N-1`` in order, padded to a whole number of batches with index 0 and a
``mask`` that is False on the padding, so every test example is counted exactly once:
``accuracy = sum(mask * correct) / sum(mask)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def num_train_steps(num_examples: int, batch_size: int) -> int:
    """Full batches per epoch: ``num_examples // batch_size``."""
    return num_examples // batch_size


def epoch_indices(key: jax.Array, num_examples: int, batch_size: int, epoch) -> jax.Array:
    """int32 ``[num_examples // batch_size, batch_size]``: the shuffled batches of one epoch.

    Row ``s`` holds the example indices of step ``s``; each index appears at most once per epoch
    (exactly once when ``batch_size`` divides ``num_examples``). ``epoch`` may be traced; the shapes
    depend only on ``num_examples`` and ``batch_size``.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}.")
    steps = num_examples // batch_size
    if steps == 0:
        raise ValueError(
            f"batch_size {batch_size} exceeds the {num_examples} training examples; lower "
            "config.batch_size or raise config.dataset.limit_train."
        )
    perm = jax.random.permutation(jax.random.fold_in(key, epoch), num_examples)
    return perm[: steps * batch_size].reshape(steps, batch_size).astype(jnp.int32)


def eval_indices(num_examples: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(idx, mask)``: int32 and bool ``[ceil(N / batch_size), batch_size]`` covering ``0..N-1`` once.

    ``idx`` is ``0..N-1`` in order, padded with 0 (a valid index, so ``jnp.take`` needs no clamping);
    ``mask`` is True on real examples, False on padding.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}.")
    steps = -(-num_examples // batch_size)
    flat = np.arange(steps * batch_size, dtype=np.int32)
    mask = flat < num_examples
    idx = np.where(mask, flat, 0).astype(np.int32)
    return idx.reshape(steps, batch_size), mask.reshape(steps, batch_size)
