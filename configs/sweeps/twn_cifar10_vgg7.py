"""Sweep (recipe, needs a GPU; data: the CIFAR-10 JPEG archive or TFDS): the TWN paper's CIFAR-10 row (Li, Zhang, Liu
2016, Table 2), VGG-7: FP 92.88, BWN 90.18, TWN 92.56. Recipe: configs/cifar10_vgg7.py (SGD 0.1,
momentum 0.9, wd 1e-4, batch 100, x0.1 at 80/120, 150 epochs, pad-4 crop + flip).

    python -m extremeq.sweep --config configs/sweeps/twn_cifar10_vgg7.py --workdir runs/twn_cifar10_vgg7
"""

import ml_collections

PAPER = {"fp": 92.88, "bwn": 90.18, "twn": 92.56}


def get_config():
    c = ml_collections.ConfigDict()
    c.title = "CIFAR-10, VGG-7: FP, BWN, TWN (TWN paper, Table 2)"
    c.config = "configs/cifar10_vgg7.py"
    c.methods = ["fp", "bwn", "twn"]
    c.seeds = [0]
    c.overrides = ml_collections.ConfigDict({"progress_bar": False})
    c.metric = "test_accuracy"
    return c
