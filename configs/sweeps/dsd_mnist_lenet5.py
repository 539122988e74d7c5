"""Sweep: Dense-Sparse-Dense (Han et al., ICLR 2017) on MNIST LeNet-5, with a ternary sparse phase.

    python -m extremeq.sweep --config configs/sweeps/dsd_mnist_lenet5.py --workdir runs/dsd_mnist_lenet5

Three dependent rows, each starting from the previous one's final weights (``"@<method>"``):

1. ``fp``: dense float training.
2. ``twn``: sparse: TWN ternarization (Delta = 0.7 mean|W| zeroes about 40-50% of each
   quantized layer's weights, the pruning) fine-tuned from the dense run.
3. ``fp,init_weights=quantized``: re-dense: float layers that start from the ternary weights
   ``alpha * t`` (the pruned ones at exactly 0, ``extremeq.nn.densify``) and all train again.

DSD prunes by magnitude with a fixed mask in its sparse phase; here the ternary quantizer
recomputes its zeros every step (a TWN network is the sparse model). DSD's re-dense phase uses
a lower learning rate (1/10 of the dense phase's, as recalled from the paper, not checked):
1e-4 here against 1e-3. CPU budget: one epoch per phase (the recipe of
configs/sweeps/twn_mnist_lenet5.py: Adam, cosine, batch 100).
"""

import pathlib
import runpy

import ml_collections

_tables = runpy.run_path(str(pathlib.Path(__file__).with_name("_mnist_tables.py")))

DENSE, SPARSE, REDENSE = "fp", "twn", "fp,init_weights=quantized"


def get_config():
    c = ml_collections.ConfigDict()
    c.title = "MNIST, LeNet-5: Dense-Sparse(ternary)-Dense, 1 epoch per phase"
    c.config = "configs/mnist_lenet5.py"
    c.methods = [DENSE, SPARSE, REDENSE]
    c.seeds = [0, 1, 2]
    c.overrides = ml_collections.ConfigDict(_tables["LENET5_ONE_EPOCH"])
    c.method_overrides = {
        SPARSE: {"quant": {"init_from": "@" + DENSE}},
        REDENSE: {"quant": {"init_from": "@" + SPARSE}, "optimizer": {"learning_rate": 1e-4}},
    }
    c.metric = "test_accuracy"
    return c
