"""What config files share: the variant argument and the per-method settings.

The variant argument (``get_config(arg)``, the part after ``:`` on the command line) is a list of
tokens separated by ``,`` or ``:``, in any order:
  * a method: a name of the method registry, ``extremeq.methods.METHODS`` (the built-ins fp, bc,
    bc_stochastic, bwn, xnor, twn, ttq, bitnet, bnn, and any method registered before the config
    file's ``get_config`` runs); default: fp;
  * a model, where a file serves several (``cifar10_resnet.py:resnet56,ttq``);
  * ``key=value`` shorthands for ``config.quant``: ``ste=clipped``, ``first=int8``, ``last=same``,
    ``init_weights=quantized`` (Dense-Sparse-Dense's re-dense start).
Examples: ``configs/mnist_lenet5.py:twn``, ``configs/cifar10_resnet.py:resnet20:ttq``,
``configs/mnist_bnn.py:bnn,ste=tanh``. Anything else is a dotted override on the command line
(``--config.optimizer.learning_rate=0.05``).
"""

from __future__ import annotations

import re

from extremeq.train.config import (
    BINARY_INPUT_METHODS,
    EDGE_PRECISIONS,
    ESTIMATORS,
    INIT_WEIGHTS,
    METHODS,
)

QUANT_SHORTHANDS = {"ste": ESTIMATORS, "first": EDGE_PRECISIONS, "last": EDGE_PRECISIONS, "init_weights": INIT_WEIGHTS}


class VariantError(ValueError):
    """A variant token the config file does not know; the message lists what it accepts."""


def parse_variant(arg, models=(), default_model=None):
    """``"resnet20:ttq,ste=clipped"`` -> (model, method, {"ste": "clipped"}).

    Tokens separated by ``,`` or ``:``; a method (default "fp"), a model of ``models`` (default
    ``default_model``), ``key=value`` for ``QUANT_SHORTHANDS``. Raises VariantError naming a bad token.
    """
    model, method, options = default_model, None, {}
    tokens = [t.strip() for t in re.split(r"[,:]", arg or "") if t.strip()]
    for token in tokens:
        if "=" in token:
            key, _, value = token.partition("=")
            key, value = key.strip(), value.strip()
            if key not in QUANT_SHORTHANDS:
                raise VariantError(
                    f"variant option {key!r} unknown in {arg!r}; options are {sorted(QUANT_SHORTHANDS)} "
                    "(set other keys with --config.<section>.<key>=value)"
                )
            if value not in QUANT_SHORTHANDS[key]:
                raise VariantError(f"variant option {key}={value!r} unknown; choose one of {QUANT_SHORTHANDS[key]}")
            options[key] = value
        elif token in METHODS:
            if method is not None and method != token:
                raise VariantError(f"variant {arg!r} names two methods, {method!r} and {token!r}; give one")
            method = token
        elif token in models:
            if model != default_model and model != token:
                raise VariantError(f"variant {arg!r} names two models, {model!r} and {token!r}; give one")
            model = token
        else:
            what = f"methods {list(METHODS)}" + (f", models {list(models)}" if models else "")
            raise VariantError(
                f"variant token {token!r} unknown in {arg!r}; use {what}, or key=value with key in "
                f"{sorted(QUANT_SHORTHANDS)}"
            )
    return model, method or "fp", options


def apply_method(config, method, options=None, *, first="fp", last="fp", binary_input_ste="clipped"):
    """Sets ``config.quant`` for ``method``: ``first``/``last`` precisions of the recipe, then the
    variant's ``key=value`` options. Binary-input methods (xnor, bnn) get the hardtanh activation
    and the clipped STE (gradient 1_{|x|<=1}, BinaryNet's)."""
    if method not in METHODS:
        raise VariantError(f"method {method!r} unknown; choose one of {tuple(METHODS)}")
    config.quant.method = method
    config.quant.first = first
    config.quant.last = last
    if method in BINARY_INPUT_METHODS:
        config.model.activation = "hardtanh"
        config.quant.ste = binary_input_ste
    for key, value in (options or {}).items():
        config.quant[key] = value
    return config


def exponential_decay(lr_start, lr_end, num_epochs):
    """BinaryConnect/BinaryNet's per-epoch exponential decay lr_t = lr_start * r^t,
    r = (lr_end / lr_start)^(1 / num_epochs), written for the "step" schedule:
    (decay_epochs = [1, ..., num_epochs - 1], decay_factor = r)."""
    return list(range(1, num_epochs)), float((lr_end / lr_start) ** (1.0 / num_epochs))
