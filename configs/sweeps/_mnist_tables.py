"""The MNIST paper tables that the sweeps in this folder reproduce (their rows, with the papers'
top-1 %), and the CPU-budget recipes several of those sweeps share. Not a sweep itself: the sweep
files load it with ``runpy.run_path`` (config files are loaded by path, not imported), e.g.

    _tables = runpy.run_path(str(pathlib.Path(__file__).with_name("_mnist_tables.py")))
    PAPER = _tables["TWN_LENET5"]
    c.methods = list(PAPER)
"""

# BinaryConnect (Courbariaux, Bengio, David 2015), Table 2, MNIST permutation-invariant MLP
# 784-1024-1024-1024-10: no regularizer (FP), BinaryConnect deterministic and stochastic.
BINARYCONNECT_MLP = {"fp": 98.70, "bc": 98.71, "bc_stochastic": 98.82}
# BinaryNet / BNN (Courbariaux, Hubara et al. 2016), MNIST MLP 784-4096-4096-4096-10 with binary
# weights and activations: test error 0.96%.
BINARYNET_MLP = {"bnn": 99.04}
# TWN (Li, Zhang, Liu 2016), Table 2, MNIST LeNet-5 (32C5-MP2-64C5-MP2-512FC).
TWN_LENET5 = {"fp": 99.41, "bwn": 99.05, "twn": 99.35}

# What the CPU runs of the MLP sweeps used, before the config files took up the papers' loss and
# learning-rate scale: softmax cross-entropy, a cosine decay over the run, no per-layer 1/H_Glorot
# learning-rate scale on the binary weights.
MLP_CPU_RECIPE = {
    "progress_bar": False,
    "loss": "cross_entropy",
    "optimizer": {"schedule": "cosine", "decay_epochs": (), "binary_lr_scale": "none"},
}

# LeNet-5 for one epoch on a CPU: batch 100 and the optimizer of the TWN authors' own PyTorch port
# (Adam lr 1e-3, weight decay 1e-5; see configs/mnist_lenet5.py) with a cosine decay over the epoch.
LENET5_ONE_EPOCH = {
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


def merged(*parts: dict) -> dict:
    """``parts`` merged left to right into a new dict; a section (a dict) is merged key by key, so
    a later part can change one knob of it (``merged(MLP_CPU_RECIPE, {"num_epochs": 3})``)."""
    out = {}
    for part in parts:
        for key, value in part.items():
            out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return {k: merged(v) if isinstance(v, dict) else v for k, v in out.items()}
