"""``train_and_evaluate(config, workdir)``: the shape of google/flax ``examples/imagenet/train.py``.

    validate_config      once, here; the rest reads the resolved pieces
    prepare_workdir      writable, not another run's (extremeq.train.workdir)
    create_model         config.model -> zoo model -> precision policy (extremeq.train.model)
    create_train_state   params, model state, optimizer state (extremeq.train.state)
    train_step/eval_step jitted, data parallel over the devices (extremeq.train.steps)
    run_loop             epochs, checkpoints, metrics, SIGTERM, the NaN guard (extremeq.train.loop)

Small data sets live whole on the device (this module); ImageNet streams through grain
(extremeq.train.streamed).
"""

from __future__ import annotations

import functools

import jax
from absl import logging

from extremeq.train import checkpoint as ckpt_lib
from extremeq.train import distributed
from extremeq.train.config import (
    STREAMED_NAMES,
    ConfigError,
    validate_config,
    with_defaults,
)
from extremeq.train.loop import run_loop
from extremeq.train.model import ModelSpec, create_model, load_teacher, model_spec
from extremeq.train.state import (
    OptimizerSpec,
    begin_epoch,
    create_train_state,
    steps_per_epoch,
)
from extremeq.train.steps import (
    Inputs,
    Objective,
    evaluate_in_memory,
    in_memory_train_step,
    make_mesh,
    quant_stats,
)
from extremeq.train.streamed import train_and_evaluate_streamed
from extremeq.train.workdir import prepare_workdir

# Errors in what the data files hold (a truncated npz, a missing array, labels out of range): the
# user's to fix, reported as ``config.dataset`` errors.
_DATA_ERRORS = (ValueError, KeyError, OSError, EOFError)


def prepare(config, workdir: str):
    """Validates ``config`` (once) and prepares ``workdir``; returns the validated config."""
    if config.get("distributed") is True:  # before validation, which counts the devices
        distributed.initialize(with_defaults(config))
    config = validate_config(config)
    latest = {}

    def latest_step():
        return latest["step"]

    def read_latest():  # every process opens the checkpoints (orbax synchronises them)
        ckpt = ckpt_lib.Checkpointer(workdir, keep=config.checkpoint.keep)
        try:
            latest["step"] = ckpt.latest_step()
        finally:
            ckpt.close()

    prepare_workdir(config, workdir, latest_step, is_main=distributed.is_main_process(), before=read_latest)
    return config


def train_and_evaluate(config, workdir: str) -> dict:
    """Trains (resuming from ``workdir``'s latest checkpoint if any) and returns the last metrics row.

    The returned dict also carries ``finished`` (the configured number of steps was reached) and
    ``preempted`` (stopped by SIGTERM after saving a checkpoint).
    """
    config = prepare(config, workdir)
    if config.dataset.name in STREAMED_NAMES:
        return train_and_evaluate_streamed(config, workdir)
    from extremeq import data as data_lib  # pylint: disable=g-import-not-at-top

    mesh = make_mesh(config.num_devices)
    try:
        ds = data_lib.load_from_config(config.dataset)
    except _DATA_ERRORS as e:
        raise ConfigError(f"config.dataset: {e}") from e
    spe = steps_per_epoch(config, ds.num_train)
    if config.dataset.validation and ds.x_val is None:
        raise ConfigError(
            f"config.dataset.validation: limit_train = {config.dataset.limit_train} leaves no training "
            f"examples for validation (the split has {ds.num_train}); lower limit_train"
        )
    model = create_model_for_data(config, ds)
    spec = model_spec(model)
    optimizer = OptimizerSpec.from_config(config, spe, spec)
    state = create_train_state(model, optimizer, mesh)
    del model
    teacher_graphdef, teacher_vars = load_teacher(config, ds.num_classes, ds.image_shape, mesh)
    inputs = Inputs.from_config(config, mesh, ds.mean, ds.std)
    fns = in_memory_functions(
        spec, optimizer, inputs, Objective.from_config(config, teacher_graphdef), ds.num_train, config.batch_size
    )

    x_train, y_train, x_test, y_test = distributed.replicate((ds.x_train, ds.y_train, ds.x_test, ds.y_test), mesh)
    e_idx, e_mask = distributed.replicate(data_lib.eval_indices(ds.num_test, config.eval_batch_size), mesh)
    val = None
    if config.dataset.validation:
        v_idx, v_mask = data_lib.eval_indices(len(ds.x_val), config.eval_batch_size)
        val = distributed.replicate((ds.x_val, ds.y_val, v_idx, v_mask), mesh)
    shuffle_key, aug_key = distributed.replicate(tuple(jax.random.split(jax.random.key(config.seed))), mesh)

    def evaluate(state):
        loss, correct, count = jax.device_get(fns["eval"](state.model_vars(), x_test, y_test, e_idx, e_mask))
        out = {"test_loss": float(loss / count), "test_accuracy": float(correct / count)}
        if val is not None:
            loss, correct, count = jax.device_get(fns["eval"](state.model_vars(), *val))
            out.update(val_loss=float(loss / count), val_accuracy=float(correct / count))
        return out

    return run_loop(
        config,
        workdir,
        state,
        optimizer=optimizer,
        mesh=mesh,
        step_fn=lambda st, plan: fns["step"](st, x_train, y_train, plan, aug_key, teacher_vars),
        plan_fn=lambda epoch: fns["plan"](shuffle_key, epoch),
        begin_fn=fns["begin"],
        stats_fn=fns["stats"],
        evaluate=evaluate,
    )


