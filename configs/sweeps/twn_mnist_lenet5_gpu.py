"""Sweep: configs/sweeps/twn_mnist_lenet5.py (TWN paper, Table 2, MNIST LeNet-5: FP 99.41, BWN 99.05,
TWN 99.35) unchanged, run on a GPU into its own run directories, so that its wall times stand beside
the CPU's for the same runs.

    python -m extremeq.sweep --config configs/sweeps/twn_mnist_lenet5_gpu.py --workdir runs/twn_mnist_lenet5_gpu
"""

import pathlib
import runpy

_cpu = runpy.run_path(str(pathlib.Path(__file__).with_name("twn_mnist_lenet5.py")))
PAPER = _cpu["PAPER"]


def get_config():
    c = _cpu["get_config"]()
    c.title = c.title + " (GPU run)"
    return c
