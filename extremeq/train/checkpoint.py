"""Orbax checkpoints of the whole training state, for exact resume, verified on load.

A checkpoint (``workdir/checkpoints/<step>/``) holds three items:

* ``model``: the model's variables (parameters, batch-norm statistics, RNG streams),
* ``train``: optimizer state, step, the epoch's metric sums and sign snapshot,
* ``meta``:  JSON (step, epoch, the leaves' key paths, which leaves are PRNG keys, and per item the
  shape, dtype and SHA-256 of every saved array).

Pytrees are stored flat (leaf ``i`` under the name ``"%06d" % i``) and restored into the leaf
order of a template built the same way, so any pytree (nnx pure dicts with integer keys, optax
states with ``MaskedNode``s) round-trips; the saved key paths are checked against the template.
PRNG key arrays are stored as their ``key_data`` and re-wrapped.

Integrity. The checksums are ``sha256(np.ascontiguousarray(leaf).tobytes())`` of each array as
saved; they live in the ``meta`` item, which orbax commits together with the arrays (a step folder
appears only when all three items are written), so a step either has them all or is not a step.
:meth:`Checkpointer.latest_step` returns the newest *intact* step: a step is damaged when its folder
is empty, an item or ``meta/metadata`` is missing or unreadable, an array cannot be read (a missing
or truncated file), or an array's checksum differs. A damaged step newer than an intact one is
moved aside to ``workdir/checkpoints_damaged/<step>`` (renamed, never deleted), with one warning
line naming the step and what was wrong, and the run resumes from the intact one. If no step is
intact, :class:`CheckpointError` names the folder, every step's problem, and the two ways on (a new
workdir, or removing the damaged steps). Checkpoints written before checksums existed load with a
one-line note and only the structural checks.
"""

from __future__ import annotations

import hashlib
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

ITEMS = ("model", "train", "meta")
DAMAGED_DIR = "checkpoints_damaged"


class CheckpointError(RuntimeError):
    """No checkpoint of a run can be restored (all damaged); the message says what to do."""


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


def digest(x) -> str | None:
    """``sha256`` of an array's bytes in C order (``None`` for an array this process cannot read
    whole: sharded over devices of other processes)."""
    if not getattr(x, "is_fully_addressable", True) and not getattr(x, "is_fully_replicated", True):
        return None
    return hashlib.sha256(np.ascontiguousarray(np.asarray(x)).tobytes()).hexdigest()


def array_records(flat: dict) -> dict:
    """{"shapes", "dtypes", "sha256"}: per leaf name, what ``meta`` stores to verify an item."""
    names = sorted(flat)
    return {
        "shapes": [list(np.shape(flat[k])) for k in names],
        "dtypes": [str(flat[k].dtype) for k in names],
        "sha256": [digest(flat[k]) for k in names],
    }


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


def _check_shapes(template_flat: dict, records: dict, paths: list[str], what: str):
    """A saved array whose shape or dtype differs from the template's is a config mismatch."""
    for i, k in enumerate(sorted(template_flat)):
        t = template_flat[k]
        saved = (tuple(records["shapes"][i]), records["dtypes"][i])
        if saved != (tuple(np.shape(t)), str(t.dtype)):
            raise ValueError(
                f"checkpoint {what} leaf {paths[i]} was saved as {saved[0]} {saved[1]}, the model/"
                f"optimizer built from the config has {tuple(np.shape(t))} {t.dtype}. Was the "
                "checkpoint written with another model size or dtype?"
            )


def _mismatch(flat: dict, records: dict, paths: list[str], what: str) -> str | None:
    """The first array of ``flat`` whose checksum differs from ``records`` (None: all agree)."""
    if len(flat) != len(records["sha256"]):
        return f"{what} holds {len(flat)} arrays, its metadata lists {len(records['sha256'])}"
    for i, k in enumerate(sorted(flat)):
        want = records["sha256"][i]
        if want is not None and digest(flat[k]) != want:
            return f"checksum mismatch in {what} array {k} {paths[i]}"
    return None


def _first_line(e: BaseException) -> str:
    first = (str(e).strip().splitlines() or [""])[0]
    return f"{type(e).__name__}: {first[:160]}"