def create_model_for_data(config, ds):
    """``create_model`` for the in-memory data set ``ds``; when the model starts from an FP run
    (``quant.init_from``) and ``quant.init_bn_batches`` > 0, its BatchNorm statistics are re-estimated
    with the quantized weights on the first ``init_bn_batches`` training batches (normalized, not
    augmented; fewer if the split is smaller), see extremeq.nn.batch_norm for why."""
    from extremeq.data import normalize  # pylint: disable=g-import-not-at-top
    from extremeq.nn.batch_norm import recalibrate_batch_norm  # pylint: disable=g-import-not-at-top

    model = create_model(config, ds.num_classes, ds.image_shape)
    if not (config.quant.init_from and config.quant.init_bn_batches):
        return model
    mean, std = (ds.mean, ds.std) if config.dataset.normalize else ((0.0,), (1.0,))
    b = config.batch_size
    n = max(1, min(int(config.quant.init_bn_batches), ds.num_train // b))
    batches = (normalize(ds.x_train[i * b : (i + 1) * b], mean, std) for i in range(n))
    used = recalibrate_batch_norm(model, batches, train=True)
    logging.info("BatchNorm statistics re-estimated on %d training batches of %d (quant.init_bn_batches)", used, b)
    return model


@functools.lru_cache(maxsize=8)
def in_memory_functions(
    model: ModelSpec, optimizer: OptimizerSpec, inputs: Inputs, objective: Objective, num_train: int, batch_size: int
) -> dict:
    """The jitted functions of the in-memory data path. Cached by their static pieces (all hashable by
    value), so that runs differing only in seed (a sweep) reuse the compiled step."""
    from extremeq.data import epoch_indices  # pylint: disable=g-import-not-at-top

    replicated = inputs.replicated
    static = dict(model=model, optimizer=optimizer, inputs=inputs, objective=objective)
    return dict(
        step=jax.jit(functools.partial(in_memory_train_step, **static), donate_argnums=(0,), out_shardings=replicated),
        eval=jax.jit(functools.partial(evaluate_in_memory, model=model, inputs=inputs, loss=objective.loss)),
        begin=jax.jit(functools.partial(begin_epoch, binary_kernels=model.binary_kernels), out_shardings=replicated),
        stats=jax.jit(functools.partial(quant_stats, model=model)),
        plan=jax.jit(lambda k, e: epoch_indices(k, num_train, batch_size, e), out_shardings=replicated),
    )
