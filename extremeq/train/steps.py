"""The jitted steps: one optimizer step, the evaluation of a batch, the quantization statistics.

Each takes the state or variables and arrays, and, as keyword arguments, the static pieces it needs
(``ModelSpec``, ``OptimizerSpec``, ``Inputs``, ``Objective``: frozen, hashable by value), so
``jax.jit(functools.partial(train_step, model=..., ...))`` closes over them.

Data parallelism: a 1-D ``jax.sharding.Mesh`` over the devices (axis ``"data"``); the batch is
sharded along it, parameters and optimizer state are replicated, and XLA inserts the gradient
all-reduce (and batch-norm statistics are those of the global batch, as on one device).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from extremeq import optim
from extremeq.train.distill import distillation_loss
from extremeq.train.losses import LOSSES, PER_EXAMPLE_LOSSES
from extremeq.train.model import ModelSpec, merge_model, split_model
from extremeq.train.state import OptimizerSpec, TrainState, kernel_signs


@dataclasses.dataclass(frozen=True)
class Inputs:
    """How a batch of uint8 images reaches the model: sharded over ``mesh``, normalized by
    ``(x/255 - mean) / std``, augmented on the device (in-memory data) or not (``streamed``: the
    host pipeline crops and flips)."""

    mesh: Mesh
    mean: tuple = (0.0,)
    std: tuple = (1.0,)
    crop_padding: int = 0
    flip: bool = False
    streamed: bool = False

    @classmethod
    def from_config(cls, config, mesh, mean=(0.0,), std=(1.0,), streamed=False) -> "Inputs":
        """``mean``/``std``: the data set's statistics (used when ``config.dataset.normalize``)."""
        if not config.dataset.normalize:
            mean, std = (0.0,), (1.0,)
        a = config.dataset.augment
        return cls(mesh, tuple(mean), tuple(std), int(a.crop_padding), bool(a.flip), streamed)

    @property
    def batch_sharding(self):
        return NamedSharding(self.mesh, P("data"))

    @property
    def replicated(self):
        return NamedSharding(self.mesh, P())


@dataclasses.dataclass(frozen=True)
class Objective:
    """The training loss: ``config.loss``, or the distillation loss when a teacher is given."""

    loss: str = "cross_entropy"  # a key of extremeq.train.losses.LOSSES
    teacher_graphdef: Any = None
    alpha: float = 0.0
    temperature: float = 1.0

    @classmethod
    def from_config(cls, config, teacher_graphdef=None) -> "Objective":
        return cls(
            loss=config.loss,
            teacher_graphdef=teacher_graphdef,
            alpha=float(config.distill.alpha),
            temperature=float(config.distill.temperature),
        )


def make_mesh(num_devices: int = -1) -> Mesh:
    """A 1-D mesh (axis ``"data"``) over the first ``num_devices`` devices (-1: all)."""
    devices = jax.devices()
    if num_devices > 0:
        devices = devices[:num_devices]
    return Mesh(np.asarray(devices), ("data",))


def _preprocess(inputs: Inputs, images, key):
    from extremeq.data import augment_batch, normalize  # pylint: disable=g-import-not-at-top

    if inputs.streamed:
        return normalize(images, inputs.mean, inputs.std)
    return augment_batch(
        key, images, mean=inputs.mean, std=inputs.std, crop_padding=inputs.crop_padding, flip=inputs.flip
    )


