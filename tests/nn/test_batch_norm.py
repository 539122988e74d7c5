"""BatchNorm statistics re-estimation (extremeq.nn.batch_norm) against NumPy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from extremeq.nn.batch_norm import batch_norm_layers, recalibrate_batch_norm


class _Net(nnx.Module):
    def __init__(self, rngs):
        self.dense = nnx.Linear(5, 4, rngs=rngs)
        self.bn = nnx.BatchNorm(4, momentum=0.9, rngs=rngs)
        self.out = nnx.Linear(4, 3, rngs=rngs)
        self.bn2 = nnx.BatchNorm(3, momentum=0.9, rngs=rngs)

    def __call__(self, x, train=False):
        del train
        return self.bn2(self.out(jax.nn.relu(self.bn(self.dense(x)))))


def test_recalibrate_sets_the_average_of_the_batch_statistics():
    """mu_c = mean over batches of the batch means, sigma_c^2 = mean of the (biased) batch variances,
    of each layer's pre-BN activations (the second layer's computed with the first's batch normalization,
    as the training forward does); momentum and the learned scale/bias are left as they were."""
    net = _Net(nnx.Rngs(0))
    net.bn.scale[...] = jnp.asarray([1.0, 2.0, 0.5, 1.5])
    net.bn.bias[...] = jnp.asarray([0.1, -0.2, 0.3, 0.0])
    rng = np.random.default_rng(0)
    batches = [rng.normal(loc=3.0, scale=2.0, size=(16, 5)).astype(np.float32) for _ in range(3)]
    w1, b1 = np.asarray(net.dense.kernel[...]), np.asarray(net.dense.bias[...])
    w2, b2 = np.asarray(net.out.kernel[...]), np.asarray(net.out.bias[...])
    g, beta, eps = np.asarray(net.bn.scale[...]), np.asarray(net.bn.bias[...]), net.bn.epsilon
    m1, v1, m2, v2 = [], [], [], []
    for x in batches:
        h = x @ w1 + b1
        m1.append(h.mean(0))
        v1.append(h.var(0))
        a = np.maximum((h - h.mean(0)) / np.sqrt(h.var(0) + eps) * g + beta, 0) @ w2 + b2
        m2.append(a.mean(0))
        v2.append(a.var(0))
    assert recalibrate_batch_norm(net, iter(batches), train=True) == 3
    np.testing.assert_allclose(net.bn.mean[...], np.mean(m1, 0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(net.bn.var[...], np.mean(v1, 0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(net.bn2.mean[...], np.mean(m2, 0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(net.bn2.var[...], np.mean(v2, 0), rtol=1e-4, atol=1e-5)
    assert net.bn.momentum == 0.9 and net.bn2.momentum == 0.9
    np.testing.assert_array_equal(net.bn.scale[...], g)
    assert len(batch_norm_layers(net)) == 2


def test_recalibrate_errors_name_the_problem():
    with pytest.raises(ValueError, match="no nnx.BatchNorm"):
        recalibrate_batch_norm(nnx.Linear(2, 2, rngs=nnx.Rngs(0)), [np.zeros((2, 2), np.float32)])
    with pytest.raises(ValueError, match="no batches"):
        recalibrate_batch_norm(_Net(nnx.Rngs(0)), [])
