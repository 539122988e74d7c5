"""Every knob of an extremeq experiment, with its default and what it means.

The per-experiment files in this folder (``mnist_mlp.py``, ``cifar10_resnet.py``, ...) start from
``base_config()`` and override only what their paper's recipe changes. They load this file by
path (``runpy``), so they work however they are loaded: ``config_flags``, or
``extremeq.train.config.load_config_file("configs/x.py:variant")``.

The variant argument (``get_config(arg)``, the part after ``:`` on the command line) is a list of
tokens separated by ``,`` or ``:``, in any order:
  * a method: fp, bc, bc_stochastic, bwn, xnor, twn, ttq, bitnet, bnn (default: fp);
  * a model, where a file serves several (``cifar10_resnet.py:resnet56,ttq``);
  * ``key=value`` shorthands for ``config.quant``: ``ste=clipped``, ``first=int8``, ``last=same``.
Examples: ``configs/mnist_lenet5.py:twn``, ``configs/cifar10_resnet.py:resnet20:ttq``,
``configs/mnist_bnn.py:bnn,ste=tanh``. Anything else is a dotted override on the command line
(``--config.optimizer.learning_rate=0.05``).

Run directly, this file is itself a config: a small FP/quantized MLP on scikit-learn's digits.
"""

import os
import re

import ml_collections

# Methods of the precision policy (extremeq.nn.METHODS), first the float baseline.
METHODS = ("fp", "bc", "bc_stochastic", "bwn", "xnor", "twn", "ttq", "bitnet", "bnn")
# Methods whose layers binarize their inputs: the activation before them cannot be ReLU
# (sign(relu(x)) = +1), so the models use hardtanh there (BinaryNet's htanh).
BINARY_INPUT_METHODS = ("xnor", "bnn")
EDGE_PRECISIONS = ("fp", "int8", "weights", "same")
ESTIMATORS = ("ste", "clipped", "tanh", "approx_sign", "swish_sign")
QUANT_SHORTHANDS = {"ste": ESTIMATORS, "first": EDGE_PRECISIONS, "last": EDGE_PRECISIONS,
                    "init_weights": ("latent", "quantized")}


# Methods whose kernels are 1-bit (the ones BinaryConnect's per-layer learning-rate scale applies to).
BINARY_METHODS = ("bc", "bc_stochastic", "bwn", "xnor", "bnn")

def base_config() -> ml_collections.ConfigDict:
    """Every schema key (see /work/contract.md) with a default that runs on CPU in seconds."""
    c = ml_collections.ConfigDict()
    c.seed = 0  # init, data order, augmentation and dropout all derive from it
    c.num_epochs = 30  # passes over the training split
    c.loss = "cross_entropy"  # cross_entropy | squared_hinge (BinaryConnect / BinaryNet's L2-SVM output)
    c.batch_size = 128  # global training batch
    c.eval_batch_size = 512  # evaluation batch (the last one is padded and masked)
    c.max_steps = -1  # stop after this many steps; -1: num_epochs * steps_per_epoch

    c.dataset = ml_collections.ConfigDict()
    c.dataset.name = "digits"  # digits | mnist | cifar10 | cifar100 | imagenet2012 | npz
    c.dataset.source = "digits"  # digits (scikit-learn) | npz (x_train, y_train, x_test, y_test) | tfds
    c.dataset.path = ""  # npz file, for source "npz"
    c.dataset.data_dir = ""  # TFDS data_dir, for source "tfds" ("" = TFDS default)
    c.dataset.augment = ml_collections.ConfigDict()
    c.dataset.augment.crop_padding = 0  # random crop after zero-padding this many pixels (CIFAR: 4)
    c.dataset.augment.flip = False  # random horizontal flip
    c.dataset.normalize = True  # per-channel (x - mean) / std with the training split's statistics
    c.dataset.image_size = 224  # ImageNet crop size
    c.dataset.limit_train = -1  # use only the first N training examples (-1: all)
    c.dataset.validation = False  # evaluate the examples past limit_train per epoch (val_accuracy)

    c.model = ml_collections.ConfigDict()
    c.model.name = "mlp"  # a name of extremeq.nn.models.MODEL_NAMES; files add the constructor's kwargs

    c.quant = ml_collections.ConfigDict()
    c.quant.method = "fp"  # one of METHODS
    c.quant.latent_init = "keep"  # keep | uniform: BinaryConnect's U(-1, 1) latent start (bc_stochastic)
    c.quant.stochastic_eval = "sign"  # bc_stochastic at test time: sign | mean (E[w_b] = clip(W), the paper's)
    c.quant.first = "fp"  # the stem layer: fp | int8 | weights (method's weights, float inputs) | same
    c.quant.last = "fp"  # the head layer: fp | int8 | weights | same
    c.quant.ste = "ste"  # straight-through estimator of the quantizers (extremeq.ste.ESTIMATORS)
    c.quant.ste_kwargs = ml_collections.ConfigDict()  # e.g. clip_value for "clipped", beta for "tanh"
    c.quant.init_from = ""  # workdir of a finished FP run to start from (TTQ fine-tuning); "" = scratch
    # what init_from's quantized layers give: "latent" weights, or their "quantized" Q_w(W) in float
    # layers (Dense-Sparse-Dense's re-dense step from a sparse/ternary run, extremeq.nn.densify)
    c.quant.init_weights = "latent"
    c.quant.keep_fp = ()  # layer-path regexes kept float before the method's rules (e.g. ".*/downsample")

    c.optimizer = ml_collections.ConfigDict()
    c.optimizer.name = "adam"  # sgd | adam | bop (Bop for the binary latent weights)
    c.optimizer.learning_rate = 1e-3  # peak learning rate
    c.optimizer.momentum = 0.9  # SGD momentum (Adam: beta1)
    c.optimizer.nesterov = False  # Nesterov momentum (SGD)
    c.optimizer.weight_decay = 0.0  # L2 weight decay coefficient
    c.optimizer.schedule = "cosine"  # constant | step | cosine
    c.optimizer.decay_epochs = []  # "step": epochs at which the rate is multiplied by decay_factor
    c.optimizer.decay_factor = 0.1  # "step": multiplier at each decay epoch
    c.optimizer.warmup_epochs = 0.0  # linear warm-up from 0 over this many epochs
    c.optimizer.bop_threshold = 1e-8  # Bop tau (Helwegen et al. 2019)
    c.optimizer.bop_gamma = 1e-4  # Bop gamma (adaptivity rate of the gradient moving average)
    c.optimizer.binary_lr_scale = "none"  # none | glorot: binary kernels' updates times 1/H_Glorot

    c.distill = ml_collections.ConfigDict()
    c.distill.teacher_workdir = ""  # workdir of a trained teacher; "" = no distillation
    c.distill.alpha = 1.0  # lambda: weight of the distillation term
    c.distill.temperature = 4.0  # softmax temperature T of teacher and student

    c.checkpoint = ml_collections.ConfigDict()
    c.checkpoint.keep = 3  # checkpoints kept
    c.checkpoint.every_epochs = 1  # save every this many epochs
    return c