def train_step(
    state: TrainState,
    images,
    labels,
    key,
    teacher_vars,
    *,
    model: ModelSpec,
    optimizer: OptimizerSpec,
    inputs: Inputs,
    objective: Objective,
) -> TrainState:
    """One optimizer step on a (sharded) batch of uint8 images.

    loss = L(f(x), y) with L = config.loss, or the distillation loss (extremeq.train.distill) when a
    teacher is given; params <- clip_latent(apply_updates(params, tx(grad))) (BinaryConnect's clip
    on the layers whose spec asks for it).
    """
    images = jax.lax.with_sharding_constraint(images, inputs.batch_sharding)
    labels = jax.lax.with_sharding_constraint(labels, inputs.batch_sharding)
    x = _preprocess(inputs, images, key)
    teacher_logits = None
    if objective.teacher_graphdef is not None:
        teacher = merge_model(objective.teacher_graphdef, teacher_vars["params"], teacher_vars["model_state"])
        teacher.eval()
        teacher_logits = jax.lax.stop_gradient(teacher(x, train=False))

    def loss_fn(params):
        net = merge_model(model.graphdef, params, state.model_state)
        net.train()
        logits = net(x, train=True)
        if teacher_logits is None:
            loss = LOSSES[objective.loss](logits, labels)
        else:
            loss = distillation_loss(
                logits, teacher_logits, labels, alpha=objective.alpha, temperature=objective.temperature
            )
        _, _, new_model_state = split_model(net)
        return loss, (logits, new_model_state)

    tx, opt_labels = optimizer.transform(state.params)
    (loss, (logits, model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    params = optim.clip_latent(params, optimizer.clip_mask(params, opt_labels))
    s = state.sums
    bad = (s["nonfinite_step"] < 0) & ~jnp.isfinite(loss)
    sums = {
        "loss": s["loss"] + loss,
        "correct": s["correct"] + jnp.sum(jnp.argmax(logits, -1) == labels).astype(jnp.int32),
        "count": s["count"] + labels.shape[0],
        "nonfinite_step": jnp.where(bad, state.step, s["nonfinite_step"]),
    }
    return state.replace(step=state.step + 1, params=params, model_state=model_state, opt_state=opt_state, sums=sums)


def step_example_ids(plan, step, *, steps_per_epoch: int, inputs: Inputs):
    """The example indices of global step ``step``: row ``step mod steps_per_epoch`` of the epoch's
    ``plan``, sharded along ``"data"``, so that device ``d`` of ``D`` gathers only rows
    ``[d B/D, (d+1) B/D)`` of the batch and each process only the rows of its own devices."""
    i = step % steps_per_epoch
    idx = jax.lax.dynamic_index_in_dim(plan, i, axis=0, keepdims=False)
    return jax.lax.with_sharding_constraint(idx, inputs.batch_sharding)


def in_memory_train_step(state, x_all, y_all, plan, aug_key, teacher_vars, **static) -> TrainState:
    """Gathers step ``i = step mod steps_per_epoch`` of the epoch's ``plan`` from the device-resident
    data set, with augmentation key ``fold_in(fold_in(aug_key, epoch), i)``, and runs ``train_step``
    (``static``: its keyword arguments).

    (Keys are arguments, not closure constants, so the compiled step does not depend on the seed.)"""
    epoch, i = jnp.divmod(state.step, static["optimizer"].steps_per_epoch)
    idx = step_example_ids(
        plan, state.step, steps_per_epoch=static["optimizer"].steps_per_epoch, inputs=static["inputs"]
    )
    key = jax.random.fold_in(jax.random.fold_in(aug_key, epoch), i)
    images = jnp.take(x_all, idx, axis=0)
    labels = jnp.take(y_all, idx, axis=0)
    return train_step(state, images, labels, key, teacher_vars, **static)


def eval_step(model_vars, images, labels, mask, *, model: ModelSpec, inputs: Inputs, loss: str):
    """(sum of per-example losses, number correct, number of examples) over the unmasked batch rows;
    the loss is the run's ``config.loss`` (cross-entropy, or the squared hinge averaged over classes)."""
    from extremeq.data import normalize  # pylint: disable=g-import-not-at-top

    images = jax.lax.with_sharding_constraint(images, inputs.batch_sharding)
    x = normalize(images, inputs.mean, inputs.std)
    net = merge_model(model.graphdef, model_vars["params"], model_vars["model_state"])
    net.eval()
    logits = net(x, train=False).astype(jnp.float32)
    nll = PER_EXAMPLE_LOSSES[loss](logits, labels)
    m = mask.astype(jnp.float32)
    correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32) * m
    return jnp.sum(nll * m), jnp.sum(correct), jnp.sum(m)


def evaluate_in_memory(model_vars, x_all, y_all, idx, mask, **static):
    """eval_step scanned over the rows of ``idx``/``mask`` (extremeq.data.eval_indices)."""

    def body(carry, inp):
        b_idx, b_mask = inp
        out = eval_step(model_vars, jnp.take(x_all, b_idx, 0), jnp.take(y_all, b_idx, 0), b_mask, **static)
        return jax.tree_util.tree_map(jnp.add, carry, out), None

    zero = (jnp.zeros((), jnp.float32),) * 3
    sums, _ = jax.lax.scan(body, zero, (idx, mask))
    return sums


def quant_stats(state: TrainState, *, model: ModelSpec):
    """flip_ratio, ternary_sparsity, and <scale>_mean for each learned scale (TTQ: ttq_wp_mean,
    ttq_wn_mean; see extremeq.train.metrics)."""
    out = {}
    if model.binary_kernels:
        signs = kernel_signs(state.params, model.binary_kernels)
        flips = sum(jnp.sum(signs[p] != state.epoch_signs[p]) for p in model.binary_kernels)
        total = sum(signs[p].size for p in model.binary_kernels)
        out["flip_ratio"] = flips / total
    if model.ternary_layers or model.learned_scales:
        from extremeq.nn import quant_layers  # pylint: disable=g-import-not-at-top

        net = merge_model(model.graphdef, state.params, state.model_state)
        net.eval()
        layers = dict(quant_layers(net))
        if model.ternary_layers:
            zeros, total = 0, 0
            for p in model.ternary_layers:
                q = layers[p].quantized_kernel()
                zeros += jnp.sum(q == 0)
                total += q.size
            out["ternary_sparsity"] = zeros / total
        per_name: dict = {}
        for p, names in model.learned_scales:
            scales = layers[p].learned_scales()
            for name in names:
                per_name.setdefault(name, []).append(jnp.mean(scales[name]))
        for name, means in per_name.items():
            out[f"{name}_mean"] = jnp.mean(jnp.stack(means))
    return out
