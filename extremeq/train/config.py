"""The training config: one schema (``default_config``, every knob with its default and meaning) and
its validation (``validate_config``), run once before anything trains.

Config files (``configs/*.py``) start from ``default_config()`` by a normal import and override only
what their paper's recipe changes (the shape of flax's ``examples/imagenet/configs/default.py`` and
big_vision's ``configs/common.py``); ``extremeq.train.variants`` parses their variant argument.
List-valued keys are tuples, so ml_collections itself parses ``--config.model.hidden=(512,512)``
(``[512,512]`` is read as the same tuple). ``config.model`` is open: keys besides ``name`` are
passed to the model constructor and checked against its signature when the model is built.

``validate_config(config)`` returns a new, locked ConfigDict with the defaults filled in, or raises
``ConfigError`` naming the offending key (``config.optimizer.learning_rate``) and what to do.
"""

from __future__ import annotations

import os
import re

import ml_collections

from extremeq.data.sources import DATASET_NAMES, SOURCE_NAMES, STREAMED_NAMES, default_mnist_path

# The method tables are live views of the method registry (``extremeq.methods``): a method registered
# from a file of your own (imported by the config file, or before ``train_and_evaluate``) is accepted.
from extremeq.methods import (  # noqa: F401  (re-exported for config files and variants)
    BINARY_INPUT_METHODS,  # methods whose inputs are 1-bit: no ReLU before them (sign(relu(x)) = +1)
    BINARY_METHODS,  # methods whose kernels are 1-bit (BinaryConnect's per-layer learning-rate scale)
    METHODS,  # method -> (weight quantizer, input quantizer)
)
from extremeq.nn.policy import EDGE_PRECISIONS, STOCHASTIC_EVALS  # first/last layers; bc_stochastic eval
from extremeq.ste import ESTIMATORS

OPTIMIZERS = ("sgd", "adam", "bop")
BOP_BASES = ("sgd", "adam")
SCHEDULES = ("constant", "step", "cosine")
LOSS_NAMES = ("cross_entropy", "squared_hinge")
LR_SCALES = ("none", "glorot")
LATENT_INITS = ("keep", "uniform")
INIT_WEIGHTS = ("latent", "quantized")  # quant.init_weights (DSD re-dense: "quantized")


class ConfigError(ValueError):
    """A config value that cannot run; the message names the key and what to do."""


def mnist_path() -> str:
    """$EXTREMEQ_MNIST, else ``<repo>/../shared/data/mnist.npz`` (the data package's default)."""
    return os.path.normpath(str(default_mnist_path()))


