"""The CIFAR-10 and ImageNet paper recipes (configs/sweeps/*.py) stay runnable without the data.

Every row of every recipe sweep is loaded, validated and checked against its paper: the paper
numbers beside the rows are the papers', and the recipe knobs the papers fix (TTQ's
schedule, first/last layer float, pad-4 crop + flip on CIFAR) are what the configs say. Then one
row per recipe file, the one with the most machinery (TTQ, XNOR, BNN), trains a couple of steps
on ``tfds.testing.mock_data`` (no download, no TensorFlow; mocked ImageNet images have random
sizes) with a shrunk network, and must finish with finite metrics and quantized weights that take
only the values its method allows.
"""

import math
import os
import runpy

import numpy as np
import pytest

ml_collections = pytest.importorskip("ml_collections")
tfds = pytest.importorskip("tensorflow_datasets")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The papers' top-1 %, typed in independently of the sweep files.
ANCHORS = {
    "ttq_cifar10_resnet": {
        "resnet20:fp": 91.77,
        "resnet32:fp": 92.33,
        "resnet44:fp": 92.82,
        "resnet56:fp": 93.20,
        "resnet20:ttq": 91.13,
        "resnet32:ttq": 92.37,
        "resnet44:ttq": 92.98,
        "resnet56:ttq": 93.56,
    },
    "twn_cifar10_vgg7": {"fp": 92.88, "twn": 92.56, "bwn": 90.18},
    "irnet_cifar10_resnet20": {"resnet20:fp": 91.7, "resnet20:bwn": 90.8, "resnet20:bnn": 86.5},
    "xnor_imagenet_alexnet": {"fp": 56.6, "bwn": 56.8, "xnor": 44.2},
    "imagenet_resnet18": {"fp": 69.3, "bwn": 60.8, "xnor": 51.2, "twn": 61.8, "ttq": 66.6},
}
# Rows that train by default: one in-memory CIFAR recipe and one streamed ImageNet recipe (together the
# two data paths and the TTQ / XNOR machinery). The other three cost 1-4 minutes each on 2 shared CPU
# cores (mostly XLA compilation); EXTREMEQ_RECIPE_SMOKE=all trains them too.
DEFAULT_SMOKE = ("ttq_cifar10_resnet", "xnor_imagenet_alexnet")
# (method of the training row, model overrides that shrink it, dataset overrides)
SMOKE = {
    "ttq_cifar10_resnet": ("resnet20:ttq", dict(width=4), {}),
    "twn_cifar10_vgg7": ("twn", dict(width=4, fc_features=16), {}),
    "irnet_cifar10_resnet20": ("resnet20:bnn", dict(width=4), {}),
    "xnor_imagenet_alexnet": ("xnor", dict(fc_features=16), dict(image_size=67)),
    "imagenet_resnet18": ("ttq", dict(width=4), dict(image_size=32)),
}


def _sweep(name):
    mod = runpy.run_path(os.path.join(REPO, "configs", "sweeps", f"{name}.py"))
    return mod["get_config"](), mod["PAPER"]


def _row_configs(sweep):
    from extremeq.sweep import run_config

    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        return {m: run_config(sweep, m, sweep.seeds[0]) for m in sweep.methods}
    finally:
        os.chdir(cwd)


@pytest.mark.parametrize("name", sorted(ANCHORS))
def test_recipe_rows_validate_and_carry_the_papers_numbers(name):
    from extremeq.sweep import check_sweep_config
    from extremeq.train.config import validate_config

    sweep, paper = _sweep(name)
    check_sweep_config(sweep)
    assert set(paper) == set(sweep.methods), "every row needs a paper entry (None where the paper has none)"
    for method, value in ANCHORS[name].items():
        assert paper[method] == value, f"{name} {method}: {paper[method]} != the paper's {value}"
    for method, config in _row_configs(sweep).items():
        if config.quant.init_from:  # "@<model>:fp": the FP row's run of the same seed (TTQ's protocol)
            assert config.quant.init_from == os.path.join(method.split(":")[0] + "_fp", f"seed{sweep.seeds[0]}")
            config.quant.init_from = ""  # that run does not exist here
        c = validate_config(config)
        q = method.split(":")[-1]
        assert c.quant.method == q
        assert c.quant.last == "fp", "every paper here keeps the classifier in float"
        if c.dataset.name == "cifar10":
            assert c.dataset.augment.crop_padding == 4 and c.dataset.augment.flip
            # "": the CIFAR-10 JPEG archive when present, else TFDS (extremeq.data.sources._default_source).
            assert c.dataset.source == "" and c.optimizer.name == "sgd" and c.optimizer.learning_rate == 0.1
        if name == "ttq_cifar10_resnet" and q == "ttq":
            assert list(c.optimizer.decay_epochs) == [82, 123, 150] and c.optimizer.weight_decay == 2e-4
        if name.startswith("irnet"):
            assert c.optimizer.schedule == "cosine" and c.num_epochs == 400


