"""Sweep: BinaryNet / BNN, MNIST MLP 784-4096-4096-4096-10 (99.04), three
seeds, real MNIST (first 50000 training images): the recipe of the CPU runs
(configs/sweeps/binarynet_mnist_mlp_3ep.py) for 40 epochs on a GPU.

    python -m extremeq.sweep --config configs/sweeps/binarynet_mnist_mlp_gpu_ce.py --workdir runs/binarynet_mnist_mlp_gpu_ce

configs/mnist_bnn.py (Adam, batch 100, BN, htanh, dropout 0.2/0.5, every dense layer binary, first
layer real-valued inputs) with softmax cross-entropy instead of the squared hinge loss, no per-layer
1/H_Glorot learning-rate scale (lr 3e-3 on latent weights in [-1, 1]), the zoo's lecun-normal latent
start, and a cosine decay of lr 3e-3 over the 40 epochs. It stands beside
binarynet_mnist_mlp_gpu.py (the authors' loss and scale, their decay taken from its midpoint) with
the same epoch budget.
"""

import pathlib
import runpy

import ml_collections

_tables = runpy.run_path(str(pathlib.Path(__file__).with_name("_mnist_tables.py")))

PAPER = _tables["BINARYNET_MLP"]
NOTES = """Short by 1.07 points after 40 epochs (the paper: 1000); training accuracy 98.9-99.1% with
dropout on, test 97.68-98.17: the gap to the paper is the epoch budget and the protocol (the paper
reports the test error at the best validation epoch; this is the last epoch)."""
EPOCHS = 40


def get_config():
    c = ml_collections.ConfigDict()
    c.title = f"MNIST, MLP 3x4096, binary weights and activations (BinaryNet): {EPOCHS} epochs, CE, cosine"
    c.config = "configs/mnist_bnn.py"
    c.methods = list(PAPER)
    c.seeds = [0, 1, 2]
    c.overrides = ml_collections.ConfigDict(
        _tables["merged"](
            _tables["MLP_CPU_RECIPE"],
            {"num_epochs": EPOCHS, "quant": {"latent_init": "keep"}, "checkpoint": {"every_epochs": EPOCHS}},
        )
    )
    c.metric = "test_accuracy"
    return c