def default_config() -> ml_collections.ConfigDict:
    """Every key ``train_and_evaluate`` reads, with its default: a small MLP on scikit-learn's digits."""
    c = ml_collections.ConfigDict()
    c.seed = 0  # init, data order (a pure function of (seed, epoch)), augmentation, dropout
    c.num_epochs = 10  # passes over the training split
    c.batch_size = 128  # global training batch, split over all devices
    c.eval_batch_size = 512  # evaluation batch (the last one is padded and masked)
    c.max_steps = -1  # stop after this many steps (-1: num_epochs * steps_per_epoch)
    c.log_every_steps = 50  # host sync (non-finite check) every this many steps
    c.num_devices = -1  # data-parallel over the first N devices (-1: all devices)
    c.cpu_devices = 1  # on a CPU host: split its cores into N XLA devices for the mesh (distributed.split_cpu)
    c.distributed = False  # call jax.distributed.initialize() first (several processes or hosts)
    # With distributed=True: where process 0 listens and who this process is. Empty / 0 / -1: detected
    # by JAX from the environment (Cloud TPU pod slices, SLURM, Open MPI, Kubernetes); set all three
    # to launch processes by hand (extremeq.train.distributed).
    c.cluster = ml_collections.ConfigDict()
    c.cluster.coordinator_address = ""  # host:port of process 0, e.g. "10.0.0.1:1234"
    c.cluster.num_processes = 0  # processes in the job (0: detected)
    c.cluster.process_id = -1  # this process, 0..num_processes-1 (-1: detected)
    c.progress_bar = True  # tqdm over the steps of each epoch
    c.sync_every_step = False  # block_until_ready after each step (multi-device CPU tests, debugging)
    c.loss = "cross_entropy"  # cross_entropy | squared_hinge (BinaryConnect / BinaryNet's L2-SVM output)
    # Resume a run although this config differs from the one it was started with; the change and the
    # step it applies from are recorded in <workdir>/config_changes.jsonl.
    c.resume_with_changes = False

    c.dataset = ml_collections.ConfigDict()
    c.dataset.name = "digits"  # one of DATASET_NAMES: digits | mnist | cifar10 | cifar100 | imagenet2012 | npz
    c.dataset.source = ""  # digits (scikit-learn) | npz | tfds; "" picks the default for the name
    c.dataset.path = ""  # npz file (x_train, y_train, x_test, y_test), for source "npz"
    c.dataset.data_dir = ""  # TFDS data_dir, for source "tfds" ("" = TFDS default)
    c.dataset.num_classes = 0  # labels lie in [0, num_classes); 0: as the data set declares (or max label + 1)
    c.dataset.augment = ml_collections.ConfigDict()
    c.dataset.augment.crop_padding = 0  # random crop after zero-padding this many pixels (CIFAR: 4)
    c.dataset.augment.flip = False  # random horizontal flip
    c.dataset.normalize = True  # per-channel (x/255 - mean) / std with the training split's statistics
    c.dataset.image_size = 224  # ImageNet crop size
    c.dataset.limit_train = -1  # use only the first N training examples (-1: all)
    # Evaluate the training examples past limit_train every epoch (val_loss, val_accuracy) and report
    # the test accuracy at the best validation epoch in final.json (BinaryConnect/BinaryNet's protocol).
    c.dataset.validation = False
    c.dataset.workers = 0  # ImageNet only: grain worker processes

    c.model = ml_collections.ConfigDict()
    c.model.name = "mlp"  # a name of extremeq.nn.models.MODEL_NAMES; files add the constructor's kwargs

    c.quant = ml_collections.ConfigDict()
    c.quant.method = "fp"  # one of METHODS
    c.quant.first = "fp"  # the stem layer: fp | int8 | weights (method's weights, float inputs) | same
    c.quant.last = "fp"  # the head layer: fp | int8 | weights | same
    c.quant.ste = "ste"  # straight-through estimator of the quantizers (extremeq.ste.ESTIMATORS)
    c.quant.ste_kwargs = ml_collections.ConfigDict()  # e.g. clip_value for "clipped", beta for "tanh"
    c.quant.init_from = ""  # workdir of a finished FP run to start from (TTQ fine-tuning); "" = scratch
    # with init_from: re-estimate BatchNorm's running statistics of the quantized model on this many
    # training batches before the first step (extremeq.nn.batch_norm); 0 keeps the FP run's statistics
    c.quant.init_bn_batches = 20
    # what init_from's quantized layers give: their "latent" weights, or their "quantized" Q_w(W) in float
    # layers (Dense-Sparse-Dense's re-dense step from a sparse/ternary run, extremeq.nn.densify)
    c.quant.init_weights = "latent"
    c.quant.keep_fp = ()  # layer-path regexes kept float ahead of the method's rules (Bi-Real's ".*/downsample")
    c.quant.latent_init = "keep"  # keep | uniform: BinaryConnect's U(-1, 1) start of the latent weights
    # bc_stochastic at evaluation: "sign" (deterministic sign, the 1-bit net export packs) or "mean"
    # (E[w_b] = clip(W, -1, 1), the real-valued weights BinaryConnect's paper tests stochastic rows with)
    c.quant.stochastic_eval = "sign"

    c.optimizer = ml_collections.ConfigDict()
    c.optimizer.name = "sgd"  # sgd | adam | bop (Bop for the binary latent weights)
    c.optimizer.learning_rate = 0.1  # peak learning rate
    c.optimizer.momentum = 0.9  # SGD momentum (Adam: beta1)
    c.optimizer.nesterov = False  # Nesterov momentum (SGD)
    c.optimizer.weight_decay = 0.0  # L2 weight decay coefficient
    c.optimizer.schedule = "constant"  # constant | step | cosine
    c.optimizer.decay_epochs = ()  # "step": epochs at which the rate is multiplied by decay_factor
    c.optimizer.decay_factor = 0.1  # "step": multiplier at each decay epoch
    c.optimizer.warmup_epochs = 0.0  # linear warm-up from 0 over this many epochs
    # "glorot": the updates of binary kernels are multiplied by 1/H, H = sqrt(1.5/(fan_in + fan_out))
    # (BinaryConnect / BinaryNet's per-layer learning-rate scale, "W_LR_scale"); "none": not scaled.
    c.optimizer.binary_lr_scale = "none"
    c.optimizer.bop_threshold = 1e-8  # Bop tau (Helwegen et al. 2019)
    c.optimizer.bop_gamma = 1e-4  # Bop gamma (adaptivity rate of the gradient moving average)
    c.optimizer.bop_base = "adam"  # optimizer of the non-binary parameters under Bop

    c.distill = ml_collections.ConfigDict()
    c.distill.teacher_workdir = ""  # workdir of a trained teacher; "" = no distillation
    c.distill.alpha = 1.0  # lambda: weight of the distillation term
    c.distill.temperature = 4.0  # softmax temperature T of teacher and student

    c.checkpoint = ml_collections.ConfigDict()
    c.checkpoint.keep = 3  # checkpoints kept
    c.checkpoint.every_epochs = 1  # save every this many epochs
    return c


