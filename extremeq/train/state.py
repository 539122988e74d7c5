"""The training state (everything a step reads and writes, checkpointed whole) and the optimizer
resolved from ``config.optimizer``.

Determinism and exact resume: the data order of epoch ``e`` is ``permutation(fold_in(k_shuffle,
e))`` and the augmentation key of step ``i`` of epoch ``e`` is ``fold_in(fold_in(k_aug, e), i)``,
pure functions of (seed, epoch, step); everything else that changes (parameters, optimizer state,
BN statistics, dropout RNG counters, the epoch's metric sums and the sign snapshot for the flip
ratio) lives in :class:`TrainState` and is checkpointed, so a run stopped after any step and resumed
computes what the uninterrupted run computes, bit for bit on CPU.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections

from extremeq import optim
from extremeq.ste import sign_bit
from extremeq.train import distributed
from extremeq.train.model import ModelSpec, split_model


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
        return {"step": self.step, "opt_state": self.opt_state, "epoch_signs": self.epoch_signs, "sums": self.sums}


@dataclasses.dataclass(frozen=True)
class OptimizerSpec:
    """``config.optimizer`` resolved for one model and data size (hashable by value, so the jitted
    steps of runs that differ only in seed share their compilation).

    ``transform(params)`` builds the optax transformation and the "bop"/"base" labels of the
    parameters (extremeq.optim.create_optimizer); ``learning_rate(step)`` is the schedule.
    """

    settings: ml_collections.FrozenConfigDict
    steps_per_epoch: int
    num_epochs: int
    binary_kernels: tuple = ()
    clipped_kernels: tuple = ()

    @classmethod
    def from_config(cls, config, steps_per_epoch: int, model: ModelSpec) -> "OptimizerSpec":
        return cls(
            ml_collections.FrozenConfigDict(config.optimizer),
            int(steps_per_epoch),
            int(config.num_epochs),
            model.binary_kernels,
            model.clipped_kernels,
        )

    @property
    def uses_bop(self) -> bool:
        return self.settings.name == "bop"

    def transform(self, params):
        """(optax transformation, labels) for ``params``."""
        return optim.create_optimizer(
            self.settings,
            self.steps_per_epoch,
            self.num_epochs,
            params,
            bop_paths=self.binary_kernels if self.uses_bop else (),
            binary_paths=self.binary_kernels,
        )

    def clip_mask(self, params, labels):
        """True at the latent kernels clipped to [-1, 1] after each step (not those under Bop)."""
        bop_set = {p for p, l in flat_tree(labels).items() if l == "bop"}
        return optim.path_mask(params, [p for p in self.clipped_kernels if p not in bop_set])

    def learning_rate(self, step):
        o = self.settings
        schedule = optim.learning_rate_schedule(
            o.learning_rate,
            self.steps_per_epoch,
            self.num_epochs,
            o.schedule,
            tuple(o.decay_epochs),
            o.decay_factor,
            o.warmup_epochs,
        )
        return schedule(step)


def steps_per_epoch(config, num_train: int) -> int:
    """Optimizer steps per pass over ``num_train`` examples (the last partial batch is dropped)."""
    from extremeq.train.config import ConfigError  # pylint: disable=g-import-not-at-top

    steps = num_train // config.batch_size
    if steps == 0:
        raise ConfigError(
            f"config.batch_size: {config.batch_size} exceeds the {num_train} training examples; "
            f"use a batch size of at most {num_train}"
        )
    return steps


def flat_tree(tree) -> dict:
    """{path string: leaf} of a pure-dict pytree."""
    return {optim.path_string(p): v for p, v in jax.tree_util.tree_leaves_with_path(tree)}


def zero_sums():
    return {
        "loss": jnp.zeros((), jnp.float32),
        "correct": jnp.zeros((), jnp.int32),
        "count": jnp.zeros((), jnp.int32),
        "nonfinite_step": jnp.full((), -1, jnp.int32),
    }


def kernel_signs(params, binary_kernels):
    """{path: sign_bit(w)} of the binary kernels (True where sign(w) = +1, sign(0) = +1)."""
    flat = flat_tree(params)
    return {p: sign_bit(flat[p]) for p in binary_kernels}


def create_train_state(model, optimizer: OptimizerSpec, mesh) -> TrainState:
    """The initial state of ``model`` (an nnx module), replicated over ``mesh``. Under Bop the
    binary kernels start at their signs (Bop has no latent weights)."""
    _, params, model_state = split_model(model)
    tx, labels = optimizer.transform(params)
    if optimizer.uses_bop:
        params = optim.binarize_for_bop(params, labels)
    state = TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        model_state=model_state,
        opt_state=tx.init(params),
        epoch_signs=kernel_signs(params, optimizer.binary_kernels),
        sums=zero_sums(),
    )
    return distributed.replicate(state, mesh)


def begin_epoch(state: TrainState, *, binary_kernels) -> TrainState:
    """Resets the epoch's metric sums and snapshots the binary kernels' signs."""
    return state.replace(
        epoch_signs=kernel_signs(state.params, binary_kernels),
        sums=dict(zero_sums(), nonfinite_step=state.sums["nonfinite_step"]),
    )
