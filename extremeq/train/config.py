"""The training config schema: defaults for every key, and validation before anything runs.

``validate_config(config)`` returns a new ConfigDict with the defaults filled in, or raises
``ConfigError`` naming the offending key (``config.optimizer.learning_rate``) and what to do.
``config.model`` is open: keys besides ``name`` are passed to the model constructor and checked
against its signature.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

DATASET_NAMES = ("digits", "mnist", "cifar10", "cifar100", "imagenet2012", "npz")
SOURCE_NAMES = ("", "digits", "npz", "tfds")
OPTIMIZERS = ("sgd", "adam", "bop")
BOP_BASES = ("sgd", "adam")
SCHEDULES = ("constant", "step", "cosine")
EDGE_PRECISIONS = ("fp", "int8", "weights", "same")
STREAMED = ("imagenet2012",)
LOSS_NAMES = ("cross_entropy", "squared_hinge")
LR_SCALES = ("none", "glorot")


class ConfigError(ValueError):
    """A config value that cannot run; the message names the key."""


def default_config():
    """Every key train_and_evaluate reads, with its default (a ConfigDict)."""
    import ml_collections  # pylint: disable=g-import-not-at-top

    c = ml_collections.ConfigDict()
    c.seed = 0  # seeds init, data order (a pure function of (seed, epoch)), augmentation, dropout
    c.num_epochs = 10
    c.batch_size = 128  # global batch, split over all devices
    c.eval_batch_size = 512  # the last batch is padded (masked)
    c.max_steps = -1  # stop after this many steps (-1/None: num_epochs * steps_per_epoch)
    c.log_every_steps = 50  # host sync (non-finite check, progress) every this many steps
    c.num_devices = -1  # data-parallel over the first N devices (-1: all devices)
    c.distributed = False  # call jax.distributed.initialize() (multi-host)
    c.progress_bar = True  # tqdm over the steps of each epoch
    c.sync_every_step = False  # block_until_ready after each step (multi-device CPU tests, debugging)
    c.loss = "cross_entropy"  # or "squared_hinge" (BinaryConnect / BinaryNet's L2-SVM output)

    c.dataset = ml_collections.ConfigDict()
    c.dataset.name = "digits"
    c.dataset.source = ""  # "" picks the default for the name
    c.dataset.path = ""  # npz file
    c.dataset.data_dir = ""  # TFDS data dir
    c.dataset.augment = ml_collections.ConfigDict(dict(crop_padding=0, flip=False))
    c.dataset.normalize = True  # (x/255 - mean)/std with the train split's statistics
    c.dataset.image_size = 224  # imagenet only
    c.dataset.limit_train = -1
    # Evaluate the training examples past limit_train every epoch (val_loss, val_accuracy), and report
    # the test accuracy at the best validation epoch in final.json (BinaryConnect/BinaryNet's protocol).
    c.dataset.validation = False
    c.dataset.workers = 0  # imagenet only: grain worker processes

    c.model = ml_collections.ConfigDict(dict(name="mlp"))  # + model kwargs

    c.quant = ml_collections.ConfigDict()
    c.quant.method = "fp"
    c.quant.first = "fp"
    c.quant.last = "fp"
    c.quant.ste = "ste"
    c.quant.ste_kwargs = ml_collections.ConfigDict()
    c.quant.init_from = ""  # workdir of a finished FP run to start from
    c.quant.init_weights = "latent"  # latent | quantized (DSD re-dense: float layers holding Q_w(W))
    c.quant.keep_fp = ()  # regexes of layer paths kept float before the method's rules (Bi-Real's downsample)
    c.quant.latent_init = "keep"  # keep | uniform (BinaryConnect: quantized layers' latent W ~ U(-1, 1))
    # bc_stochastic at evaluation: "sign" (deterministic sign, the 1-bit net export packs) or "mean"
    # (E[w_b] = clip(W, -1, 1), the real-valued weights BinaryConnect's paper tests stochastic rows with)
    c.quant.stochastic_eval = "sign"

    c.optimizer = ml_collections.ConfigDict()
    c.optimizer.name = "sgd"
    c.optimizer.learning_rate = 0.1
    c.optimizer.momentum = 0.9
    c.optimizer.nesterov = False
    c.optimizer.weight_decay = 0.0
    c.optimizer.schedule = "constant"
    c.optimizer.decay_epochs = []
    c.optimizer.decay_factor = 0.1
    c.optimizer.warmup_epochs = 0.0
    # "glorot": the updates of binary kernels are multiplied by 1/H, H = sqrt(1.5/(fan_in + fan_out))
    # (BinaryConnect / BinaryNet's per-layer learning-rate scale, "W_LR_scale"); "none": not scaled.
    c.optimizer.binary_lr_scale = "none"
    c.optimizer.bop_threshold = 1e-8  # tau (Helwegen et al. 2019)
    c.optimizer.bop_gamma = 1e-4  # gamma
    c.optimizer.bop_base = "adam"  # optimizer of the non-binary parameters under Bop

    c.distill = ml_collections.ConfigDict()
    c.distill.teacher_workdir = ""
    c.distill.alpha = 1.0  # lambda
    c.distill.temperature = 4.0  # T

    c.checkpoint = ml_collections.ConfigDict()
    c.checkpoint.keep = 3
    c.checkpoint.every_epochs = 1
    return c


# Sections whose unknown keys are allowed (passed on), and keys whose values are free dicts.
_OPEN_SECTIONS = ("model",)
_FREE_DICTS = ("quant.ste_kwargs",)


def _fail(key, msg):
    raise ConfigError(f"config.{key}: {msg}")


def _merge(defaults: dict, given: dict, prefix: str = "") -> None:
    """defaults <- given, key by key (plain dicts); unknown keys are errors outside open sections."""
    for key, value in given.items():
        full = f"{prefix}{key}"
        if full in _FREE_DICTS:
            defaults[key] = dict(value or {})
            continue
        if key not in defaults:
            if prefix.rstrip(".") in _OPEN_SECTIONS:
                defaults[key] = value
                continue
            known = ", ".join(sorted(defaults))
            _fail(full, f"unknown key; known keys here: {known}")
        default = defaults[key]
        if isinstance(default, dict):
            if not isinstance(value, dict):
                _fail(full, f"must be a section (dict), got {value!r}")
            _merge(default, value, full + ".")
        else:
            defaults[key] = value


def _num(config, key, kind=float, lo=None, hi=None, lo_open=False, allow_none=False):
    node = config
    *parents, leaf = key.split(".")
    for p in parents:
        node = node[p]
    v = node[leaf]
    if v is None and allow_none:
        return v
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        _fail(key, f"must be a number, got {v!r}")
    if kind is int and int(v) != v:
        _fail(key, f"must be an integer, got {v!r}")
    if lo is not None and (v < lo or (lo_open and v == lo)):
        _fail(key, f"must be {'>' if lo_open else '>='} {lo}, got {v!r}")
    if hi is not None and v > hi:
        _fail(key, f"must be <= {hi}, got {v!r}")
    return v


def _choice(value, key, choices):
    if value not in choices:
        _fail(key, f"{value!r} unknown; choose one of {', '.join(repr(c) for c in choices)}")


def _known_methods():
    try:
        from extremeq.nn import METHODS  # pylint: disable=g-import-not-at-top

        return tuple(METHODS)
    except ImportError:
        return ("fp", "bc", "bc_stochastic", "bwn", "twn", "ttq", "bitnet", "xnor", "bnn")


def _has_binary_kernels(method) -> bool:
    try:
        from extremeq.nn import METHODS  # pylint: disable=g-import-not-at-top
        from extremeq.nn.specs import WEIGHT_QUANTIZERS  # pylint: disable=g-import-not-at-top
    except ImportError:
        return method in ("bc", "bc_stochastic", "bwn", "xnor", "bnn")
    kernel = METHODS[method][0] if method in METHODS else None
    return kernel in WEIGHT_QUANTIZERS and WEIGHT_QUANTIZERS[kernel][0] == 1


def _check_model(model_cfg):
    """The name against the zoo; the other keys are checked by ``build_model`` when it builds."""
    try:
        from extremeq.nn.models import MODEL_NAMES  # pylint: disable=g-import-not-at-top
    except ImportError:
        return
    _choice(model_cfg.name, "model.name", tuple(MODEL_NAMES))


def validate_config(config, num_devices: int | None = None):
    """Defaults filled in and every value checked; raises ``ConfigError`` naming the key."""
    import ml_collections  # pylint: disable=g-import-not-at-top

    merged = default_config().to_dict()
    given = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    _merge(merged, given)
    if merged["max_steps"] is None:
        merged["max_steps"] = -1
    c = ml_collections.ConfigDict(merged)

    _num(c, "seed", int, lo=0)
    _num(c, "num_epochs", int, lo=1)
    _num(c, "batch_size", int, lo=1)
    _num(c, "eval_batch_size", int, lo=1)
    _num(c, "log_every_steps", int, lo=1)
    if c.max_steps != -1:
        _num(c, "max_steps", int, lo=1)
    if num_devices is None:
        import jax  # pylint: disable=g-import-not-at-top

        num_devices = jax.device_count()
    if c.num_devices != -1:
        _num(c, "num_devices", int, lo=1, hi=num_devices)
        num_devices = c.num_devices
    for key in ("batch_size", "eval_batch_size"):
        if c[key] % num_devices:
            _fail(key, f"{c[key]} is not divisible by the {num_devices} devices; "
                  f"use a multiple of {num_devices}")

    _choice(c.dataset.name, "dataset.name", DATASET_NAMES)
    _choice(c.dataset.source, "dataset.source", SOURCE_NAMES)
    if c.dataset.name == "npz" and not c.dataset.path:
        _fail("dataset.path", "dataset 'npz' needs the path of an npz file")
    _num(c, "dataset.augment.crop_padding", int, lo=0)
    _num(c, "dataset.image_size", int, lo=1)
    _num(c, "dataset.limit_train", int, lo=-1)
    if not isinstance(c.dataset.validation, bool):
        _fail("dataset.validation", f"must be True or False, got {c.dataset.validation!r}")
    if c.dataset.validation and c.dataset.limit_train < 0:
        _fail("dataset.validation", "needs a held-out part of the training split: set "
              "dataset.limit_train (MNIST: 50000 keeps the last 10000 training images for validation)")
    if c.dataset.validation and c.dataset.name in STREAMED:
        _fail("dataset.validation", f"not supported for the streamed data set {c.dataset.name!r}; "
              "set it to False")
    _num(c, "dataset.workers", int, lo=0)

    if not isinstance(c.model.get("name"), str):
        _fail("model.name", "must name a model of the zoo")
    _check_model(c.model)

    _choice(c.quant.method, "quant.method", _known_methods())
    _choice(c.quant.first, "quant.first", EDGE_PRECISIONS)
    _choice(c.quant.last, "quant.last", EDGE_PRECISIONS)
    from extremeq.ste import ESTIMATORS  # pylint: disable=g-import-not-at-top

    _choice(c.quant.ste, "quant.ste", ESTIMATORS)
    _choice(c.quant.latent_init, "quant.latent_init", ("keep", "uniform"))
    _choice(c.quant.stochastic_eval, "quant.stochastic_eval", ("sign", "mean"))
    _choice(c.quant.init_weights, "quant.init_weights", ("latent", "quantized"))
    for pattern in c.quant.keep_fp:
        try:
            re.compile(pattern)
        except (re.error, TypeError) as e:
            _fail("quant.keep_fp", f"{pattern!r} is not a regular expression ({e}); give layer-path "
                  "regexes, e.g. ('.*/downsample',)")
    if c.quant.init_from:
        _check_workdir(c.quant.init_from, "quant.init_from")

    o = c.optimizer
    _choice(o.name, "optimizer.name", OPTIMIZERS)
    _choice(o.bop_base, "optimizer.bop_base", BOP_BASES)
    _choice(o.schedule, "optimizer.schedule", SCHEDULES)
    _num(c, "optimizer.learning_rate", lo=0.0, lo_open=True)
    _num(c, "optimizer.momentum", lo=0.0, hi=0.999999)
    _num(c, "optimizer.weight_decay", lo=0.0)
    _num(c, "optimizer.decay_factor", lo=0.0, hi=1.0, lo_open=True)
    _num(c, "optimizer.warmup_epochs", lo=0.0, hi=c.num_epochs)
    _num(c, "optimizer.bop_threshold", lo=0.0)
    _num(c, "optimizer.bop_gamma", lo=0.0, hi=1.0, lo_open=True)
    if o.nesterov and not o.momentum:
        _fail("optimizer.nesterov", "Nesterov needs optimizer.momentum > 0")
    for i, e in enumerate(o.decay_epochs):
        if isinstance(e, bool) or not isinstance(e, (int, float)) or not 0 <= e <= c.num_epochs:
            _fail(f"optimizer.decay_epochs[{i}]", f"must be an epoch in [0, {c.num_epochs}], got {e!r}")
    if o.schedule == "step" and not o.decay_epochs:
        _fail("optimizer.decay_epochs", "schedule 'step' needs at least one decay epoch")

    _choice(o.binary_lr_scale, "optimizer.binary_lr_scale", LR_SCALES)
    if o.binary_lr_scale != "none" and not _has_binary_kernels(c.quant.method):
        _fail("optimizer.binary_lr_scale", f"quant.method {c.quant.method!r} has no 1-bit kernels to scale; "
              "use 'none', or a binary method (bc, bc_stochastic, bwn, xnor, bnn)")
    if o.binary_lr_scale != "none" and o.name == "bop":
        _fail("optimizer.binary_lr_scale", "Bop has no learning rate for the binary kernels; use 'none' with bop")
    _choice(c.loss, "loss", LOSS_NAMES)
    if c.loss != "cross_entropy" and c.distill.teacher_workdir:
        _fail("loss", "distillation (distill.teacher_workdir) uses the cross-entropy loss; set loss = 'cross_entropy'")

    _num(c, "distill.alpha", lo=0.0)
    _num(c, "distill.temperature", lo=0.0, lo_open=True)
    if c.distill.teacher_workdir:
        _check_workdir(c.distill.teacher_workdir, "distill.teacher_workdir")
    _num(c, "checkpoint.keep", int, lo=1)
    _num(c, "checkpoint.every_epochs", int, lo=1)
    c.lock()
    return c


def _check_workdir(path, key):
    if not os.path.isfile(os.path.join(path, "config.json")):
        _fail(key, f"{path!r} is not a training workdir (no config.json in it); "
              "point it at the --workdir of a finished run")


def save_config(config, workdir):
    """workdir/config.json: the validated config (to rebuild the model as a teacher or init)."""
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(config.to_json_best_effort(indent=2, sort_keys=True))


def load_workdir_config(workdir):
    """The validated ConfigDict a run saved in ``workdir/config.json``."""
    import ml_collections  # pylint: disable=g-import-not-at-top

    with open(os.path.join(workdir, "config.json")) as f:
        raw = json.load(f)
    raw["num_devices"] = -1  # the saving run's device count does not bind a reader
    return validate_config(ml_collections.ConfigDict(raw), num_devices=1)


def load_config_file(spec: str):
    """``path/to/config.py[:arg]`` -> ``get_config(arg)`` (as ``config_flags`` does)."""
    import importlib.util  # pylint: disable=g-import-not-at-top

    path, _, arg = spec.partition(":")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file {path!r} not found")
    name = "_extremeq_config_" + os.path.splitext(os.path.basename(path))[0]
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ValueError(f"config file {path!r} has no get_config()")
    return module.get_config(arg) if arg else module.get_config()


def to_dict(config) -> dict[str, Any]:
    return json.loads(config.to_json_best_effort())