class Checkpointer:
    """Saves/restores ``{"model": ..., "train": ...}`` pytrees every epoch, keeping the last ``keep``."""

    def __init__(self, workdir: str, keep: int = 3):
        import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

        self._ocp = ocp
        self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
        self.damaged_directory = os.path.join(os.path.dirname(self.directory), DAMAGED_DIR)
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=False)
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=ITEMS)
        self._intact: set[int] = set()

    def save(self, step: int, model_vars, train_vars, meta: dict):
        ocp = self._ocp
        m_flat, m_paths, m_keys = flatten(model_vars)
        t_flat, t_paths, t_keys = flatten(train_vars)
        meta = dict(
            meta,
            model_paths=m_paths,
            model_keys=m_keys,
            train_paths=t_paths,
            train_keys=t_keys,
            arrays={"model": array_records(m_flat), "train": array_records(t_flat)},
        )
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
        self._intact.add(int(step))

    # ------------------------------------------------------------ integrity
    def _read_meta(self, step: int) -> dict:
        path = os.path.join(self.directory, str(step), "meta", "metadata")
        with open(path) as f:
            return json.load(f)

    def damage(self, step: int) -> str | None:
        """What is wrong with checkpoint ``step`` (None: intact). Reads and checksums every array."""
        folder = os.path.join(self.directory, str(step))
        if not os.path.isdir(folder) or not os.listdir(folder):
            return "empty step folder"
        missing = [item for item in ITEMS if not os.path.isdir(os.path.join(folder, item))]
        if missing:
            return f"missing item {', '.join(missing)}"
        try:
            meta = self._read_meta(step)
        except FileNotFoundError:
            return "missing meta/metadata"
        except (OSError, ValueError) as e:
            return f"unreadable meta/metadata ({type(e).__name__})"
        if not all(f"{w}_paths" in meta for w in ("model", "train")):
            return "meta/metadata lacks the leaves' key paths"
        if "arrays" not in meta:
            return None  # written before checksums: structure only (restore notes it)
        ocp = self._ocp
        targets = {}
        for what in ("model", "train"):
            rec = meta["arrays"][what]
            targets[what] = ocp.args.StandardRestore(
                {f"{i:06d}": np.empty(s, jnp.dtype(d)) for i, (s, d) in enumerate(zip(rec["shapes"], rec["dtypes"]))}
            )
        try:
            restored = self.manager.restore(step, args=ocp.args.Composite(**targets))
        except Exception as e:  # noqa: BLE001 - any failure to read the arrays is damage
            return f"unreadable arrays ({_first_line(e)})"
        for what in ("model", "train"):
            problem = _mismatch(restored[what], meta["arrays"][what], meta[f"{what}_paths"], what)
            if problem:
                return problem
        return None

    def _move_aside(self, step: int) -> str:
        os.makedirs(self.damaged_directory, exist_ok=True)
        dest, n = os.path.join(self.damaged_directory, str(step)), 1
        while os.path.exists(dest):
            n += 1
            dest = os.path.join(self.damaged_directory, f"{step}.{n}")
        if jax.process_index() == 0:
            os.rename(os.path.join(self.directory, str(step)), dest)
        return dest

    def latest_step(self):
        """The newest intact step (None: no checkpoint). Damaged newer steps are moved aside with one
        warning line each; :class:`CheckpointError` when there are steps but none is intact."""
        self.manager.reload()
        steps = sorted(self.manager.all_steps(), reverse=True)
        problems = []
        for step in steps:
            if step in self._intact:
                problem = None
            else:
                problem = self.damage(step)
            if problem is None:
                self._intact.add(step)
                for bad, why in problems:
                    dest = self._move_aside(bad)
                    logging.warning(
                        "checkpoint step %d is damaged (%s): moved to %s; resuming from step %d", bad, why, dest, step
                    )
                if problems:
                    self.manager.reload()
                return step
            problems.append((step, problem))
        if problems:
            listing = "; ".join(f"step {s}: {why}" for s, why in problems)
            remove = " ".join(os.path.join(self.directory, str(s)) for s, _ in problems)
            raise CheckpointError(
                f"no intact checkpoint in {self.directory} ({listing}). Start over with a new "
                f"--workdir, or remove the damaged steps (rm -r {remove}) to train this workdir "
                "from scratch."
            )
        return None

    # --------------------------------------------------------------- restore
    def _damaged_error(self, step: int, problem: str, what: str = "is damaged") -> CheckpointError:
        return CheckpointError(
            f"checkpoint step {step} in {self.directory} {what} ({problem}). Start over with a new "
            f"--workdir, or remove the damaged step (rm -r {os.path.join(self.directory, str(step))})."
        )

    def restore(self, model_template, train_template=None, step=None):
        """(model_vars, train_vars or None, meta) at ``step`` (default: the latest intact step).

        The loaded arrays are checked against the checksums in ``meta``; a mismatch (the files
        changed since :meth:`latest_step` looked) moves the step aside and falls back to the newest
        intact one. An explicit ``step`` found damaged before loading raises :class:`CheckpointError`."""
        ocp = self._ocp
        step = self.latest_step() if step is None else int(step)
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        if step not in self._intact:
            problem = self.damage(step)
            if problem:
                raise self._damaged_error(step, problem)
            self._intact.add(step)
        meta = self._read_meta(step)
        wanted = {"model": model_template}
        if train_template is not None:
            wanted["train"] = train_template
        flats = {w: flatten(jax.tree_util.tree_map(lambda x: x, t))[0] for w, t in wanted.items()}
        for w, template in wanted.items():
            unflatten(template, flats[w], meta[f"{w}_paths"], w)  # the key paths must agree
            if "arrays" in meta:
                _check_shapes(flats[w], meta["arrays"][w], meta[f"{w}_paths"], w)
        items = {w: ocp.args.StandardRestore({k: _abstract(v) for k, v in flats[w].items()}) for w in wanted}
        try:
            restored = self.manager.restore(step, args=ocp.args.Composite(**items))
        except Exception as e:  # orbax/tensorstore errors: say which step, and the way on
            raise self._damaged_error(step, _first_line(e), "could not be read") from e
        if "arrays" not in meta:
            logging.warning(
                "checkpoint step %d in %s has no checksums (written by an older extremeq); "
                "loaded without verifying its arrays",
                step,
                self.directory,
            )
        for w in wanted if "arrays" in meta else ():
            problem = _mismatch(restored[w], meta["arrays"][w], meta[f"{w}_paths"], w)
            if problem:
                self._intact.discard(step)
                dest = self._move_aside(step)
                logging.warning("checkpoint step %d is damaged (%s): moved to %s", step, problem, dest)
                self.manager.reload()
                return self.restore(model_template, train_template)
        model_vars = unflatten(model_template, restored["model"], meta["model_paths"], "model")
        train_vars = None
        if train_template is not None:
            train_vars = unflatten(train_template, restored["train"], meta["train_paths"], "train state")
        return model_vars, train_vars, meta

    def close(self):
        self.manager.close()
