"""The streamed data path (ImageNet): batches from the data helper's grain pipeline.

The training stream is ``imagenet_dataset(train=True, num_epochs=None)`` (random-resized crop +
flip on the host, shuffle reseeded each pass), a ``grain.MapDataset`` of batches whose batch ``j``
is a pure function of ``(seed, j)``. Process ``p`` of ``P`` takes batches ``p, p + P, ...``
(``extremeq.data.process_shard``), so global step ``s`` is made of local batches ``s P + p``: a
resumed run restarts the iterator at its step and sees exactly the batches the uninterrupted run
saw, whatever the number of processes. On the device the images are only normalised
(``extremeq.data.normalize``). An epoch is ``len(train) // batch_size`` steps, one pass over its
own permutation of the training split (the remainder dropped).

Evaluation: one ordered pass over the validation split, padded with masked examples to a whole
number of global batches and dealt round-robin to the processes, so every example is counted once.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from extremeq.train.loop import run_loop
from extremeq.train.model import create_model, load_teacher, model_spec
from extremeq.train.state import (
    OptimizerSpec,
    begin_epoch,
    create_train_state,
    steps_per_epoch,
)
from extremeq.train.steps import (
    Inputs,
    Objective,
    eval_step,
    make_mesh,
    quant_stats,
    train_step,
)


class _Limited:
    """The first ``n`` examples of a random-access source (config.dataset.limit_train)."""

    def __init__(self, source, n):
        self.source, self.n = source, min(n, len(source))

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if not -self.n <= i < self.n:
            raise IndexError(i)
        return self.source[i % self.n]


def _sources(config):
    from extremeq import data as data_lib  # pylint: disable=g-import-not-at-top

    data_dir = config.dataset.data_dir or None
    train = data_lib.imagenet_source("train", data_dir=data_dir)
    evaluation = data_lib.imagenet_source("validation", data_dir=data_dir)
    if config.dataset.limit_train > 0:
        train = _Limited(train, config.dataset.limit_train)
    return train, evaluation


def train_and_evaluate_streamed(config, workdir: str) -> dict:
    """``train_and_evaluate`` for data sets streamed by grain (``config.dataset.name`` imagenet2012)."""
    from extremeq import data as data_lib  # pylint: disable=g-import-not-at-top
    from extremeq.data.imagenet import IMAGENET_NUM_CLASSES  # pylint: disable=g-import-not-at-top

    mesh = make_mesh(config.num_devices)
    replicated, batch_sharding = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    n_proc, proc = jax.process_count(), jax.process_index()
    local_batch = config.batch_size // n_proc
    local_eval_batch = config.eval_batch_size // n_proc

    train_source, eval_source = _sources(config)
    spe = steps_per_epoch(config, len(train_source))
    size = config.dataset.image_size
    input_shape = (size, size, 3)
    model = create_model(config, IMAGENET_NUM_CLASSES, input_shape)
    spec = model_spec(model)
    optimizer = OptimizerSpec.from_config(config, spe, spec)
    state = create_train_state(model, optimizer, mesh)
    del model
    teacher_graphdef, teacher_vars = load_teacher(config, IMAGENET_NUM_CLASSES, input_shape, mesh)
    inputs = Inputs.from_config(config, mesh, data_lib.IMAGENET_MEAN, data_lib.IMAGENET_STD, streamed=True)
    static = dict(
        model=spec, optimizer=optimizer, inputs=inputs, objective=Objective.from_config(config, teacher_graphdef)
    )

    train_ds = data_lib.imagenet_dataset(
        train_source,
        train=True,
        batch_size=local_batch,
        image_size=size,
        seed=config.seed,
        num_epochs=None,
        flip=bool(config.dataset.augment.flip),
        num_shards=n_proc,
    )
    train_ds = data_lib.process_shard(train_ds, proc, n_proc)

    def global_batch(local):
        return (
            jax.make_array_from_process_local_data(batch_sharding, local["image"]),
            jax.make_array_from_process_local_data(batch_sharding, local["label"].astype("int32")),
            jax.make_array_from_process_local_data(batch_sharding, local["mask"]),
        )

    p_step = jax.jit(functools.partial(train_step, **static), donate_argnums=(0,), out_shardings=replicated)
    p_eval = jax.jit(functools.partial(eval_step, model=spec, inputs=inputs, loss=config.loss))
    p_begin = jax.jit(functools.partial(begin_epoch, binary_kernels=spec.binary_kernels), out_shardings=replicated)
    p_stats = jax.jit(functools.partial(quant_stats, model=spec))
    no_key = jax.random.key(0)
    stream = {}

    def step_fn(state, _):
        if "it" not in stream:  # started at the (restored) step, once
            stream["it"] = data_lib.imagenet_iterator(
                train_ds, worker_count=config.dataset.workers, start_step=int(state.step)
            )
        images, labels, _ = global_batch(next(stream["it"]))
        return p_step(state, images, labels, no_key, teacher_vars)

    def evaluate(state):
        ds = data_lib.imagenet_dataset(
            eval_source, train=False, batch_size=local_eval_batch, image_size=size, num_shards=n_proc
        )
        ds = data_lib.process_shard(ds, proc, n_proc)
        totals = jnp.zeros((3,), jnp.float32)
        for batch in data_lib.imagenet_iterator(ds, worker_count=config.dataset.workers):
            images, labels, mask = global_batch(batch)
            totals = totals + jnp.stack(p_eval(state.model_vars(), images, labels, mask))
        loss, correct, count = (float(v) for v in jax.device_get(totals))
        return {"test_loss": loss / max(count, 1), "test_accuracy": correct / max(count, 1)}

    return run_loop(
        config,
        workdir,
        state,
        optimizer=optimizer,
        mesh=mesh,
        step_fn=step_fn,
        plan_fn=lambda epoch: None,
        begin_fn=p_begin,
        stats_fn=p_stats,
        evaluate=evaluate,
    )
