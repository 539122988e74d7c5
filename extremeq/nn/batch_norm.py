"""BatchNorm statistics re-estimated for a model whose weights changed (post-training quantization,
fine-tuning a quantized model from a float one).

A trained float network's BatchNorm layers hold running estimates of each channel's pre-activation
mean and variance, mu_c and sigma_c^2 (Ioffe & Szegedy 2015, Alg. 2). Replacing the weights W by
their quantized values Q(W) changes those pre-activations: with a per-tensor scale (TTQ's W_p / W_n,
TWN's alpha, BWN's mean|W|) each output channel c of a layer is rescaled by roughly
||Q(W_c)|| / ||W_c||, a factor that differs from channel to channel, and the error of one layer shifts
the inputs of every later one. The stored mu_c, sigma_c then no longer standardize the channels, and
a net that was accurate can sit at chance before any step (a 2-epoch VGG-small at 71% on CIFAR-10
gives 10.7% right after TTQ ternarization, 62% after this re-estimation on 20 batches of 128).
Re-estimating the statistics on a few training batches with the quantized weights, as BatchNorm's
inference step prescribes for the network being evaluated (Ioffe & Szegedy 2015, Alg. 2, step 10:
the population statistics of the network as it is), restores that standardization.

    recalibrate_batch_norm(model, batches, **call_kwargs)
        mu_c      <- (1/K) sum_k mean_c(batch k)
        sigma_c^2 <- (1/K) sum_k var_c(batch k)
"""

from __future__ import annotations

from collections.abc import Iterable

import jax.numpy as jnp
from flax import nnx


def batch_norm_layers(model) -> list:
    """The ``nnx.BatchNorm`` modules of ``model``, in graph order."""
    return [m for _, m in nnx.iter_modules(model) if isinstance(m, nnx.BatchNorm)]


def recalibrate_batch_norm(model, batches: Iterable, **call_kwargs) -> int:
    """Sets every BatchNorm layer's running mean and variance of ``model`` (in place) to the average,
    over ``batches``, of the batch statistics the training forward ``model(x, **call_kwargs)``
    computes (``call_kwargs``: e.g. ``train=True`` for the zoo models). Everything else (weights,
    BatchNorm's scale and bias, momentum) is left as it was. Returns the number of batches used.

    Raises ValueError when ``model`` has no BatchNorm layer or ``batches`` is empty.
    """
    layers = batch_norm_layers(model)
    if not layers:
        raise ValueError("recalibrate_batch_norm: the model has no nnx.BatchNorm layer to re-estimate")
    momenta = [m.momentum for m in layers]
    sums, count = None, 0
    try:
        for m in layers:
            m.momentum = 0.0  # the running statistics become this batch's statistics
        model.train()
        for x in batches:
            model(x, **call_kwargs)
            stats = [(m.mean[...], m.var[...]) for m in layers]
            sums = stats if sums is None else [(a + mu, b + var) for (a, b), (mu, var) in zip(sums, stats)]
            count += 1
    finally:
        for m, momentum in zip(layers, momenta):
            m.momentum = momentum
    if count == 0:
        raise ValueError("recalibrate_batch_norm: no batches given; pass at least one batch of inputs")
    for m, (a, b) in zip(layers, sums):
        m.mean[...] = jnp.asarray(a / count, m.mean[...].dtype)
        m.var[...] = jnp.asarray(b / count, m.var[...].dtype)
    return count
