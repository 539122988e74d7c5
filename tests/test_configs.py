"""configs/*.py: every file and variant loads, carries the full schema and a valid method, builds
its model, and passes the train loop's validation; bad variants fail with a clear message."""

import glob
import os
import runpy

import jax
import pytest
from flax import nnx

from extremeq.nn.models import MODEL_NAMES, build_model

ml_collections = pytest.importorskip("ml_collections")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(REPO, "configs")
# image-classification configs; language-model configs (task = "lm") are tested in tests/lm
FILES = sorted(
    f
    for f in glob.glob(os.path.join(CONFIG_DIR, "*.py"))
    if runpy.run_path(f)["get_config"]().get("task", "classify") != "lm"
)
NAMES = [os.path.basename(f)[:-3] for f in FILES]
METHODS = ("fp", "bc", "bc_stochastic", "bwn", "xnor", "twn", "ttq", "bitnet", "bnn")  # contract.md

# contract.md, "Config schema"
SCHEMA = {
    "": [
        "seed",
        "num_epochs",
        "batch_size",
        "eval_batch_size",
        "max_steps",
        "dataset",
        "model",
        "quant",
        "optimizer",
        "distill",
        "checkpoint",
    ],
    "dataset": ["name", "source", "path", "data_dir", "augment", "normalize", "image_size", "limit_train"],
    "dataset.augment": ["crop_padding", "flip"],
    "model": ["name"],
    "quant": ["method", "first", "last", "ste", "ste_kwargs", "init_from"],
    "optimizer": [
        "name",
        "learning_rate",
        "momentum",
        "nesterov",
        "weight_decay",
        "schedule",
        "decay_epochs",
        "decay_factor",
        "warmup_epochs",
        "bop_threshold",
        "bop_gamma",
    ],
    "distill": ["teacher_workdir", "alpha", "temperature"],
    "checkpoint": ["keep", "every_epochs"],
}
DATA_SHAPES = {
    "digits": ((8, 8, 1), 10),
    "mnist": ((28, 28, 1), 10),
    "cifar10": ((32, 32, 3), 10),
    "cifar100": ((32, 32, 3), 100),
    "imagenet2012": ((224, 224, 3), 1000),
}


def load(name, arg=None):
    module = runpy.run_path(os.path.join(CONFIG_DIR, name + ".py"))
    return module["get_config"](arg) if arg is not None else module["get_config"]()


def section(config, dotted):
    for part in filter(None, dotted.split(".")):
        config = config[part]
    return config


def test_expected_files_present():
    assert {
        "base",
        "digits_mlp",
        "mnist_mlp",
        "mnist_lenet5",
        "mnist_bnn",
        "cifar10_resnet",
        "cifar100_resnet",
        "cifar10_vgg7",
        "imagenet_alexnet",
        "imagenet_resnet18",
    } <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_every_variant_has_schema_and_valid_method(name):
    try:
        from extremeq.train.config import validate_config
    except ImportError:  # the train helper's module is optional here
        validate_config = None
    for method in METHODS:
        c = load(name, method)
        for sec, keys in SCHEMA.items():
            node = section(c, sec)
            missing = [k for k in keys if k not in node]
            assert not missing, f"{name}:{method} lacks config.{sec}.{missing}"
        assert c.quant.method == method
        from extremeq.nn.policy import EDGE_PRECISIONS

        assert c.quant.first in EDGE_PRECISIONS and c.quant.last in EDGE_PRECISIONS
        assert c.model.name in MODEL_NAMES
        assert c.dataset.name in DATA_SHAPES
        assert c.optimizer.schedule in ("constant", "step", "cosine")
        assert list(c.optimizer.decay_epochs) == sorted(c.optimizer.decay_epochs)
        if method in ("xnor", "bnn"):  # sign(relu(x)) == +1: binary inputs need a sign-preserving activation
            assert c.model.activation in ("hardtanh", "identity"), (name, method)
        if validate_config is not None:
            validate_config(c, num_devices=1)


@pytest.mark.parametrize("name", NAMES)
def test_default_variant_is_fp_and_builds_its_model(name):
    c = load(name)
    assert c.quant.method == "fp"
    shape, classes = DATA_SHAPES[c.dataset.name]
    if c.dataset.name == "imagenet2012":
        shape = (c.dataset.image_size, c.dataset.image_size, 3)
    for method in ("fp", "xnor"):
        cm = load(name, method)
        model = nnx.eval_shape(lambda: build_model(cm.model, classes, shape, nnx.Rngs(0)))
        out = nnx.eval_shape(lambda m, x: m(x, train=False), model, jax.ShapeDtypeStruct((2,) + shape, "float32"))
        assert out.shape == (2, classes)


