"""Epoch shuffling and eval batching."""

import jax
import numpy as np
import pytest

from extremeq import data


def test_epoch_indices_is_a_permutation_when_batch_divides():
    idx = np.asarray(data.epoch_indices(jax.random.key(0), 96, 8, 0))
    assert idx.shape == (12, 8) and idx.dtype == np.int32
    np.testing.assert_array_equal(np.sort(idx.ravel()), np.arange(96))


def test_epoch_indices_drops_remainder_without_repeats():
    idx = np.asarray(data.epoch_indices(jax.random.key(0), 100, 8, 3))
    assert idx.shape == (12, 8)
    flat = idx.ravel()
    assert len(np.unique(flat)) == 96 and flat.min() >= 0 and flat.max() < 100
    assert data.num_train_steps(100, 8) == 12


def test_epoch_indices_deterministic_per_key_and_epoch():
    key = jax.random.key(42)
    e0 = np.asarray(data.epoch_indices(key, 64, 16, 0))
    e1 = np.asarray(data.epoch_indices(key, 64, 16, 1))
    np.testing.assert_array_equal(e0, np.asarray(data.epoch_indices(key, 64, 16, 0)))
    # A resumed run (fresh key object from the same seed) replays the same order.
    np.testing.assert_array_equal(e1, np.asarray(data.epoch_indices(jax.random.key(42), 64, 16, 1)))
    assert not np.array_equal(e0, e1)
    assert not np.array_equal(e0, np.asarray(data.epoch_indices(jax.random.key(7), 64, 16, 0)))
    # The order is the permutation drawn from fold_in(key, epoch), cut into rows.
    perm = np.asarray(jax.random.permutation(jax.random.fold_in(key, 1), 64))
    np.testing.assert_array_equal(e1.ravel(), perm)


def test_epoch_indices_under_jit_with_traced_epoch():
    f = jax.jit(data.epoch_indices, static_argnums=(1, 2))
    key = jax.random.key(5)
    np.testing.assert_array_equal(np.asarray(f(key, 50, 10, 2)), np.asarray(data.epoch_indices(key, 50, 10, 2)))


@pytest.mark.parametrize("n,b", [(10, 4), (12, 4), (3, 8), (1, 1)])
def test_eval_indices_cover_each_example_once(n, b):
    idx, mask = data.eval_indices(n, b)
    assert idx.shape == mask.shape == (-(-n // b), b)
    assert idx.dtype == np.int32 and mask.dtype == np.bool_
    counts = np.bincount(idx[mask], minlength=n)
    np.testing.assert_array_equal(counts, np.ones(n))
    assert mask.sum() == n and (idx >= 0).all() and (idx < n).all()
    np.testing.assert_array_equal(idx[mask], np.arange(n))


def test_masked_eval_accuracy_matches_direct_count():
    rng = np.random.default_rng(0)
    preds, labels = rng.integers(0, 3, 23), rng.integers(0, 3, 23)
    idx, mask = data.eval_indices(23, 5)
    correct = sum(((preds[i] == labels[i]) * m).sum() for i, m in zip(idx, mask))
    assert correct == (preds == labels).sum()


def test_batching_errors_are_clear():
    with pytest.raises(ValueError, match="exceeds"):
        data.epoch_indices(jax.random.key(0), 5, 8, 0)
    with pytest.raises(ValueError, match="positive"):
        data.eval_indices(5, 0)
