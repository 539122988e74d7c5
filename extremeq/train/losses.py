"""Training losses, per example and as batch means.

* cross-entropy: -log softmax(z_i)[y_i];
* squared hinge (BinaryConnect / BinaryNet's L2-SVM output; Courbariaux et al. 2015, Sec. 3.1;
  Tang 2013): mean_k max(0, 1 - t_ik z_ik)^2 with t_ik = +1 for k = y_i and -1 otherwise.

``config.loss`` names one of ``LOSSES``; evaluation sums ``PER_EXAMPLE_LOSSES`` over the unmasked rows.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def cross_entropy_per_example(logits, labels):
    """-log softmax(logits_i)[labels_i], one value per row."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return -jnp.take_along_axis(logp, labels[:, None].astype(jnp.int32), axis=-1)[:, 0]


def cross_entropy(logits, labels):
    """mean_i -log softmax(logits_i)[labels_i]."""
    return jnp.mean(cross_entropy_per_example(logits, labels))


def squared_hinge_per_example(outputs, labels):
    """mean_k max(0, 1 - t_ik z_ik)^2 with t_ik = +1 for k = y_i and -1 otherwise, one value per row."""
    z = outputs.astype(jnp.float32)
    t = 2.0 * jax.nn.one_hot(labels, z.shape[-1], dtype=jnp.float32) - 1.0
    return jnp.mean(jnp.square(jnp.maximum(0.0, 1.0 - t * z)), axis=-1)


def squared_hinge(outputs, labels):
    """BinaryConnect / BinaryNet's L2-SVM loss: mean_{i,k} max(0, 1 - t_ik z_ik)^2 with targets
    t_ik = +1 for k = y_i and -1 otherwise (Courbariaux et al. 2015, Sec. 3.1; Tang 2013)."""
    return jnp.mean(squared_hinge_per_example(outputs, labels))


LOSSES = {"cross_entropy": cross_entropy, "squared_hinge": squared_hinge}
PER_EXAMPLE_LOSSES = {"cross_entropy": cross_entropy_per_example, "squared_hinge": squared_hinge_per_example}
