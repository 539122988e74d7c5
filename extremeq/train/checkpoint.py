"""Orbax checkpoints of the whole training state, for exact resume.

A checkpoint (``workdir/checkpoints/<step>/``) holds three items:

* ``model``: the model's variables (parameters, batch-norm statistics, RNG streams),
* ``train``: optimizer state, step, the epoch's metric sums and sign snapshot,
* ``meta``:  JSON (step, epoch, the leaves' key paths, which leaves are PRNG keys).

Pytrees are stored flat (leaf ``i`` under the name ``"%06d" % i``) and restored into the leaf
order of a template built the same way, so any pytree (nnx pure dicts with integer keys, optax
states with ``MaskedNode``s) round-trips; the saved key paths are checked against the template.
PRNG key arrays are stored as their ``key_data`` and re-wrapped.
"""

from __future__ import annotations

import os

import jax
import numpy as np


def _is_key(x) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def flatten(tree) -> tuple[dict, list[str], list[bool]]:
    """(flat dict of arrays, key paths, is-PRNG-key flags) of ``tree``."""
    leaves = jax.tree_util.tree_leaves_with_path(tree)
    flat, paths, keys = {}, [], []
    for i, (path, leaf) in enumerate(leaves):
        is_key = _is_key(leaf)
        flat[f"{i:06d}"] = jax.random.key_data(leaf) if is_key else leaf
        paths.append(jax.tree_util.keystr(path))
        keys.append(is_key)
    return flat, paths, keys


def _abstract(x):
    sharding = getattr(x, "sharding", None)
    if _is_key(x):
        x = jax.random.key_data(x)
    return jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=sharding)


def unflatten(template, flat: dict, paths: list[str], what: str):
    """Puts the arrays of ``flat`` into the structure of ``template``."""
    leaves, treedef = jax.tree_util.tree_flatten(template)
    t_paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(template)]
    if t_paths != list(paths):
        diff = sorted(set(t_paths) ^ set(paths))[:5]
        raise ValueError(
            f"checkpoint {what} does not match the model/optimizer built from the config "
            f"({len(paths)} saved leaves vs {len(t_paths)}; differing: {diff}). Was the checkpoint "
            "written with another model, quant.method or optimizer?"
        )
    out = []
    for i, t in enumerate(leaves):
        v = flat[f"{i:06d}"]
        if _is_key(t):
            v = jax.random.wrap_key_data(v, impl=jax.random.key_impl(t))
        out.append(v)
    return jax.tree_util.tree_unflatten(treedef, out)


class Checkpointer:
    """Saves/restores ``{"model": ..., "train": ...}`` pytrees every epoch, keeping the last ``keep``."""

    def __init__(self, workdir: str, keep: int = 3):
        import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

        self._ocp = ocp
        self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                               enable_async_checkpointing=False)
        self.manager = ocp.CheckpointManager(self.directory, options=options,
                                             item_names=("model", "train", "meta"))

    def latest_step(self):
        return self.manager.latest_step()

    def save(self, step: int, model_vars, train_vars, meta: dict):
        ocp = self._ocp
        m_flat, m_paths, m_keys = flatten(model_vars)
        t_flat, t_paths, t_keys = flatten(train_vars)
        meta = dict(meta, model_paths=m_paths, model_keys=m_keys, train_paths=t_paths, train_keys=t_keys)
        self.manager.save(
            int(step),
            args=ocp.args.Composite(
                model=ocp.args.StandardSave(m_flat),
                train=ocp.args.StandardSave(t_flat),
                meta=ocp.args.JsonSave(meta),
            ),
            force=True,
        )
        self.manager.wait_until_finished()

    def restore(self, model_template, train_template=None, step=None):
        """(model_vars, train_vars or None, meta) at ``step`` (default: the latest)."""
        ocp = self._ocp
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        meta = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        items = {"model": ocp.args.StandardRestore(_flat_abstract(model_template))}
        if train_template is not None:
            items["train"] = ocp.args.StandardRestore(_flat_abstract(train_template))
        restored = self.manager.restore(step, args=ocp.args.Composite(**items))
        model_vars = unflatten(model_template, restored["model"], meta["model_paths"], "model")
        train_vars = None
        if train_template is not None:
            train_vars = unflatten(train_template, restored["train"], meta["train_paths"], "train state")
        return model_vars, train_vars, meta

    def close(self):
        self.manager.close()


def _flat_abstract(template):
    flat, _, _ = flatten(jax.tree_util.tree_map(lambda x: x, template))
    return {k: _abstract(v) for k, v in flat.items()}
