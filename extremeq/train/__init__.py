"""Training: ``train_and_evaluate(config, workdir)`` and its parts.

    config.py    the schema (default_config) and its validation      variants.py  config files' variants
    workdir.py   config.json, final.json, the checks before a run   model.py     model building
    state.py     TrainState, the optimizer resolved from the config steps.py     train_step, eval_step
    losses.py    cross-entropy, squared hinge                       distill.py   knowledge distillation
    loop.py      epochs, checkpoints, metrics, SIGTERM, NaN guard    train.py     train_and_evaluate
    streamed.py  the grain (ImageNet) data path                     main.py      the command line
    distributed.py  several processes (jax.distributed)             checkpoint.py, metrics.py

``python -m extremeq.train --config=configs/<file>.py[:variant] --workdir=<dir> [--config.x.y=v]``
"""

from extremeq.train.config import ConfigError, default_config, validate_config
from extremeq.train.distill import distillation_loss, kl_divergence_soft
from extremeq.train.losses import cross_entropy, squared_hinge
from extremeq.train.model import build_quantized_model, create_model
from extremeq.train.state import TrainState, create_train_state
from extremeq.train.steps import eval_step, train_step
from extremeq.train.train import train_and_evaluate

__all__ = [
    "ConfigError",
    "default_config",
    "validate_config",
    "cross_entropy",
    "squared_hinge",
    "distillation_loss",
    "kl_divergence_soft",
    "TrainState",
    "build_quantized_model",
    "create_model",
    "create_train_state",
    "eval_step",
    "train_and_evaluate",
    "train_step",
]