# Sections whose unknown keys are allowed (passed on), and keys whose values are free dicts.
OPEN_SECTIONS = ("model",)
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
            if prefix.rstrip(".") in OPEN_SECTIONS:
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


def _tuples(value):
    """Lists as tuples, in nested dicts too (list-valued keys are tuples, which ml_collections parses)."""
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(value)
    return value


def with_defaults(config) -> ml_collections.ConfigDict:
    """``default_config()`` with the keys ``config`` sets (unlocked, unchecked); unknown keys raise."""
    merged = default_config().to_dict()
    _merge(merged, config.to_dict() if hasattr(config, "to_dict") else dict(config))
    return ml_collections.ConfigDict(_tuples(merged))


def _at(config, key):
    """The value at dotted ``key``."""
    for part in key.split("."):
        config = config[part]
    return config


def _num(config, key, kind=float, lo=None, hi=None, lo_open=False):
    v = _at(config, key)
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


def _flag(value, key):
    if not isinstance(value, bool):
        _fail(key, f"must be True or False, got {value!r}")


def validate_config(config, num_devices: int | None = None):
    """Defaults filled in and every value checked; raises ``ConfigError`` naming the key."""
    c = with_defaults(config)
    if c.max_steps is None:
        c.max_steps = -1

    _num(c, "seed", int, lo=0)
    _num(c, "num_epochs", int, lo=1)
    _num(c, "batch_size", int, lo=1)
    _num(c, "eval_batch_size", int, lo=1)
    _num(c, "log_every_steps", int, lo=1)
    _num(c, "cpu_devices", int, lo=1)
    if c.max_steps != -1:
        _num(c, "max_steps", int, lo=1)
    for key in (
        "distributed",
        "progress_bar",
        "sync_every_step",
        "resume_with_changes",
        "dataset.normalize",
        "dataset.validation",
        "dataset.augment.flip",
    ):
        _flag(_at(c, key), key)
    _num(c, "cluster.num_processes", int, lo=0)
    _num(c, "cluster.process_id", int, lo=-1)
    if c.cluster.num_processes and c.cluster.process_id >= c.cluster.num_processes:
        _fail(
            "cluster.process_id",
            f"{c.cluster.process_id} is not below cluster.num_processes = "
            f"{c.cluster.num_processes}; number the processes 0..{c.cluster.num_processes - 1}",
        )
    processes = 1
    if num_devices is None:
        import jax  # pylint: disable=g-import-not-at-top

        num_devices, processes = jax.device_count(), jax.process_count()
    if c.num_devices != -1 and processes > 1 and c.num_devices != num_devices:
        _fail(
            "num_devices",
            f"{c.num_devices} with {processes} processes: a run over several processes "
            f"uses all {num_devices} of their devices; set it to -1",
        )
    if c.num_devices != -1:
        _num(c, "num_devices", int, lo=1, hi=num_devices)
        num_devices = c.num_devices
    for key in ("batch_size", "eval_batch_size"):
        if c[key] % num_devices:
            _fail(key, f"{c[key]} is not divisible by the {num_devices} devices; use a multiple of {num_devices}")

    _choice(c.dataset.name, "dataset.name", DATASET_NAMES)
    _choice(c.dataset.source, "dataset.source", ("",) + SOURCE_NAMES)
    if c.dataset.name == "npz" and not c.dataset.path:
        _fail("dataset.path", "dataset 'npz' needs the path of an npz file")
    if c.dataset.name == "image_folder" and not c.dataset.path:
        _fail("dataset.path", "dataset 'image_folder' needs a folder or .tar(.gz) of <split>/<class>/<image>")
    _num(c, "dataset.augment.crop_padding", int, lo=0)
    _num(c, "dataset.image_size", int, lo=1)
    _num(c, "dataset.limit_train", int, lo=-1)
    _num(c, "dataset.num_classes", int, lo=0)
    if c.dataset.validation and c.dataset.limit_train < 0:
        _fail(
            "dataset.validation",
            "needs a held-out part of the training split: set "
            "dataset.limit_train (MNIST: 50000 keeps the last 10000 training images for validation)",
        )
    if c.dataset.validation and c.dataset.name in STREAMED_NAMES:
        _fail("dataset.validation", f"not supported for the streamed data set {c.dataset.name!r}; set it to False")
    _num(c, "dataset.workers", int, lo=0)

    from extremeq.nn.models import MODEL_NAMES  # pylint: disable=g-import-not-at-top

    if not isinstance(c.model.get("name"), str):
        _fail("model.name", "must name a model of the zoo")
    _choice(c.model.name, "model.name", tuple(MODEL_NAMES))

    _choice(c.quant.method, "quant.method", tuple(METHODS))
    _choice(c.quant.first, "quant.first", EDGE_PRECISIONS)
    _choice(c.quant.last, "quant.last", EDGE_PRECISIONS)
    _choice(c.quant.ste, "quant.ste", ESTIMATORS)
    _choice(c.quant.latent_init, "quant.latent_init", LATENT_INITS)
    _choice(c.quant.stochastic_eval, "quant.stochastic_eval", STOCHASTIC_EVALS)
    _choice(c.quant.init_weights, "quant.init_weights", INIT_WEIGHTS)
    if isinstance(c.quant.keep_fp, str):
        _fail(
            "quant.keep_fp",
            f"must be a tuple of layer-path regexes, got the string {c.quant.keep_fp!r}; write ('.*/downsample',)",
        )
    for pattern in c.quant.keep_fp:
        try:
            re.compile(pattern)
        except (re.error, TypeError) as e:
            _fail(
                "quant.keep_fp",
                f"{pattern!r} is not a regular expression ({e}); give layer-path regexes, e.g. ('.*/downsample',)",
            )
    if c.quant.init_from:
        _check_run_dir(c.quant.init_from, "quant.init_from")
    _num(c, "quant.init_bn_batches", int, lo=0)
    if c.quant.init_from and c.quant.init_bn_batches and c.dataset.name in STREAMED_NAMES:
        _fail(
            "quant.init_bn_batches",
            f"re-estimates BatchNorm on in-memory data only, not on the streamed "
            f"data set {c.dataset.name!r}; set it to 0",
        )

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
    if o.binary_lr_scale != "none" and c.quant.method not in BINARY_METHODS:
        _fail(
            "optimizer.binary_lr_scale",
            f"quant.method {c.quant.method!r} has no 1-bit kernels to scale; "
            f"use 'none', or a binary method ({', '.join(BINARY_METHODS)})",
        )
    if o.binary_lr_scale != "none" and o.name == "bop":
        _fail("optimizer.binary_lr_scale", "Bop has no learning rate for the binary kernels; use 'none' with bop")
    _choice(c.loss, "loss", LOSS_NAMES)
    if c.loss != "cross_entropy" and c.distill.teacher_workdir:
        _fail("loss", "distillation (distill.teacher_workdir) uses the cross-entropy loss; set loss = 'cross_entropy'")

    _num(c, "distill.alpha", lo=0.0)
    _num(c, "distill.temperature", lo=0.0, lo_open=True)
    if c.distill.teacher_workdir:
        _check_run_dir(c.distill.teacher_workdir, "distill.teacher_workdir")
    _num(c, "checkpoint.keep", int, lo=1)
    _num(c, "checkpoint.every_epochs", int, lo=1)
    c.lock()
    return c


def _check_run_dir(path, key):
    if not os.path.isfile(os.path.join(path, "config.json")):
        _fail(
            key,
            f"{path!r} is not a training workdir (no config.json in it); point it at the --workdir of a finished run",
        )


def load_config_file(spec: str):
    """``path/to/config.py[:arg]`` -> ``get_config(arg)``, as ``config_flags`` loads it.

    Raises ``ConfigError`` for a missing file or one without ``get_config``; errors of the file's own
    ``get_config`` (an unknown variant token: ValueError) propagate unchanged.
    """
    import importlib.util  # pylint: disable=g-import-not-at-top

    path, _, arg = spec.partition(":")
    if not os.path.isfile(path):
        raise ConfigError(
            f"config file {path!r} not found (the repository's configs are in configs/, "
            "e.g. --config=configs/digits_mlp.py:twn)"
        )
    name = "_extremeq_config_" + os.path.splitext(os.path.basename(path))[0]
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"config file {path!r} has no get_config(); define get_config(arg=None)")
    return module.get_config(arg) if arg else module.get_config()
