"""Helpers for the training tests: the tiny digits config."""

import os

HERE = os.path.dirname(os.path.abspath(__file__))
TINY_CONFIG = os.path.join(HERE, "tiny_config.py")


def tiny_config(method="bc", **overrides):
    """The tests' tiny digits config with dotted-key overrides (``optimizer__name="adam"``)."""
    from extremeq.train.config import load_config_file

    c = load_config_file(f"{TINY_CONFIG}:{method}")
    for key, value in overrides.items():
        node = c
        *parents, leaf = key.split("__")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return c


def load_raw(workdir, step=None):
    """(model leaves, train leaves, meta) of a checkpoint as saved: {name: np.ndarray} dicts."""
    import numpy as np
    import orbax.checkpoint as ocp

    mngr = ocp.CheckpointManager(os.path.join(workdir, "checkpoints"), item_names=("model", "train", "meta"))
    step = mngr.latest_step() if step is None else step
    r = mngr.restore(
        step,
        args=ocp.args.Composite(
            model=ocp.args.StandardRestore(), train=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore()
        ),
    )
    mngr.close()
    model = {k: np.asarray(v) for k, v in r["model"].items()}
    train = {k: np.asarray(v) for k, v in r["train"].items()}
    return model, train, r["meta"]


def leaves_by_path(flat, paths):
    return {p: flat[f"{i:06d}"] for i, p in enumerate(paths)}


def read_rows(workdir, drop=("time_s",)):
    import json

    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rows = [json.loads(l) for l in f if l.strip()]
    return [{k: v for k, v in r.items() if k not in drop} for r in rows]
