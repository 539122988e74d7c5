"""Sweep: TWN paper, Table 2, MNIST LeNet-5 (32C5-MP2-64C5-MP2-512FC): FP 99.41, BWN 99.05,
TWN 99.35 (Li, Zhang, Liu 2016; ANCHORS.md section 2), three seeds, on real MNIST.

    python -m extremeq.sweep --config configs/sweeps/twn_mnist_lenet5.py --workdir runs/twn_mnist_lenet5

CPU budget version of configs/mnist_lenet5.py's recipe (SGD momentum 0.9, wd 1e-4, BN after every
weight layer, first conv quantized, last layer float): ONE epoch instead of the recipe's 40, batch
100 instead of 50 with lr 0.02 (linear scaling of 0.01 @ 50), cosine decay instead of x0.1 at
epochs 15/25 (which a 1-epoch run never reaches). The additions TTQ and XNOR are in
configs/sweeps/twn_mnist_lenet5_extra.py.
"""

import ml_collections

# The paper's Table 2 (top-1 %), printed beside the measured rows by experiments/repro_mnist.py.
PAPER = {"fp": 99.41, "bwn": 99.05, "twn": 99.35}


def get_config():
    c = ml_collections.ConfigDict()
    c.title = "MNIST, LeNet-5 (TWN paper, Table 2): 1 epoch"
    c.config = "configs/mnist_lenet5.py"
    c.methods = ["fp", "bwn", "twn"]
    c.seeds = [0, 1, 2]
    c.overrides = ml_collections.ConfigDict({
        "num_epochs": 1,
        "batch_size": 100,
        "progress_bar": False,
        "optimizer": {"learning_rate": 0.02, "schedule": "cosine", "decay_epochs": []},
        "checkpoint": {"every_epochs": 1},
    })
    c.metric = "test_accuracy"
    return c
