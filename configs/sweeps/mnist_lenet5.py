"""Sweep: the TWN paper's MNIST table (Li et al. 2016, Table 2: LeNet-5 FP 99.41, BWN 99.05,
TWN 99.35) on configs/mnist_lenet5.py, three seeds.

    python -m extremeq.sweep --config configs/sweeps/mnist_lenet5.py --workdir runs/mnist_lenet5
"""

import pathlib
import runpy

import ml_collections

_tables = runpy.run_path(str(pathlib.Path(__file__).with_name("_mnist_tables.py")))


def get_config():
    c = ml_collections.ConfigDict()
    c.title = "MNIST, LeNet-5 (TWN paper, Table 2)"
    c.config = "configs/mnist_lenet5.py"
    c.methods = list(_tables["TWN_LENET5"])
    c.seeds = [0, 1, 2]
    c.overrides = ml_collections.ConfigDict({"progress_bar": False})
    c.metric = "test_accuracy"
    return c
