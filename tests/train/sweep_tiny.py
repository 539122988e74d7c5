"""A tiny sweep for the parallel/SLURM sweep tests: FP, TTQ fine-tuned from the FP row (``@fp``) and
BWN distilled from the FP row (teacher ``@fp``), on the tests' tiny digits config, 1 short epoch.

``get_config("bad_fp")``: the FP row has an optimizer that does not exist (it fails at once);
``get_config("seeds2")``: seeds 0 and 1."""

import os

import ml_collections

HERE = os.path.dirname(os.path.abspath(__file__))


def get_config(variant=""):
    c = ml_collections.ConfigDict()
    c.title = "tiny"
    c.config = os.path.join(HERE, "tiny_config.py")
    c.methods = ["fp", "ttq", "bwn"]
    c.seeds = [0, 1] if variant == "seeds2" else [0]
    c.overrides = ml_collections.ConfigDict({"num_epochs": 1, "dataset": {"limit_train": 256}})
    c.method_overrides = ml_collections.ConfigDict(
        {
            "ttq": {"quant": {"init_from": "@fp"}},
            "bwn": {"distill": {"teacher_workdir": "@fp"}},
        }
    )
    if variant == "bad_fp":
        c.method_overrides.fp = {"optimizer": {"name": "no_such_optimizer"}}
    c.metric = "test_accuracy"
    return c