def parse_variant(arg, models=(), default_model=None):
    """``"resnet20:ttq,ste=clipped"`` -> (model, method, {"ste": "clipped"}).

    Tokens separated by ``,`` or ``:``; a method (default "fp"), a model of ``models`` (default
    ``default_model``), ``key=value`` for ``QUANT_SHORTHANDS``. Raises ValueError naming a bad token.
    """
    model, method, options = default_model, None, {}
    tokens = [t.strip() for t in re.split(r"[,:]", arg or "") if t.strip()]
    for token in tokens:
        if "=" in token:
            key, _, value = token.partition("=")
            key, value = key.strip(), value.strip()
            if key not in QUANT_SHORTHANDS:
                raise ValueError(
                    f"variant option {key!r} unknown in {arg!r}; options are {sorted(QUANT_SHORTHANDS)} "
                    "(set other keys with --config.<section>.<key>=value)"
                )
            if value not in QUANT_SHORTHANDS[key]:
                raise ValueError(f"variant option {key}={value!r} unknown; choose one of {QUANT_SHORTHANDS[key]}")
            options[key] = value
        elif token in METHODS:
            if method is not None and method != token:
                raise ValueError(f"variant {arg!r} names two methods, {method!r} and {token!r}; give one")
            method = token
        elif token in models:
            if model != default_model and model != token:
                raise ValueError(f"variant {arg!r} names two models, {model!r} and {token!r}; give one")
            model = token
        else:
            what = f"methods {list(METHODS)}" + (f", models {list(models)}" if models else "")
            raise ValueError(
                f"variant token {token!r} unknown in {arg!r}; use {what}, or key=value with key in "
                f"{sorted(QUANT_SHORTHANDS)}"
            )
    return model, method or "fp", options


def apply_method(config, method, options=None, *, first="fp", last="fp", binary_input_ste="clipped"):
    """Sets ``config.quant`` for ``method``: ``first``/``last`` precisions of the recipe, then the
    variant's ``key=value`` options. Binary-input methods (xnor, bnn) get the hardtanh activation
    and the clipped STE (gradient 1_{|x|<=1}, BinaryNet's)."""
    if method not in METHODS:
        raise ValueError(f"method {method!r} unknown; choose one of {METHODS}")
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


def mnist_path():
    """$EXTREMEQ_MNIST, else ``<repo>/../shared/data/mnist.npz`` relative to this file."""
    env = os.environ.get("EXTREMEQ_MNIST", "")
    if env:
        return env
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.path.normpath(os.path.join(repo, "..", "shared", "data", "mnist.npz"))


def get_config(arg=None):
    """Digits (8x8, scikit-learn), MLP 64-256-256-10: a smoke-size run for any method."""
    _, method, options = parse_variant(arg)
    c = base_config()
    c.model.hidden = [256, 256]
    return apply_method(c, method, options)
