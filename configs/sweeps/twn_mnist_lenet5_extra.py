"""Sweep: additions to the TWN paper's MNIST table: TTQ (Zhu et al. 2017, learned asymmetric
scales W_p, W_n) and XNOR-Net (Rastegari et al. 2016, binary weights and inputs) on the same
LeNet-5 and the same 1-epoch budget as configs/sweeps/twn_mnist_lenet5.py; three seeds.
Neither paper reports MNIST, so there is no paper number for these rows.

    python -m extremeq.sweep --config configs/sweeps/twn_mnist_lenet5_extra.py --workdir runs/twn_mnist_lenet5_extra
"""

import pathlib
import runpy

import ml_collections

_tables = runpy.run_path(str(pathlib.Path(__file__).with_name("_mnist_tables.py")))

PAPER = {}


def get_config():
    c = ml_collections.ConfigDict()
    c.title = "MNIST, LeNet-5, additions (TTQ, XNOR-Net): 1 epoch"
    c.config = "configs/mnist_lenet5.py"
    c.methods = ["ttq", "xnor"]
    c.seeds = [0, 1, 2]
    c.overrides = ml_collections.ConfigDict(_tables["LENET5_ONE_EPOCH"])
    c.metric = "test_accuracy"
    return c
