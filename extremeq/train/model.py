"""Model building: the zoo model of ``config.model`` quantized by ``config.quant``, its static
description for the jitted steps (``ModelSpec``), and the weights of a finished run.

    build_quantized_model  config.model -> zoo model -> precision policy from config.quant
    create_model           the same, optionally starting from a finished FP run (quant.init_from)
    restore_model_vars     (config, model, variables) of a finished run (teacher, init_from)
"""

from __future__ import annotations

import dataclasses
from typing import Any

from flax import nnx

from extremeq.train import checkpoint as ckpt_lib
from extremeq.train import distributed
from extremeq.train.config import ConfigError
from extremeq.train.workdir import load_run_config, plain


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """The static side of a model for the jitted steps (hashable by value).

    graphdef: nnx graph definition; binary_kernels: parameter paths of the 1-bit kernels;
    ternary_layers: paths of the layers whose method's precision is "ternary" (twn, ttq, bitnet);
    learned_scales: (path, names) of the layers whose method learns scales (TTQ's ttq_wp, ttq_wn);
    clipped_kernels: kernels whose spec clips the latent weights to [-1, 1] (BinaryConnect).
    """

    graphdef: Any
    binary_kernels: tuple = ()
    ternary_layers: tuple = ()
    learned_scales: tuple = ()
    clipped_kernels: tuple = ()


def split_model(model):
    """(graphdef, params, model state) of ``model``, the variables as pure dicts."""
    graphdef, params, model_state = nnx.split(model, nnx.Param, ...)
    return graphdef, nnx.to_pure_dict(params), nnx.to_pure_dict(model_state)


def merge_model(graphdef, params, model_state):
    return nnx.merge(graphdef, nnx.State(params), nnx.State(model_state))


def load_model_vars(model, model_vars):
    """Writes ``{"params", "model_state"}`` (pure dicts) into ``model``, in place."""
    _, params, model_state = nnx.split(model, nnx.Param, ...)
    nnx.replace_by_pure_dict(params, model_vars["params"])
    nnx.replace_by_pure_dict(model_state, model_vars["model_state"])
    nnx.update(model, params, model_state)


def model_spec(model) -> ModelSpec:
    """The graph definition and the quantized layers' groups of ``model``."""
    from extremeq.nn import quant_layers  # pylint: disable=g-import-not-at-top

    binary, ternary, scaled, clipped = [], [], [], []
    for path, layer in quant_layers(model):
        spec = layer.kernel_quantizer
        if spec.is_binary:
            binary.append(f"{path}/kernel")
        if spec.is_ternary:
            ternary.append(path)
        if spec.method.learned_scales:
            scaled.append((path, spec.method.learned_scales))
        if spec.clip_latent:
            clipped.append(f"{path}/kernel")
    graphdef, _, _ = split_model(model)
    return ModelSpec(graphdef, tuple(binary), tuple(ternary), tuple(scaled), tuple(clipped))


def _quantize(model, config):
    from extremeq.nn import method_rules, quantize_model  # pylint: disable=g-import-not-at-top

    q = config.quant
    keep = [(pattern, None) for pattern in q.get("keep_fp", ())]  # kept float ahead of the method's rules
    rules = keep + method_rules(
        q.method,
        first=q.first,
        last=q.last,
        ste=q.ste,
        stochastic_eval=q.stochastic_eval,
        ste_kwargs=dict(q.ste_kwargs) or None,
        latent_init=q.latent_init,
    )
    quantize_model(model, rules, rngs=nnx.Rngs(config.seed, quant=config.seed + 1))
    return model


def build_quantized_model(config, num_classes: int, input_shape, init_vars=None):
    """Zoo model from ``config.model``, quantized by ``method_rules`` from ``config.quant``.

    ``init_vars`` ({"params", "model_state"} of an unquantized model of the same architecture, e.g.
    an FP run's checkpoint) is loaded before quantizing, so the quantized layers keep its weights.
    A model option the constructor does not take raises ``ConfigError`` naming it.
    """
    from extremeq.nn.models import build_model  # pylint: disable=g-import-not-at-top

    try:
        model = build_model(config.model, num_classes, tuple(input_shape), nnx.Rngs(config.seed))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"config.model: {e}") from e
    if init_vars is not None:
        load_model_vars(model, init_vars)
    return _quantize(model, config)


def restore_model_vars(workdir: str, num_classes: int, input_shape):
    """(config, model, {"params", "model_state"}) of the latest checkpoint of a finished run."""
    cfg = load_run_config(workdir)
    model = build_quantized_model(cfg, num_classes, input_shape)
    _, params, model_state = split_model(model)
    ckpt = ckpt_lib.Checkpointer(workdir, keep=cfg.checkpoint.keep)
    try:
        model_vars, _, _ = ckpt.restore({"params": params, "model_state": model_state})
    finally:
        ckpt.close()
    return cfg, model, model_vars


def create_model(config, num_classes: int, input_shape):
    """The model to train: built, optionally initialised from ``quant.init_from`` (its latent weights,
    or with ``quant.init_weights = "quantized"`` its quantized weights in float layers), quantized."""
    if not config.quant.init_from:
        return build_quantized_model(config, num_classes, input_shape)
    src_cfg, src_model, src_vars = restore_model_vars(config.quant.init_from, num_classes, input_shape)
    if plain(src_cfg.model) != plain(config.model):
        raise ConfigError(
            f"config.quant.init_from: {config.quant.init_from!r} trained model {src_cfg.model.to_dict()}, "
            f"but this config builds {config.model.to_dict()}; they must match"
        )
    load_model_vars(src_model, src_vars)
    if config.quant.get("init_weights", "latent") == "quantized":
        from extremeq.nn.densify import densify_model  # pylint: disable=g-import-not-at-top

        densify_model(src_model)  # Dense-Sparse-Dense's re-dense start: float layers holding Q_w(W)
    return _quantize(src_model, config)


def load_teacher(config, num_classes, input_shape, mesh):
    """(teacher graph definition, its variables replicated over ``mesh``) of
    ``config.distill.teacher_workdir``, or (None, None) without a teacher."""
    if not config.distill.teacher_workdir:
        return None, None
    _, teacher, teacher_vars = restore_model_vars(config.distill.teacher_workdir, num_classes, input_shape)
    return model_spec(teacher).graphdef, distributed.replicate(teacher_vars, mesh)
