"""Sweep: BinaryNet / BNN (Courbariaux, Hubara et al. 2016), MNIST MLP 784-4096-4096-4096-10 with
binary weights and binary activations: 99.04 (test error 0.96%), three seeds,
real MNIST (first 50000 training images).

    python -m extremeq.sweep --config configs/sweeps/binarynet_mnist_mlp_gpu.py --workdir runs/binarynet_mnist_mlp_gpu

The GPU version: configs/mnist_bnn.py's recipe as the authors' code has it (Adam, batch 100, BN,
htanh, dropout 0.2/0.5, every dense layer binary, first layer real-valued inputs, squared hinge
loss, per-layer learning-rate scale 1/H_Glorot on the binary weights, U(-1, 1) latent start) for
40 epochs instead of 1000, with the code's per-epoch exponential decay taken from its midpoint:
lr 3e-5 -> 3e-7 (the code's rate at epoch 500 of 1000, and at its end) over the 40 epochs.

Why not the whole decay 3e-3 -> 3e-7 compressed into the budget: a first H100 run did that in 50
epochs and ended at 96.10 +- 0.28 (95.87, 96.02, 96.42): with the 1/H scale (52-74 here) the
early rates flip 40-48% of the binary weights per epoch (flip_ratio in metrics.jsonl), and the net
only settles once the rate is below ~1e-4, which left too few epochs. The paper's 1000-epoch run
spends ~500 epochs above 3e-5.
"""

import pathlib
import runpy

import ml_collections

from extremeq.train.variants import exponential_decay

_tables = runpy.run_path(str(pathlib.Path(__file__).with_name("_mnist_tables.py")))

PAPER = _tables["BINARYNET_MLP"]
NOTES = """Short: the first H100 run (the whole decay 3e-3 -> 3e-7 in 50 epochs) ended at 96.10 +- 0.28
(95.87, 96.02, 96.42) with 40-48% of the binary weights flipping per epoch early on; this run (decay
from its midpoint, 3e-5 -> 3e-7, 40 epochs) underfits: 90.6% training accuracy, 93.51% test. The
authors' 1000 epochs are what this recipe needs; binarynet_mnist_mlp_gpu_ce.py gets 97.97 in 40."""
EPOCHS = 40


def get_config():
    decay_epochs, decay_factor = exponential_decay(3e-5, 3e-7, EPOCHS)
    c = ml_collections.ConfigDict()
    c.title = f"MNIST, MLP 3x4096, binary weights and activations (BinaryNet): {EPOCHS} epochs, the authors' recipe"
    c.config = "configs/mnist_bnn.py"
    c.methods = list(PAPER)
    c.seeds = [0, 1, 2]
    c.overrides = ml_collections.ConfigDict(
        {
            "num_epochs": EPOCHS,
            "progress_bar": False,
            "optimizer": {"learning_rate": 3e-5, "decay_epochs": decay_epochs, "decay_factor": decay_factor},
            "checkpoint": {"every_epochs": EPOCHS},
        }
    )
    c.metric = "test_accuracy"
    return c
