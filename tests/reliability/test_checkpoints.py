"""Checkpoints: never lose a run, never load damage silently (issue 10, points 1 and 2).

A damaged newest checkpoint (flipped bytes, a truncated or missing array file, a missing
``meta/metadata``, a missing item, an empty step folder) is moved aside and the newest intact one
is restored; with none intact the error names the folder and the way on.
"""

import glob
import json
import logging
import os
import shutil
import signal
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from train_testing import assert_resume_is_exact, load_raw, start_cli_run, tiny_config

from extremeq.train.checkpoint import DAMAGED_DIR, Checkpointer, CheckpointError


def _model(step):
    return {
        "params": {
            "w": jax.random.normal(jax.random.key(step), (64, 64)),
            "b": jnp.arange(5, dtype=jnp.float32) * step,
        },
        "rng": jax.random.key(step),
    }


def _train(step):
    return {"step": jnp.int32(step), "mu": jnp.full((64, 64), 0.5 * step, jnp.bfloat16)}


def _save(workdir, steps=(1, 2)):
    ckpt = Checkpointer(str(workdir), keep=5)
    for s in steps:
        ckpt.save(s, _model(s), _train(s), {"step": s})
    ckpt.close()


def _largest_array_file(step_dir, item="model"):
    files = [f for f in glob.glob(os.path.join(step_dir, item, "**", "d", "*"), recursive=True) if os.path.isfile(f)]
    return max(files, key=os.path.getsize)


def flip_bytes(path, count=8):
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        data = f.read(count)
        f.seek(-len(data), os.SEEK_CUR)
        f.write(bytes(b ^ 0xFF for b in data))


def _flip(d):
    flip_bytes(_largest_array_file(d))


