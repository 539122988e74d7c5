"""The run directory: ``config.json``, ``final.json``, ``config_changes.jsonl``, and the checks made
before the first step so that nothing a run wrote is lost or silently mixed with another run.

    prepare_workdir   the directory and checkpoints/ exist and are writable; a run resumed with a
                      changed config, or whose checkpoints were deleted after it wrote metrics, is
                      refused unless config.resume_with_changes is set (then the change and the step
                      it applies from are appended to config_changes.jsonl)
    save_run_config   config.json: the config the checkpoints were trained with
    load_run_config   the validated config of a run (a teacher, quant.init_from)
    read_final / write_final   final.json
"""

from __future__ import annotations

import json
import os
import time

CONFIG_FILE = "config.json"
FINAL_FILE = "final.json"
CHANGES_FILE = "config_changes.jsonl"
CHECKPOINT_DIR = "checkpoints"
# Keys that change how a run is executed, not what it computes: a resumed run may change them.
RESUMABLE_KEYS = (
    "max_steps",
    "log_every_steps",
    "num_devices",
    "cpu_devices",
    "distributed",
    "progress_bar",
    "sync_every_step",
    "resume_with_changes",
    "dataset.workers",
    "checkpoint.keep",
    "checkpoint.every_epochs",
    "cluster.coordinator_address",
    "cluster.num_processes",
    "cluster.process_id",
)


class WorkdirError(ValueError):
    """The workdir cannot hold this run as asked; the message says why and what to do."""


def plain(config) -> dict:
    """The config as JSON values (tuples as lists), for config.json and comparisons."""
    return json.loads(config.to_json_best_effort(sort_keys=True))


def save_run_config(config, workdir: str) -> None:
    """workdir/config.json: the validated config (to rebuild the model as a teacher or init)."""
    with open(os.path.join(workdir, CONFIG_FILE), "w") as f:
        f.write(config.to_json_best_effort(indent=2, sort_keys=True))


def load_run_config(workdir: str):
    """The validated ConfigDict a run saved in ``workdir/config.json``."""
    import ml_collections  # pylint: disable=g-import-not-at-top

    from extremeq.train.config import validate_config  # pylint: disable=g-import-not-at-top

    with open(os.path.join(workdir, CONFIG_FILE)) as f:
        raw = json.load(f)
    raw["num_devices"] = -1  # the saving run's device count does not bind a reader
    return validate_config(ml_collections.ConfigDict(raw), num_devices=1)


def read_final(workdir: str) -> dict | None:
    path = os.path.join(workdir, FINAL_FILE)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def write_final(workdir: str, result: dict) -> None:
    with open(os.path.join(workdir, FINAL_FILE), "w") as f:
        json.dump(result, f, indent=1)


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def changed_keys(old: dict, new: dict) -> dict:
    """{dotted key: (old value, new value)} of the keys that differ, less ``RESUMABLE_KEYS``."""
    a, b = _flat(old), _flat(new)
    missing = object()
    return {
        k: (a.get(k), b.get(k))
        for k in sorted(set(a) | set(b))
        if k not in RESUMABLE_KEYS and a.get(k, missing) != b.get(k, missing)
    }


def _check_writable(path: str, what: str) -> None:
    probe = os.path.join(path, f".write_test_{os.getpid()}")
    try:
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise WorkdirError(
            f"{what} {path!r} is not writable ({e.strerror}); fix its permissions or choose another --workdir"
        ) from e


def _has_results(workdir: str) -> bool:
    from extremeq.train.metrics import read_metrics  # pylint: disable=g-import-not-at-top

    return os.path.isfile(os.path.join(workdir, FINAL_FILE)) or bool(read_metrics(workdir))


def _set_aside(workdir: str, names) -> list[str]:
    """Renames the files ``names`` of ``workdir`` to ``<name>.superseded-<UTC time>``."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    moved = []
    for name in names:
        path = os.path.join(workdir, name)
        if os.path.exists(path):
            os.replace(path, f"{path}.superseded-{stamp}")
            moved.append(f"{name}.superseded-{stamp}")
    return moved


def _record_change(workdir: str, entry: dict) -> None:
    entry = dict(entry, time=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    with open(os.path.join(workdir, CHANGES_FILE), "a") as f:
        f.write(json.dumps(entry) + "\n")


def prepare_workdir(config, workdir: str, latest_step, is_main: bool = True, before=None) -> None:
    """The checks before the first step (see the module docstring); writes config.json.

    ``latest_step``: a function returning the step of the newest checkpoint in ``workdir`` (or
    None), called once checkpoints/ is known to be a writable directory (in process 0 only).
    ``before``: called then in every process (what all processes must do together).
    """
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise WorkdirError(f"--workdir {workdir!r} is a file, not a directory; choose another --workdir")
    ckpt_dir = os.path.join(workdir, CHECKPOINT_DIR)
    try:
        os.makedirs(ckpt_dir, exist_ok=True)
    except OSError as e:
        raise WorkdirError(f"cannot create {ckpt_dir!r} ({e.strerror or e}); choose another --workdir") from e
    _check_writable(workdir, "workdir")
    _check_writable(ckpt_dir, "checkpoint directory")
    if before is not None:
        before()
    if not is_main:
        return
    step = latest_step()
    saved_path = os.path.join(workdir, CONFIG_FILE)
    new = plain(config)
    allow = bool(config.resume_with_changes)
    if step is None and _has_results(workdir):
        if not allow:
            raise WorkdirError(
                f"{workdir!r} holds the metrics of an earlier run but no checkpoint (was checkpoints/ "
                "deleted?); training would start over and overwrite them. Use a new --workdir, or add "
                "--config.resume_with_changes=True to retrain from step 0 (the old metrics.jsonl and "
                "final.json are kept, renamed)"
            )
        moved = _set_aside(workdir, ("metrics.jsonl", FINAL_FILE))
        _record_change(workdir, {"from_step": 0, "reason": "no checkpoint; retrained from scratch", "set_aside": moved})
    elif os.path.isfile(saved_path) and step is not None:
        with open(saved_path) as f:
            changes = changed_keys(json.load(f), new)
        if changes and not allow:
            listed = ", ".join(f"{k} ({a!r} -> {b!r})" for k, (a, b) in changes.items())
            raise WorkdirError(
                f"{workdir!r} holds a run trained to step {step} with another config; changed: {listed}. "
                "Rerun with the same config, use a new --workdir, or add "
                "--config.resume_with_changes=True to continue with the change (recorded in "
                f"{CHANGES_FILE})"
            )
        if changes:
            _record_change(
                workdir, {"from_step": int(step), "changes": {k: {"old": a, "new": b} for k, (a, b) in changes.items()}}
            )
    save_run_config(config, workdir)
