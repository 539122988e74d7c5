"""Knowledge distillation (Hinton, Vinyals, Dean 2015, "Distilling the Knowledge in a Neural Network").

With student logits z_s, teacher logits z_t, label y, temperature T and weight lambda (``alpha``):

    p_t = softmax(z_t / T),  log p_s = log_softmax(z_s / T)
    L   = CE(z_s, y) + lambda * T^2 * KL(p_t || p_s)
        = -log softmax(z_s)_y + lambda * T^2 * sum_k p_t,k (log p_t,k - log p_s,k)

averaged over the batch. The T^2 factor keeps the soft term's gradient magnitude independent of T
(Hinton et al., Sec. 2). The teacher is not differentiated (``stop_gradient``).
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


def kl_divergence_soft(student_logits, teacher_logits, temperature):
    """mean_i KL(softmax(z_t,i / T) || softmax(z_s,i / T))."""
    log_pt = jax.nn.log_softmax(teacher_logits.astype(jnp.float32) / temperature, axis=-1)
    log_ps = jax.nn.log_softmax(student_logits.astype(jnp.float32) / temperature, axis=-1)
    return jnp.mean(jnp.sum(jnp.exp(log_pt) * (log_pt - log_ps), axis=-1))


def distillation_loss(student_logits, teacher_logits, labels, *, alpha, temperature):
    """CE(z_s, y) + alpha * T^2 * KL(softmax(z_t/T) || softmax(z_s/T)); see the module docstring."""
    teacher_logits = jax.lax.stop_gradient(teacher_logits)
    return cross_entropy(student_logits, labels) + alpha * temperature**2 * kl_divergence_soft(
        student_logits, teacher_logits, temperature
    )
