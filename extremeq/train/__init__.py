"""Training: the loop, checkpoints, metrics, distillation.

``python -m extremeq.train --config configs/<file>.py:<variant> --workdir <dir> [--config.x.y=v]``
runs :func:`train_and_evaluate` (see ``extremeq/train/main.py``).
"""

from extremeq.train.config import ConfigError, default_config, validate_config
from extremeq.train.distill import cross_entropy, distillation_loss, kl_divergence_soft
from extremeq.train.train import (
    TrainState,
    build_quantized_model,
    create_model,
    create_train_state,
    eval_step,
    train_and_evaluate,
    train_step,
)

__all__ = [
    "ConfigError", "default_config", "validate_config", "cross_entropy", "distillation_loss",
    "kl_divergence_soft", "TrainState", "build_quantized_model", "create_model", "create_train_state",
    "eval_step", "train_and_evaluate", "train_step",
]
