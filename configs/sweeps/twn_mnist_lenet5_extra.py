"""Sweep: additions to the TWN paper's MNIST table: TTQ (Zhu et al. 2017, learned asymmetric
scales W_p, W_n) and XNOR-Net (Rastegari et al. 2016, binary weights and inputs) on the same
LeNet-5 and the same 1-epoch budget as configs/sweeps/twn_mnist_lenet5.py; three seeds.
Neither paper reports MNIST, so there is no paper number for these rows.

    python -m extremeq.sweep --config configs/sweeps/twn_mnist_lenet5_extra.py --workdir runs/twn_mnist_lenet5_extra
"""

import ml_collections

PAPER = {}


def get_config():
    c = ml_collections.ConfigDict()
    c.title = "MNIST, LeNet-5, additions (TTQ, XNOR-Net): 1 epoch"
    c.config = "configs/mnist_lenet5.py"
    c.methods = ["ttq", "xnor"]
    c.seeds = [0, 1, 2]
    c.overrides = ml_collections.ConfigDict(
        {
            "num_epochs": 1,
            "batch_size": 100,
            "progress_bar": False,
            "optimizer": {
                "name": "adam",
                "learning_rate": 1e-3,
                "weight_decay": 1e-5,
                "schedule": "cosine",
                "decay_epochs": (),
            },
            "checkpoint": {"every_epochs": 1},
        }
    )
    c.metric = "test_accuracy"
    return c
