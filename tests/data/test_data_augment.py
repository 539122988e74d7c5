"""On-device augmentation against NumPy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from extremeq import data


def _images(n=6, h=8, w=8, c=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, c), dtype=np.uint8)


def _numpy_augment(x, dy, dx, do_flip, p, mean, std):
    n, h, w, _ = x.shape
    padded = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    out = np.empty(x.shape, np.float64)
    for i in range(n):
        crop = padded[i, dy[i] : dy[i] + h, dx[i] : dx[i] + w]
        if do_flip[i]:
            crop = crop[:, ::-1]
        out[i] = (crop / 255.0 - np.asarray(mean)) / np.asarray(std)
    return out


def test_normalize_closed_form():
    x = _images(c=3)
    mean, std = (0.1, 0.5, 0.9), (0.2, 0.3, 0.4)
    got = np.asarray(data.normalize(jnp.asarray(x), mean, std))
    assert got.dtype == np.float32
    want = (x.astype(np.float64) / 255.0 - np.array(mean)) / np.array(std)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    # Known points: pixel 255 * mean maps to 0, pixel 255 * (mean + std) maps to 1.
    one = np.asarray(data.normalize(jnp.array([[[[51.0]]]]), (0.2,), (0.1,)))
    two = np.asarray(data.normalize(jnp.array([[[[76.5]]]]), (0.2,), (0.1,)))
    np.testing.assert_allclose([one.item(), two.item()], [0.0, 1.0], atol=1e-5)


@pytest.mark.parametrize("p,flip", [(4, True), (2, False), (0, True)])
def test_augment_matches_numpy_slicing(p, flip):
    x = _images(n=16, h=8, w=8, c=3)
    key = jax.random.key(3)
    mean, std = (0.3, 0.4, 0.5), (0.25, 0.2, 0.3)
    got = np.asarray(
        jax.jit(lambda k, im: data.augment_batch(k, im, crop_padding=p, flip=flip, mean=mean, std=std))(
            key, jnp.asarray(x)
        )
    )
    dy, dx, do_flip = map(np.asarray, data.augment_params(key, 16, crop_padding=p, flip=flip))
    assert dy.min() >= 0 and dy.max() <= 2 * p and dx.min() >= 0 and dx.max() <= 2 * p
    if not flip:
        assert not do_flip.any()
    want = _numpy_augment(x, dy, dx, do_flip, p, mean, std)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_augment_params_cover_range_and_flip_half():
    dy, dx, do_flip = map(np.asarray, data.augment_params(jax.random.key(0), 4000, crop_padding=4, flip=True))
    assert set(np.unique(dy)) == set(range(9)) and set(np.unique(dx)) == set(range(9))
    # Bernoulli(1/2) over 4000 draws: 5 sigma is about 0.04.
    assert abs(do_flip.mean() - 0.5) < 0.04
    assert abs(dy.mean() - 4.0) < 0.2


def test_flip_exact_and_crop_identity_at_center():
    x = _images(n=3)
    flipped = np.asarray(data.random_flip(jnp.asarray(x), jnp.array([True, False, True])))
    np.testing.assert_array_equal(flipped[0], x[0, :, ::-1])
    np.testing.assert_array_equal(flipped[1], x[1])
    np.testing.assert_array_equal(flipped[2], x[2, :, ::-1])
    center = np.asarray(data.random_crop(jnp.asarray(x), jnp.full((3,), 4), jnp.full((3,), 4), 4))
    np.testing.assert_array_equal(center, x)
    # Offset (0, 0) shifts the image down-right by p and fills the top-left border with zeros.
    corner = np.asarray(data.random_crop(jnp.asarray(x), jnp.zeros(3, int), jnp.zeros(3, int), 2))
    np.testing.assert_array_equal(corner[:, 2:, 2:], x[:, :-2, :-2])
    assert (corner[:, :2] == 0).all() and (corner[:, :, :2] == 0).all()


def test_augment_is_deterministic_in_key_and_takes_gathered_batch():
    x_all = jnp.asarray(_images(n=20))
    idx = jnp.array([3, 7, 11, 19], jnp.int32)

    @jax.jit
    def step(x_all, idx, key):
        return data.augment_batch(
            key, jnp.take(x_all, idx, axis=0), crop_padding=4, flip=True, mean=(0.5,), std=(0.25,)
        )

    a = np.asarray(step(x_all, idx, jax.random.key(1)))
    b = np.asarray(step(x_all, idx, jax.random.key(1)))
    c = np.asarray(step(x_all, idx, jax.random.key(2)))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.shape == (4, 8, 8, 3) and a.dtype == np.float32
