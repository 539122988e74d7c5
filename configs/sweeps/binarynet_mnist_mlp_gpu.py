"""Sweep: BinaryNet / BNN (Courbariaux, Hubara et al. 2016), MNIST MLP 784-4096-4096-4096-10 with
binary weights and binary activations: 99.04 (test error 0.96%; ANCHORS.md section 2), three seeds,
real MNIST (first 50000 training images).

    python -m extremeq.sweep --config configs/sweeps/binarynet_mnist_mlp_gpu.py --workdir runs/binarynet_mnist_mlp_gpu

The GPU version: configs/mnist_bnn.py's recipe as the authors' code has it (Adam, batch 100, BN,
htanh, dropout 0.2/0.5, every dense layer binary, first layer real-valued inputs, squared hinge
loss, per-layer learning-rate scale 1/H_Glorot on the binary weights) for 50 epochs instead of
1000, with the code's per-epoch exponential decay 3e-3 -> 3e-7 compressed into those 50 epochs.
"""

import pathlib
import runpy

import ml_collections

PAPER = {"bnn": 99.04}
EPOCHS = 50
_base = runpy.run_path(str(pathlib.Path(__file__).parents[1] / "base.py"))


def get_config():
    decay_epochs, decay_factor = _base["exponential_decay"](3e-3, 3e-7, EPOCHS)
    c = ml_collections.ConfigDict()
    c.title = f"MNIST, MLP 3x4096, binary weights and activations (BinaryNet): {EPOCHS} epochs, the authors' recipe"
    c.config = "configs/mnist_bnn.py"
    c.methods = ["bnn"]
    c.seeds = [0, 1, 2]
    c.overrides = ml_collections.ConfigDict({
        "num_epochs": EPOCHS,
        "progress_bar": False,
        "optimizer": {"decay_epochs": decay_epochs, "decay_factor": decay_factor},
        "checkpoint": {"every_epochs": EPOCHS},
    })
    c.metric = "test_accuracy"
    return c
