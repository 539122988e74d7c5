"""Sweep: BinaryNet / BNN (Courbariaux, Hubara et al. 2016), MNIST MLP 784-4096-4096-4096-10 with
binary weights and binary activations: 99.04 (test error 0.96%), on real
MNIST (first 50000 training images).

    python -m extremeq.sweep --config configs/sweeps/binarynet_mnist_mlp_3ep.py --workdir runs/binarynet_mnist_mlp_3ep

CPU budget version of configs/mnist_bnn.py's recipe (Adam, batch 100, BN, htanh, dropout 0.2/0.5,
every dense layer binary, first layer real-valued inputs): ONE seed and 3 epochs instead of 1000
(binarynet_mnist_mlp.py is the same run with 1 epoch), cosine decay of lr 3e-3 instead of the per-epoch exponential 3e-3 -> 3e-7 over 1000 epochs;
softmax cross-entropy instead of the squared hinge loss. One epoch of this network costs ~12x an
epoch of the 3x1024 MLP on CPU.
"""

import pathlib
import runpy

import ml_collections

_tables = runpy.run_path(str(pathlib.Path(__file__).with_name("_mnist_tables.py")))

PAPER = _tables["BINARYNET_MLP"]


def get_config():
    c = ml_collections.ConfigDict()
    c.title = "MNIST, MLP 3x4096, binary weights and activations (BinaryNet): 3 epochs, 1 seed"
    c.config = "configs/mnist_bnn.py"
    c.methods = list(PAPER)
    c.seeds = [0]
    c.overrides = ml_collections.ConfigDict(
        _tables["merged"](
            _tables["MLP_CPU_RECIPE"],
            {"num_epochs": 3, "quant": {"latent_init": "keep"}, "checkpoint": {"every_epochs": 1}},
        )
    )
    c.metric = "test_accuracy"
    return c
