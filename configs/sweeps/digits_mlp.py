"""Sweep: every method on scikit-learn digits with the MLP 64-256-256-10 (configs/digits_mlp.py),
three seeds. Minutes on a laptop CPU; the smoke table of the project.

    python -m extremeq.sweep --config configs/sweeps/digits_mlp.py --workdir runs/digits_mlp
"""

import ml_collections


def get_config():
    c = ml_collections.ConfigDict()
    c.title = "digits, MLP 64-256-256-10 (first/last layer float)"
    c.config = "configs/digits_mlp.py"
    c.methods = ["fp", "bc", "bwn", "twn", "ttq", "bitnet", "xnor", "bnn"]
    c.seeds = [0, 1, 2]
    c.overrides = ml_collections.ConfigDict({"num_epochs": 20, "progress_bar": False})
    c.metric = "test_accuracy"
    return c
