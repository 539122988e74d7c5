"""Training and evaluation loop (the shape of google/flax ``examples/imagenet/train.py``).

    train_and_evaluate(config, workdir)
      create_model        config.model -> zoo model -> precision policy from config.quant
      create_train_state  params, model state (BN statistics, RNG streams), optax state
      train_step          one SGD/Adam/Bop step, jitted, data parallel over the local devices
      eval_step           test loss and accuracy over the whole test set, jitted

Data parallelism: a 1-D ``jax.sharding.Mesh`` over all devices (axis ``"data"``); the batch is
sharded along it, parameters and optimizer state are replicated, and XLA inserts the gradient
all-reduce (and batch-norm statistics are those of the global batch, as on one device).

Determinism and exact resume: the data order of epoch ``e`` is ``permutation(fold_in(k_shuffle,
e))`` and the augmentation key of step ``i`` of epoch ``e`` is ``fold_in(fold_in(k_aug, e), i)``,
pure functions of (seed, epoch, step); everything else that changes (parameters, optimizer state,
BN statistics, dropout RNG counters, the epoch's metric sums and the sign snapshot for the flip
ratio) lives in :class:`TrainState` and is checkpointed, so a run stopped after any step and resumed
computes what the uninterrupted run computes, bit for bit on CPU.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
import os
import signal
import time
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from extremeq import optim
from extremeq.train import checkpoint as ckpt_lib
from extremeq.train import config as config_lib
from extremeq.train import metrics as metrics_lib
from extremeq.train.distill import LOSSES, PER_EXAMPLE_LOSSES, distillation_loss


# ------------------------------------------------------------------ state
@flax.struct.dataclass
class TrainState:
    """Everything a step reads and writes (a pytree, checkpointed whole).

    params / model_state: the model's ``nnx.Param`` and other variables as pure dicts;
    epoch_signs: {kernel path: w >= 0} of the binary kernels at the start of the epoch;
    sums: the epoch's running loss sum, correct count, example count, and the first step
    whose loss was not finite (-1 if none).
    """

    step: jax.Array
    params: Any
    model_state: Any
    opt_state: Any
    epoch_signs: Any
    sums: Any

    def model_vars(self):
        return {"params": self.params, "model_state": self.model_state}

    def train_vars(self):
        return {"step": self.step, "opt_state": self.opt_state, "epoch_signs": self.epoch_signs,
                "sums": self.sums}


@dataclasses.dataclass(frozen=True)
class Context:
    """The static side of training (hashable by identity, closed over by the jitted steps)."""

    graphdef: Any
    tx: optax.GradientTransformation
    lr_schedule: Any
    clip_mask: Any
    binary_kernels: tuple
    ternary_layers: tuple
    ttq_layers: tuple
    steps_per_epoch: int
    mesh: Mesh
    augment: dict
    mean: tuple
    std: tuple
    shuffle_key: Any
    aug_key: Any
    teacher_graphdef: Any = None
    distill_alpha: float = 0.0
    distill_temperature: float = 1.0
    streamed: bool = False
    loss: str = "cross_entropy"  # a key of extremeq.train.distill.LOSSES

    @property
    def replicated(self):
        return NamedSharding(self.mesh, P())

    @property
    def batch_sharding(self):
        return NamedSharding(self.mesh, P("data"))

    __hash__ = object.__hash__
    __eq__ = object.__eq__


def _zero_sums():
    return {"loss": jnp.zeros((), jnp.float32), "correct": jnp.zeros((), jnp.int32),
            "count": jnp.zeros((), jnp.int32), "nonfinite_step": jnp.full((), -1, jnp.int32)}


def _flat(tree) -> dict:
    """{path string: leaf} of a pure-dict pytree."""
    return {optim.path_string(p): v for p, v in jax.tree_util.tree_leaves_with_path(tree)}


def _signs(params, binary_kernels):
    flat = _flat(params)
    return {p: flat[p] >= 0 for p in binary_kernels}


# ------------------------------------------------------------------ model
def build_quantized_model(config, num_classes: int, input_shape, init_vars=None):
    """Zoo model from ``config.model``, quantized by ``method_rules`` from ``config.quant``.

    ``init_vars`` ({"params", "model_state"} of an unquantized model of the same architecture, e.g.
    an FP run's checkpoint) is loaded before quantizing, so the quantized layers keep its weights.
    """
    from extremeq.nn import quantize_model  # pylint: disable=g-import-not-at-top
    from extremeq.nn.models import build_model  # pylint: disable=g-import-not-at-top

    try:
        model = build_model(config.model, num_classes, tuple(input_shape), nnx.Rngs(config.seed))
    except (TypeError, ValueError) as e:
        raise config_lib.ConfigError(f"config.model: {e}") from e
    if init_vars is not None:
        _load_vars(model, init_vars)
    quantize_model(model, quant_rules(config.quant), rngs=nnx.Rngs(config.seed, quant=config.seed + 1))
    return model


def quant_rules(q):
    """The precision rules of ``config.quant``: ``keep_fp`` patterns float, then the method's."""
    from extremeq.nn import method_rules  # pylint: disable=g-import-not-at-top

    keep = [(pattern, None) for pattern in q.get("keep_fp", ())]
    return keep + method_rules(q.method, first=q.first, last=q.last, ste=q.ste, stochastic_eval=q.stochastic_eval,
                               ste_kwargs=dict(q.ste_kwargs) or None, latent_init=q.get("latent_init", "keep"))


def _split(model):
    graphdef, params, model_state = nnx.split(model, nnx.Param, ...)
    return graphdef, nnx.to_pure_dict(params), nnx.to_pure_dict(model_state)


def _merge(graphdef, params, model_state):
    return nnx.merge(graphdef, nnx.State(params), nnx.State(model_state))


def _load_vars(model, model_vars):
    _, params, model_state = nnx.split(model, nnx.Param, ...)
    nnx.replace_by_pure_dict(params, model_vars["params"])
    nnx.replace_by_pure_dict(model_state, model_vars["model_state"])
    nnx.update(model, params, model_state)


def layer_groups(model):
    """(binary kernel paths, ternary layer paths, TTQ layer paths, clipped kernel paths)."""
    from extremeq.nn import quant_layers  # pylint: disable=g-import-not-at-top

    binary, ternary, ttq, clipped = [], [], [], []
    for path, layer in quant_layers(model):
        spec = layer.kernel_quantizer
        if spec.bits == 1:
            binary.append(f"{path}/kernel")
        if spec.bits == 2:
            ternary.append(path)
        if spec.name == "ttq":
            ttq.append(path)
        if spec.clip_latent:
            clipped.append(f"{path}/kernel")
    return tuple(binary), tuple(ternary), tuple(ttq), tuple(clipped)


def restore_model_vars(workdir: str, num_classes: int, input_shape):
    """(config, model, {"params", "model_state"}) of the latest checkpoint of a finished run."""
    cfg = config_lib.load_workdir_config(workdir)
    model = build_quantized_model(cfg, num_classes, input_shape)
    _, params, model_state = _split(model)
    template = {"params": params, "model_state": model_state}
    ckpt = ckpt_lib.Checkpointer(workdir, keep=cfg.checkpoint.keep)
    try:
        model_vars, _, _ = ckpt.restore(template)
    finally:
        ckpt.close()
    return cfg, model, model_vars


def create_model(config, num_classes: int, input_shape):
    """The model to train: built, optionally initialised from ``quant.init_from``, quantized."""
    if not config.quant.init_from:
        return build_quantized_model(config, num_classes, input_shape)
    src_cfg, src_model, src_vars = restore_model_vars(config.quant.init_from, num_classes, input_shape)
    if src_cfg.model.to_dict() != config.model.to_dict():
        raise config_lib.ConfigError(
            f"config.quant.init_from: {config.quant.init_from!r} trained model {src_cfg.model.to_dict()}, "
            f"but this config builds {config.model.to_dict()}; they must match"
        )
    _load_vars(src_model, src_vars)
    from extremeq.nn import quantize_model  # pylint: disable=g-import-not-at-top

    if config.quant.get("init_weights", "latent") == "quantized":
        from extremeq.nn.densify import densify_model  # pylint: disable=g-import-not-at-top

        densify_model(src_model)
    quantize_model(src_model, quant_rules(config.quant), rngs=nnx.Rngs(config.seed, quant=config.seed + 1))
    return src_model


# ------------------------------------------------------------ train state
def create_train_state(config, model, steps_per_epoch: int, mesh: Mesh, *, mean=(0.0,), std=(1.0,),
                       teacher_graphdef=None, streamed: bool = False):
    """(TrainState, Context) for ``model``; the state is replicated over ``mesh``."""
    graphdef, params, model_state = _split(model)
    binary, ternary, ttq, clipped = layer_groups(model)
    o = config.optimizer
    tx, labels = optim.create_optimizer(o, steps_per_epoch, config.num_epochs, params,
                                        bop_paths=binary if o.name == "bop" else (), binary_paths=binary)
    if o.name == "bop":
        params = optim.binarize_for_bop(params, labels)
    bop_set = {p for p, l in _flat(labels).items() if l == "bop"}
    clip_mask = optim.path_mask(params, [p for p in clipped if p not in bop_set])
    lr = optim.learning_rate_schedule(o.learning_rate, steps_per_epoch, config.num_epochs, o.schedule,
                                      tuple(o.decay_epochs), o.decay_factor, o.warmup_epochs)
    shuffle_key, aug_key = jax.random.split(jax.random.key(config.seed))
    ctx = Context(
        graphdef=graphdef, tx=tx, lr_schedule=lr, clip_mask=clip_mask, binary_kernels=binary,
        ternary_layers=ternary, ttq_layers=ttq, steps_per_epoch=steps_per_epoch, mesh=mesh,
        augment=dict(crop_padding=int(config.dataset.augment.crop_padding),
                     flip=bool(config.dataset.augment.flip)),
        mean=tuple(mean), std=tuple(std), shuffle_key=shuffle_key, aug_key=aug_key,
        teacher_graphdef=teacher_graphdef, distill_alpha=float(config.distill.alpha),
        distill_temperature=float(config.distill.temperature), streamed=streamed, loss=config.loss,
    )
    state = TrainState(step=jnp.zeros((), jnp.int32), params=params, model_state=model_state,
                       opt_state=tx.init(params), epoch_signs=_signs(params, binary), sums=_zero_sums())
    return jax.device_put(state, ctx.replicated), ctx


def begin_epoch(state: TrainState, ctx: Context) -> TrainState:
    """Resets the epoch's metric sums and snapshots the binary kernels' signs."""
    return state.replace(epoch_signs=_signs(state.params, ctx.binary_kernels),
                         sums=dict(_zero_sums(), nonfinite_step=state.sums["nonfinite_step"]))


# ------------------------------------------------------------------- steps
def _preprocess(ctx: Context, images, key):
    if ctx.streamed:
        from extremeq.data import normalize  # pylint: disable=g-import-not-at-top

        return normalize(images, ctx.mean, ctx.std)
    from extremeq.data import augment_batch  # pylint: disable=g-import-not-at-top

    return augment_batch(key, images, mean=ctx.mean, std=ctx.std, **ctx.augment)


def train_step(state: TrainState, images, labels, key, teacher_vars, *, ctx: Context) -> TrainState:
    """One optimizer step on a (sharded) batch of uint8 images.

    loss = CE(f(x), y), or the distillation loss (extremeq.train.distill) when a teacher is given;
    params <- clip_latent(apply_updates(params, tx(grad))) (BinaryConnect's clip on the layers whose
    spec asks for it).
    """
    images = jax.lax.with_sharding_constraint(images, ctx.batch_sharding)
    labels = jax.lax.with_sharding_constraint(labels, ctx.batch_sharding)
    x = _preprocess(ctx, images, key)
    teacher_logits = None
    if ctx.teacher_graphdef is not None:
        teacher = _merge(ctx.teacher_graphdef, teacher_vars["params"], teacher_vars["model_state"])
        teacher.eval()
        teacher_logits = jax.lax.stop_gradient(teacher(x, train=False))

    def loss_fn(params):
        model = _merge(ctx.graphdef, params, state.model_state)
        model.train()
        logits = model(x, train=True)
        if teacher_logits is None:
            loss = LOSSES[ctx.loss](logits, labels)
        else:
            loss = distillation_loss(logits, teacher_logits, labels, alpha=ctx.distill_alpha,
                                     temperature=ctx.distill_temperature)
        _, _, new_model_state = _split(model)
        return loss, (logits, new_model_state)

    (loss, (logits, model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = ctx.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    params = optim.clip_latent(params, ctx.clip_mask)
    s = state.sums
    bad = (s["nonfinite_step"] < 0) & ~jnp.isfinite(loss)
    sums = {
        "loss": s["loss"] + loss,
        "correct": s["correct"] + jnp.sum(jnp.argmax(logits, -1) == labels).astype(jnp.int32),
        "count": s["count"] + labels.shape[0],
        "nonfinite_step": jnp.where(bad, state.step, s["nonfinite_step"]),
    }
    return state.replace(step=state.step + 1, params=params, model_state=model_state,
                         opt_state=opt_state, sums=sums)


def in_memory_train_step(state, x_all, y_all, plan, aug_key, teacher_vars, *, ctx: Context):
    """Gathers step ``i = step mod steps_per_epoch`` of the epoch's ``plan`` from the device-resident
    data set, with augmentation key ``fold_in(fold_in(aug_key, epoch), i)``, and runs ``train_step``.

    (Keys are arguments, not closure constants, so the compiled step does not depend on the seed
    and JAX's persistent compilation cache can serve every seed of a sweep.)"""
    epoch, i = jnp.divmod(state.step, ctx.steps_per_epoch)
    idx = jax.lax.dynamic_index_in_dim(plan, i, axis=0, keepdims=False)
    key = jax.random.fold_in(jax.random.fold_in(aug_key, epoch), i)
    images = jnp.take(x_all, idx, axis=0)
    labels = jnp.take(y_all, idx, axis=0)
    return train_step(state, images, labels, key, teacher_vars, ctx=ctx)


def eval_step(model_vars, images, labels, mask, *, ctx: Context):
    """(sum of per-example losses, number correct, number of examples) over the unmasked batch rows;
    the loss is the run's ``config.loss`` (cross-entropy, or the squared hinge averaged over classes)."""
    images = jax.lax.with_sharding_constraint(images, ctx.batch_sharding)
    from extremeq.data import normalize  # pylint: disable=g-import-not-at-top

    x = normalize(images, ctx.mean, ctx.std)
    model = _merge(ctx.graphdef, model_vars["params"], model_vars["model_state"])
    model.eval()
    logits = model(x, train=False).astype(jnp.float32)
    nll = PER_EXAMPLE_LOSSES[ctx.loss](logits, labels)
    m = mask.astype(jnp.float32)
    correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32) * m
    return jnp.sum(nll * m), jnp.sum(correct), jnp.sum(m)


def evaluate_in_memory(model_vars, x_all, y_all, idx, mask, *, ctx: Context):
    """eval_step scanned over the rows of ``idx``/``mask`` (extremeq.data.eval_indices)."""

    def body(carry, inp):
        b_idx, b_mask = inp
        out = eval_step(model_vars, jnp.take(x_all, b_idx, 0), jnp.take(y_all, b_idx, 0), b_mask, ctx=ctx)
        return jax.tree_util.tree_map(jnp.add, carry, out), None

    zero = (jnp.zeros((), jnp.float32),) * 3
    sums, _ = jax.lax.scan(body, zero, (idx, mask))
    return sums


def quant_stats(state: TrainState, *, ctx: Context):
    """flip_ratio, ternary_sparsity, ttq_wp_mean, ttq_wn_mean (see extremeq.train.metrics)."""
    out = {}
    flat = _flat(state.params)
    if ctx.binary_kernels:
        flips = sum(jnp.sum((flat[p] >= 0) != state.epoch_signs[p]) for p in ctx.binary_kernels)
        total = sum(flat[p].size for p in ctx.binary_kernels)
        out["flip_ratio"] = flips / total
    if ctx.ternary_layers or ctx.ttq_layers:
        from extremeq.nn import quant_layers  # pylint: disable=g-import-not-at-top

        model = _merge(ctx.graphdef, state.params, state.model_state)
        model.eval()
        layers = dict(quant_layers(model))
        if ctx.ternary_layers:
            zeros, total = 0, 0
            for p in ctx.ternary_layers:
                q = layers[p].quantized_kernel()
                zeros += jnp.sum(q == 0)
                total += q.size
            out["ternary_sparsity"] = zeros / total
        if ctx.ttq_layers:
            out["ttq_wp_mean"] = jnp.mean(jnp.stack([jnp.mean(layers[p].ttq_wp.value) for p in ctx.ttq_layers]))
            out["ttq_wn_mean"] = jnp.mean(jnp.stack([jnp.mean(layers[p].ttq_wn.value) for p in ctx.ttq_layers]))
    return out


# --------------------------------------------------------------- the loop
class _Preemption:
    """SIGTERM -> a flag the loop checks after every step (it then saves and returns)."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread: no handler
            self._previous = None
        return self

    def _handle(self, signum, frame):
        del signum, frame
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
        return False


def _check_finite(state: TrainState, epoch_hint: int):
    bad = int(state.sums["nonfinite_step"])
    if bad >= 0:
        raise FloatingPointError(
            f"non-finite loss at step {bad} (0-based; epoch {epoch_hint}); the run stops here. "
            "Lower config.optimizer.learning_rate, add warm-up, or check the data."
        )


def _make_mesh(num_devices: int = -1):
    devices = jax.devices()
    if num_devices > 0:
        devices = devices[:num_devices]
    return Mesh(np.asarray(devices), ("data",))


def _load_data(config):
    from extremeq import data as data_lib  # pylint: disable=g-import-not-at-top

    ds = data_lib.load_from_config(config.dataset)
    if config.dataset.normalize:
        mean, std = tuple(ds.mean), tuple(ds.std)
    else:
        mean, std = (0.0,), (1.0,)
    return ds, mean, std


def _load_teacher(config, num_classes, input_shape, replicated):
    if not config.distill.teacher_workdir:
        return None, None
    _, teacher, teacher_vars = restore_model_vars(config.distill.teacher_workdir, num_classes, input_shape)
    graphdef, _, _ = _split(teacher)
    return graphdef, jax.device_put(teacher_vars, replicated)


def train_and_evaluate(config, workdir: str) -> dict:
    """Trains (resuming from ``workdir``'s latest checkpoint if any) and returns the last metrics row.

    The returned dict also carries ``finished`` (the configured number of steps was reached) and
    ``preempted`` (stopped by SIGTERM after saving a checkpoint).
    """
    config = config_lib.validate_config(config)
    if config.distributed:
        jax.distributed.initialize()
    if config.dataset.name in config_lib.STREAMED:
        from extremeq.train import streamed  # pylint: disable=g-import-not-at-top

        return streamed.train_and_evaluate_streamed(config, workdir)
    os.makedirs(workdir, exist_ok=True)
    if jax.process_index() == 0:
        config_lib.save_config(config, workdir)
    mesh = _make_mesh(config.num_devices)
    replicated = NamedSharding(mesh, P())

    ds, mean, std = _load_data(config)
    steps_per_epoch = ds.num_train // config.batch_size
    if steps_per_epoch == 0:
        raise config_lib.ConfigError(
            f"config.batch_size: {config.batch_size} exceeds the {ds.num_train} training examples")
    model = create_model(config, ds.num_classes, ds.image_shape)
    teacher_graphdef, teacher_vars = _load_teacher(config, ds.num_classes, ds.image_shape, replicated)
    state, ctx = create_train_state(config, model, steps_per_epoch, mesh, mean=mean, std=std,
                                    teacher_graphdef=teacher_graphdef)
    del model

    x_train = jax.device_put(ds.x_train, replicated)
    y_train = jax.device_put(ds.y_train, replicated)
    x_test = jax.device_put(ds.x_test, replicated)
    y_test = jax.device_put(ds.y_test, replicated)
    from extremeq.data import epoch_indices, eval_indices  # pylint: disable=g-import-not-at-top

    e_idx, e_mask = eval_indices(ds.num_test, config.eval_batch_size)
    e_idx, e_mask = jax.device_put((e_idx, e_mask), replicated)
    val = None
    if config.dataset.validation:
        if ds.x_val is None:
            raise config_lib.ConfigError(
                f"config.dataset.validation: limit_train = {config.dataset.limit_train} leaves no training "
                f"examples for validation (the split has {ds.num_train}); lower limit_train")
        v_idx, v_mask = eval_indices(len(ds.x_val), config.eval_batch_size)
        val = jax.device_put((ds.x_val, ds.y_val, v_idx, v_mask), replicated)

    def build(c):
        return dict(
            step=jax.jit(functools.partial(in_memory_train_step, ctx=c), donate_argnums=(0,),
                         out_shardings=replicated),
            eval=jax.jit(functools.partial(evaluate_in_memory, ctx=c)),
            begin=jax.jit(functools.partial(begin_epoch, ctx=c), out_shardings=replicated),
            stats=jax.jit(functools.partial(quant_stats, ctx=c)),
            plan=jax.jit(lambda k, e: epoch_indices(k, ds.num_train, config.batch_size, e),
                         out_shardings=replicated),
        )

    fns = compiled_functions(config, ctx, (ds.x_train.shape, ds.x_test.shape, ds.num_classes,
                                           None if val is None else val[0].shape), build)
    p_step, p_eval, p_begin, p_stats, plan_jit = (fns[k] for k in ("step", "eval", "begin", "stats", "plan"))
    shuffle_key, aug_key = jax.device_put((ctx.shuffle_key, ctx.aug_key), replicated)

    def evaluate(state):
        loss, correct, count = jax.device_get(p_eval(state.model_vars(), x_test, y_test, e_idx, e_mask))
        out = {"test_loss": float(loss / count), "test_accuracy": float(correct / count)}
        if val is not None:
            loss, correct, count = jax.device_get(p_eval(state.model_vars(), *val))
            out.update(val_loss=float(loss / count), val_accuracy=float(correct / count))
        return out

    return _run_loop(config, workdir, state, ctx, steps_per_epoch,
                     step_fn=lambda st, plan: p_step(st, x_train, y_train, plan, aug_key, teacher_vars),
                     plan_fn=lambda epoch: plan_jit(shuffle_key, epoch), begin_fn=p_begin, stats_fn=p_stats, evaluate=evaluate)


# Jitted functions of earlier runs in this process, by what they depend on: a sweep over seeds
# (or a resumed run in the same process) reuses the compiled step instead of compiling it again.
_COMPILED: collections.OrderedDict[Any, dict] = collections.OrderedDict()
_COMPILED_MAX = 8
# Keys that change neither the traced computation nor its constants (PRNG keys are arguments).
_NOT_TRACED = ("seed", "max_steps", "log_every_steps", "progress_bar", "sync_every_step", "checkpoint",
               "distributed", "quant.init_from", "distill.teacher_workdir")


def compiled_functions(config, ctx: Context, data_signature, build) -> dict:
    """``build(ctx)`` (a dict of jitted functions), cached by the config (less ``_NOT_TRACED``), the
    model's graph definition, the teacher's, the data's shapes and statistics and the devices."""
    flat = config_lib.to_dict(config)
    for key in _NOT_TRACED:
        node = flat
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.get(p, {})
        node.pop(leaf, None)
    key = (json.dumps(flat, sort_keys=True), ctx.graphdef, ctx.teacher_graphdef, data_signature,
           ctx.mean, ctx.std, ctx.steps_per_epoch, tuple(d.id for d in ctx.mesh.devices.flat))
    try:
        hash(key)
    except TypeError:  # an unhashable graph definition: no caching
        return build(ctx)
    if key in _COMPILED:
        _COMPILED.move_to_end(key)
        return _COMPILED[key]
    fns = _COMPILED[key] = build(ctx)
    while len(_COMPILED) > _COMPILED_MAX:
        _COMPILED.popitem(last=False)
    return fns


def _run_loop(config, workdir, state, ctx, steps_per_epoch, *, step_fn, plan_fn, begin_fn, stats_fn,
              evaluate):
    """The epoch/step loop shared by the in-memory and streamed data paths."""
    from tqdm.auto import tqdm  # pylint: disable=g-import-not-at-top

    total_steps = config.num_epochs * steps_per_epoch
    stop_at = total_steps if config.max_steps in (-1, None) else min(total_steps, config.max_steps)
    ckpt = ckpt_lib.Checkpointer(workdir, keep=config.checkpoint.keep)
    is_main = jax.process_index() == 0
    writer = metrics_lib.MetricWriter(workdir, enabled=is_main)
    latest = ckpt.latest_step()
    if latest is not None:
        model_vars, train_vars, meta = ckpt.restore(state.model_vars(), state.train_vars(), latest)
        state = TrainState(params=model_vars["params"], model_state=model_vars["model_state"], **train_vars)
        state = jax.device_put(state, ctx.replicated)
        logging.info("resumed from %s at step %d", ckpt.directory, latest)
    step = int(state.step)
    if is_main:
        metrics_lib.truncate_metrics(workdir, step // steps_per_epoch)
    last_saved = latest
    row: dict = {}
    preempted = False

    def save():
        nonlocal last_saved
        if last_saved != step:
            ckpt.save(step, state.model_vars(), state.train_vars(),
                      {"step": step, "epoch": step // steps_per_epoch, "steps_per_epoch": steps_per_epoch})
            last_saved = step

    with _Preemption() as preemption:
        while step < stop_at and not preempted:
            epoch, first = divmod(step, steps_per_epoch)
            if first == 0:
                state = begin_fn(state)
            t0 = time.time()
            plan = plan_fn(epoch)
            bar = tqdm(total=steps_per_epoch, initial=first, desc=f"epoch {epoch + 1}/{config.num_epochs}",
                       disable=not (config.progress_bar and is_main), leave=False)
            for _ in range(first, steps_per_epoch):
                state = step_fn(state, plan)
                step += 1
                if config.sync_every_step:
                    jax.block_until_ready(state)
                bar.update(1)
                if step % config.log_every_steps == 0:
                    _check_finite(state, epoch)
                if preemption.requested or step >= stop_at:
                    break
            bar.close()
            _check_finite(state, epoch)
            if step % steps_per_epoch == 0:
                row = _epoch_metrics(state, ctx, epoch, step, evaluate, stats_fn)
                row["time_s"] = time.time() - t0
                writer.write(row)
                logging.info("epoch %d: %s", epoch + 1, json.dumps(row))
                if (epoch + 1) % config.checkpoint.every_epochs == 0 or step >= stop_at:
                    save()
            if preemption.requested:
                save()
                preempted = True
                logging.warning("SIGTERM: saved step %d to %s; rerun the same command to resume",
                                step, ckpt.directory)
        save()
    ckpt.close()
    writer.close()
    finished = step >= stop_at and not preempted
    result = dict(row, step=step, finished=finished, preempted=preempted, num_devices=ctx.mesh.size)
    if finished and "val_accuracy" in row:
        result.update(best_validation(metrics_lib.read_metrics(workdir)))
    if finished and is_main:
        with open(os.path.join(workdir, "final.json"), "w") as f:
            json.dump(result, f, indent=1)
    return result


def best_validation(rows) -> dict:
    """The epoch of the highest val_accuracy (the first, on ties) and its test accuracy: the number
    BinaryConnect and BinaryNet report ("the test error rate associated with the best validation
    error rate")."""
    rows = [r for r in rows if "val_accuracy" in r]
    if not rows:  # e.g. a process other than the one writing metrics.jsonl
        return {}
    best = max(rows, key=lambda r: (r["val_accuracy"], -r["epoch"]))
    return {"best_val_epoch": best["epoch"], "best_val_accuracy": best["val_accuracy"],
            "test_accuracy_at_best_val": best["test_accuracy"]}


def _epoch_metrics(state, ctx, epoch, step, evaluate, stats_fn):
    sums = jax.device_get(state.sums)
    row = {
        "epoch": epoch + 1,
        "step": step,
        "learning_rate": float(ctx.lr_schedule(step - 1)),
        "train_loss": float(sums["loss"]) / ctx.steps_per_epoch,
        "train_accuracy": float(sums["correct"]) / max(int(sums["count"]), 1),
    }
    row.update(evaluate(state))
    row.update({k: float(v) for k, v in jax.device_get(stats_fn(state)).items()})
    return row