def test_model_and_method_tokens_any_order():
    a = load("cifar10_resnet", "resnet56:ttq")
    b = load("cifar10_resnet", "ttq,resnet56")
    assert a.to_dict() == b.to_dict()
    assert (a.model.name, a.quant.method) == ("resnet56", "ttq")
    assert load("cifar10_resnet", "bwn").model.name == "resnet20"
    c = load("cifar100_resnet", "resnet44:twn")
    assert (c.dataset.name, c.model.name, c.quant.method) == ("cifar100", "resnet44", "twn")
    d = load("mnist_lenet5", "twn,ste=clipped,first=int8,last=same")
    assert (d.quant.ste, d.quant.first, d.quant.last) == ("clipped", "int8", "same")


@pytest.mark.parametrize(
    "arg,match",
    [
        ("twm", r"variant token 'twm' unknown in 'twm'; use methods \[.*'twn'"),
        ("twn,bwn", "names two methods"),
        ("twn,ste=clipd", r"ste='clipd' unknown; choose one of .*clipped"),
        ("twn,lr=0.1", r"option 'lr' unknown .*--config"),
        ("resnet20", "variant token 'resnet20' unknown"),  # mnist_lenet5 has one model
    ],
)
def test_bad_variants_fail_clearly(arg, match):
    with pytest.raises(ValueError, match=match):
        load("mnist_lenet5", arg)


def test_resnet_variant_lists_models_in_error():
    with pytest.raises(ValueError, match=r"models \['resnet20', 'resnet32', 'resnet44', 'resnet56'\]"):
        load("cifar10_resnet", "resnet18:ttq")


def test_exponential_decay_reaches_final_rate():
    base = runpy.run_path(os.path.join(CONFIG_DIR, "base.py"))
    epochs, r = base["exponential_decay"](3e-3, 3e-7, 1000)
    assert epochs == list(range(1, 1000))
    assert 3e-3 * r**1000 == pytest.approx(3e-7, rel=1e-9)
    c = load("mnist_bnn", "bnn")
    lr_last = c.optimizer.learning_rate * c.optimizer.decay_factor ** len(c.optimizer.decay_epochs)
    assert lr_last == pytest.approx(3e-7 / r, rel=1e-9)  # rate of the final (1000th) epoch


def test_mnist_path_env_and_default(monkeypatch):
    monkeypatch.delenv("EXTREMEQ_MNIST", raising=False)
    expected = os.path.normpath(os.path.join(REPO, "..", "shared", "data", "mnist.npz"))
    for name in ("mnist_mlp", "mnist_bnn", "mnist_lenet5"):
        c = load(name)
        assert (c.dataset.source, c.dataset.path) == ("npz", expected)
    monkeypatch.setenv("EXTREMEQ_MNIST", "/tmp/other.npz")
    assert load("mnist_lenet5").dataset.path == "/tmp/other.npz"


def test_paper_recipes():
    bc = load("mnist_mlp", "bc")  # BinaryConnect: 3x1024, batch 200, Adam, all layers binary, BN on output
    assert (
        list(bc.model.hidden),
        bc.batch_size,
        bc.optimizer.name,
        bc.quant.first,
        bc.quant.last,
        bc.model.head_bn,
        bc.dataset.limit_train,
    ) == ([1024] * 3, 200, "adam", "same", "same", True, 50000)
    bnn = load("mnist_bnn", "bnn")  # BinaryNet Theano code
    assert (
        list(bnn.model.hidden),
        bnn.batch_size,
        bnn.num_epochs,
        bnn.model.dropout,
        bnn.model.input_dropout,
        bnn.model.activation,
    ) == ([4096] * 3, 100, 1000, 0.5, 0.2, "hardtanh")
    twn = load("mnist_lenet5", "twn")
    assert (twn.model.name, twn.batch_size, twn.optimizer.learning_rate, list(twn.optimizer.decay_epochs)) == (
        "lenet5",
        50,
        0.01,
        [15, 25],
    )
    ttq = load("cifar10_resnet", "resnet20:ttq")  # czhu95/ternarynet tw-cifar10-resnet.py
    assert (
        list(ttq.optimizer.decay_epochs),
        ttq.optimizer.weight_decay,
        ttq.batch_size,
        ttq.quant.first,
        ttq.quant.last,
    ) == ([82, 123, 150], 2e-4, 128, "fp", "fp")
    fp = load("cifar10_resnet", "resnet20")  # He et al.: 32k/48k/64k iterations at 391 per epoch
    assert [round(i / 391) for i in (32000, 48000, 64000)] == list(fp.optimizer.decay_epochs) + [fp.num_epochs]
    assert (fp.dataset.augment.crop_padding, fp.dataset.augment.flip, fp.model.shortcut) == (4, True, "A")
    vgg = load("cifar10_vgg7", "twn")
    assert (vgg.batch_size, list(vgg.optimizer.decay_epochs), vgg.model.name) == (100, [80, 120], "vgg7")
    alex = load("imagenet_alexnet", "xnor")
    assert (alex.batch_size, alex.num_epochs, alex.model.dropout, alex.quant.first, alex.quant.last) == (
        128,
        55,
        0.0,
        "fp",
        "fp",
    )
    assert load("imagenet_resnet18").model.shortcut == "B"