def _train_a_few_steps(config, workdir):
    from extremeq.train import train_and_evaluate

    with tfds.testing.mock_data(num_examples=8):
        return train_and_evaluate(config, workdir)


@pytest.mark.parametrize("name", sorted(SMOKE))
def test_recipe_trains_on_mock_data(name, tmp_path):
    from extremeq.nn import quant_layers
    from extremeq.train.model import load_model_vars, restore_model_vars

    if name not in DEFAULT_SMOKE and os.environ.get("EXTREMEQ_RECIPE_SMOKE") != "all":
        pytest.skip("slow recipe smoke run; set EXTREMEQ_RECIPE_SMOKE=all to train it")
    sweep, _ = _sweep(name)
    method, model_kw, data_kw = SMOKE[name]
    config = _row_configs(sweep)[method]
    for key, value in model_kw.items():
        config.model[key] = value
    for key, value in data_kw.items():
        config.dataset[key] = value
    config.dataset.data_dir = str(tmp_path / "no_tfds_here")
    config.quant.init_from = ""  # the machinery from scratch (the FP row it fine-tunes from is not run)
    config.dataset.source = "tfds" if config.dataset.name == "cifar10" else config.dataset.source  # mocked
    config.batch_size = 4
    config.eval_batch_size = 4
    config.num_epochs = 1  # 8 mocked examples / batch 4 = 2 steps, then one evaluation
    config.optimizer.warmup_epochs = 0.0
    if config.optimizer.schedule == "step":  # decay epochs past a 1-epoch run are invalid
        config.optimizer.schedule = "cosine"
        config.optimizer.decay_epochs = []
    config.progress_bar = False
    config.checkpoint.every_epochs = 1
    workdir = str(tmp_path / "run")
    result = _train_a_few_steps(config, workdir)
    assert result["finished"] and result["step"] == 2
    assert math.isfinite(result["train_loss"]) and math.isfinite(result["test_loss"])
    assert 0.0 <= result["test_accuracy"] <= 1.0

    shape = (config.dataset.image_size,) * 2 + (3,) if config.dataset.name == "imagenet2012" else (32, 32, 3)
    classes = 1000 if config.dataset.name == "imagenet2012" else 10
    _, model, model_vars = restore_model_vars(workdir, classes, shape)
    load_model_vars(model, model_vars)
    q = method.split(":")[-1]
    layers = dict(quant_layers(model))
    assert "head" not in layers, "the classifier must stay float"
    assert ("stem" in layers) == (config.quant.first == "same"), "first layer precision differs from the recipe"
    assert layers, "the recipe quantized no layer"
    for path, layer in layers.items():
        w = np.asarray(layer.quantized_kernel())
        if q == "ttq":  # {-W_n, 0, W_p} per layer
            allowed = {0.0, float(np.ravel(layer.ttq_wp[...])[0]), -float(np.ravel(layer.ttq_wn[...])[0])}
            assert set(np.unique(w).tolist()) <= allowed, path
        elif q == "twn":  # {-alpha, 0, alpha}
            nonzero = np.abs(w[w != 0])
            np.testing.assert_allclose(nonzero, nonzero.max(), rtol=1e-6, err_msg=path)
        elif q == "bnn":  # +-1
            assert set(np.unique(w).tolist()) <= {-1.0, 1.0}, path
        elif q == "xnor":  # alpha * sign(W) per output channel: two values per channel, symmetric
            flat = w.reshape(-1, w.shape[-1])
            np.testing.assert_allclose(np.abs(flat), np.broadcast_to(np.abs(flat).max(0), flat.shape), rtol=1e-6)
