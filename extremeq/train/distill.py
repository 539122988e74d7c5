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

from extremeq.train.losses import cross_entropy


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