def _truncate(d):
    f = _largest_array_file(d)
    os.truncate(f, os.path.getsize(f) // 2)


def _remove_array_file(d):
    os.remove(_largest_array_file(d))


def _remove_meta(d):
    os.remove(os.path.join(d, "meta", "metadata"))


def _remove_item(d):
    shutil.rmtree(os.path.join(d, "train"))


def _empty_folder(d):
    shutil.rmtree(d)
    os.makedirs(d)


DAMAGE = {
    "flipped_bytes": (_flip, "checksum mismatch"),
    "truncated_array": (_truncate, "unreadable arrays"),
    "missing_array": (_remove_array_file, "unreadable arrays"),
    "missing_meta": (_remove_meta, "missing meta/metadata"),
    "missing_item": (_remove_item, "missing item train"),
    "empty_folder": (_empty_folder, "empty step folder"),
}


def _assert_is_step(model_vars, train_vars, step):
    want_m, want_t = _model(step), _train(step)
    np.testing.assert_array_equal(model_vars["params"]["w"], want_m["params"]["w"])
    np.testing.assert_array_equal(model_vars["params"]["b"], want_m["params"]["b"])
    np.testing.assert_array_equal(jax.random.key_data(model_vars["rng"]), jax.random.key_data(want_m["rng"]))
    np.testing.assert_array_equal(train_vars["mu"], want_t["mu"])
    assert int(train_vars["step"]) == step


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_damaged_latest_falls_back_to_the_newest_intact_step(tmp_path, caplog, kind):
    damage, reason = DAMAGE[kind]
    _save(tmp_path)
    damage(str(tmp_path / "checkpoints" / "2"))
    ckpt = Checkpointer(str(tmp_path), keep=5)
    with caplog.at_level(logging.WARNING):
        assert ckpt.latest_step() == 1
        model_vars, train_vars, meta = ckpt.restore(_model(0), _train(0))
    ckpt.close()
    assert meta["step"] == 1
    _assert_is_step(model_vars, train_vars, 1)
    # one line: the step and what was wrong
    lines = [r.getMessage() for r in caplog.records if "is damaged (" in r.getMessage()]
    assert len(lines) == 1 and "step 2" in lines[0] and reason in lines[0] and "\n" not in lines[0]
    # kept aside, not deleted; step 2 is no longer a checkpoint
    assert os.path.isdir(tmp_path / DAMAGED_DIR / "2")
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["1"]


def test_no_intact_checkpoint_names_the_folder_and_the_choice(tmp_path):
    _save(tmp_path)
    _flip(str(tmp_path / "checkpoints" / "2"))
    _remove_meta(str(tmp_path / "checkpoints" / "1"))
    ckpt = Checkpointer(str(tmp_path), keep=5)
    with pytest.raises(CheckpointError) as e:
        ckpt.restore(_model(0), _train(0))
    ckpt.close()
    msg = str(e.value)
    assert str(tmp_path / "checkpoints") in msg and "--workdir" in msg and "rm -r" in msg
    assert "step 2: checksum mismatch" in msg and "step 1: missing meta/metadata" in msg
    # nothing is moved while the user has not chosen
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["1", "2"]
    assert not os.path.exists(tmp_path / DAMAGED_DIR)


def test_checksums_are_the_sha256_of_each_saved_array(tmp_path):
    import hashlib

    _save(tmp_path, steps=(3,))
    with open(tmp_path / "checkpoints" / "3" / "meta" / "metadata") as f:
        arrays = json.load(f)["arrays"]
    flat = jax.tree_util.tree_leaves(_model(3))
    want = [
        hashlib.sha256(
            np.asarray(jax.random.key_data(x) if x.dtype == jax.random.key(0).dtype else x).tobytes()
        ).hexdigest()
        for x in flat
    ]
    assert arrays["model"]["sha256"] == want
    assert arrays["train"]["dtypes"] == ["bfloat16", "int32"]


def test_checkpoint_without_checksums_loads_with_a_note(tmp_path, caplog):
    _save(tmp_path, steps=(1,))
    meta_file = tmp_path / "checkpoints" / "1" / "meta" / "metadata"
    meta = json.loads(meta_file.read_text())
    del meta["arrays"]  # as written before checksums existed
    meta_file.write_text(json.dumps(meta))
    ckpt = Checkpointer(str(tmp_path), keep=5)
    with caplog.at_level(logging.WARNING):
        model_vars, train_vars, meta = ckpt.restore(_model(0), _train(0))
    ckpt.close()
    _assert_is_step(model_vars, train_vars, 1)
    notes = [r.getMessage() for r in caplog.records if "no checksums" in r.getMessage()]
    assert len(notes) == 1 and "step 1" in notes[0]


def test_training_resumes_past_flipped_bytes_bit_exactly(tmp_path, caplog):
    """8 flipped bytes in the last checkpoint of a run: rerunning restores the previous step and
    retrains to the same final state as the undamaged run."""
    from extremeq.train import train_and_evaluate

    wd = tmp_path / "run"
    cfg = tiny_config("bc", num_epochs=2)
    train_and_evaluate(cfg, str(wd))
    m_ref, t_ref, meta_ref = load_raw(str(wd))
    assert meta_ref["step"] == 22
    flip_bytes(_largest_array_file(str(wd / "checkpoints" / "22")))
    os.remove(wd / "final.json")  # as if killed after the last save
    with caplog.at_level(logging.WARNING):
        r = train_and_evaluate(tiny_config("bc", num_epochs=2), str(wd))
    assert r["step"] == 22 and r["finished"]
    assert any(
        "step 22 is damaged" in rec.getMessage() and "resuming from step 11" in rec.getMessage()
        for rec in caplog.records
    )
    assert os.path.isdir(wd / DAMAGED_DIR / "22")
    m, t, meta = load_raw(str(wd))
    assert meta["step"] == 22
    for k in m_ref:
        np.testing.assert_array_equal(m[k], m_ref[k])
    for k in t_ref:
        np.testing.assert_array_equal(t[k], t_ref[k])


def test_kill_9_mid_epoch_resumes_bit_exactly(tmp_path):
    """SIGKILL (no handler runs) a few steps after the first checkpoint; rerunning resumes from the
    last checkpoint and equals the run that was never killed."""
    wd = tmp_path / "killed"
    proc = start_cli_run(wd, lambda: (wd / "checkpoints" / "11").is_dir())
    time.sleep(0.3)  # into the next epoch
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert_resume_is_exact(wd, tmp_path / "reference", extra_steps=5)


def test_damage_after_the_check_is_caught_by_the_restore_itself(tmp_path, caplog):
    """Bytes flipped between latest_step() and restore(): the loaded arrays are checksummed too."""
    _save(tmp_path)
    ckpt = Checkpointer(str(tmp_path), keep=5)
    assert ckpt.latest_step() == 2
    _flip(str(tmp_path / "checkpoints" / "2"))
    with caplog.at_level(logging.WARNING):
        model_vars, train_vars, meta = ckpt.restore(_model(0), _train(0), step=2)
    ckpt.close()
    assert meta["step"] == 1
    _assert_is_step(model_vars, train_vars, 1)
    assert any("step 2 is damaged (checksum mismatch" in r.getMessage() for r in caplog.records)
    assert os.path.isdir(tmp_path / DAMAGED_DIR / "2")
