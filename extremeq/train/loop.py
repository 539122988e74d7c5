"""The epoch/step loop shared by the in-memory and the streamed data paths.

Resumes from the newest checkpoint, checks the loss for non-finite values every
``log_every_steps`` steps and at each epoch end, writes one metrics row per epoch, saves a
checkpoint every ``checkpoint.every_epochs`` epochs, at the end and on SIGTERM, and writes
``final.json`` when the configured number of steps is reached. A run that is already finished
trains nothing and rewrites nothing: it returns its ``final.json``.
"""

from __future__ import annotations

import json
import os
import signal
import time

import jax
from absl import logging

from extremeq.train import checkpoint as ckpt_lib
from extremeq.train import distributed
from extremeq.train import metrics as metrics_lib
from extremeq.train.state import TrainState
from extremeq.train.workdir import FINAL_FILE, read_final, write_final


class Preemption:
    """SIGTERM -> a flag the loop checks after every step (it then saves and returns)."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread: no handler
            self._previous = None
        return self

    def _handle(self, signum, frame):
        del signum, frame
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
        return False


def check_finite(state: TrainState, epoch_hint: int):
    """The NaN guard: raises FloatingPointError naming the first step whose loss was not finite."""
    bad = int(state.sums["nonfinite_step"])
    if bad >= 0:
        raise FloatingPointError(
            f"non-finite loss at step {bad} (0-based; epoch {epoch_hint}); the run stops here. "
            "Lower config.optimizer.learning_rate, add warm-up, or check the data."
        )


def best_validation(rows) -> dict:
    """The epoch of the highest val_accuracy (the first, on ties) and its test accuracy: the number
    BinaryConnect and BinaryNet report ("the test error rate associated with the best validation
    error rate")."""
    rows = [r for r in rows if "val_accuracy" in r]
    if not rows:  # e.g. a process other than the one writing metrics.jsonl
        return {}
    best = max(rows, key=lambda r: (r["val_accuracy"], -r["epoch"]))
    return {
        "best_val_epoch": best["epoch"],
        "best_val_accuracy": best["val_accuracy"],
        "test_accuracy_at_best_val": best["test_accuracy"],
    }


def epoch_metrics(state, optimizer, epoch, step, evaluate, stats_fn) -> dict:
    sums = jax.device_get(state.sums)
    row = {
        "epoch": epoch + 1,
        "step": step,
        "learning_rate": float(optimizer.learning_rate(step - 1)),
        "train_loss": float(sums["loss"]) / optimizer.steps_per_epoch,
        "train_accuracy": float(sums["correct"]) / max(int(sums["count"]), 1),
    }
    row.update(evaluate(state))
    row.update({k: float(v) for k, v in jax.device_get(stats_fn(state)).items()})
    return row


def run_loop(config, workdir, state, *, optimizer, mesh, step_fn, plan_fn, begin_fn, stats_fn, evaluate):
    """Trains from ``workdir``'s newest checkpoint (or ``state``) to the configured step.

    ``step_fn(state, plan)``, ``plan_fn(epoch)``, ``begin_fn(state)``, ``stats_fn(state)`` and
    ``evaluate(state)`` are the data path's jitted functions. Returns the last metrics row with
    ``step``, ``finished``, ``preempted`` and ``num_devices`` (and final.json's content for a run that
    was already finished).
    """
    from tqdm.auto import tqdm  # pylint: disable=g-import-not-at-top

    steps_per_epoch = optimizer.steps_per_epoch
    total_steps = config.num_epochs * steps_per_epoch
    stop_at = total_steps if config.max_steps in (-1, None) else min(total_steps, config.max_steps)
    ckpt = ckpt_lib.Checkpointer(workdir, keep=config.checkpoint.keep)
    is_main = jax.process_index() == 0
    latest = ckpt.latest_step()
    if latest is not None:
        model_vars, train_vars, _ = ckpt.restore(state.model_vars(), state.train_vars(), latest)
        state = TrainState(params=model_vars["params"], model_state=model_vars["model_state"], **train_vars)
        state = distributed.replicate(state, mesh)
        logging.info("resumed from %s at step %d", ckpt.directory, latest)
    step = int(state.step)
    final = read_final(workdir)
    if step >= stop_at and final is not None and final.get("step") == step:
        ckpt.close()
        logging.info(
            "the run in %s is finished (step %d); nothing to do. Results: %s and metrics.jsonl",
            workdir,
            step,
            os.path.join(workdir, FINAL_FILE),
        )
        return final
    writer = metrics_lib.MetricWriter(workdir, enabled=is_main)
    if is_main:
        metrics_lib.truncate_metrics(workdir, step // steps_per_epoch)
    last_saved = latest
    row: dict = {}
    preempted = False
    if step >= stop_at and step % steps_per_epoch == 0 and step > 0:
        # finished, but final.json was not written (stopped between the last save and it): re-evaluate
        row = epoch_metrics(state, optimizer, step // steps_per_epoch - 1, step, evaluate, stats_fn)

    def save():
        nonlocal last_saved
        if last_saved != step:
            ckpt.save(
                step,
                state.model_vars(),
                state.train_vars(),
                {"step": step, "epoch": step // steps_per_epoch, "steps_per_epoch": steps_per_epoch},
            )
            last_saved = step

    with Preemption() as preemption:
        while step < stop_at and not preempted:
            epoch, first = divmod(step, steps_per_epoch)
            if first == 0:
                state = begin_fn(state)
            t0 = time.time()
            plan = plan_fn(epoch)
            bar = tqdm(
                total=steps_per_epoch,
                initial=first,
                desc=f"epoch {epoch + 1}/{config.num_epochs}",
                disable=not (config.progress_bar and is_main),
                leave=False,
            )
            for _ in range(first, steps_per_epoch):
                state = step_fn(state, plan)
                step += 1
                if config.sync_every_step:
                    jax.block_until_ready(state)
                bar.update(1)
                if step % config.log_every_steps == 0:
                    check_finite(state, epoch)
                if preemption.requested or step >= stop_at:
                    break
            bar.close()
            check_finite(state, epoch)
            if step % steps_per_epoch == 0:
                row = epoch_metrics(state, optimizer, epoch, step, evaluate, stats_fn)
                row["time_s"] = time.time() - t0
                writer.write(row)
                logging.info("epoch %d: %s", epoch + 1, json.dumps(row))
                if (epoch + 1) % config.checkpoint.every_epochs == 0 or step >= stop_at:
                    save()
            if preemption.requested:
                save()
                preempted = True
                logging.warning("SIGTERM: saved step %d to %s; rerun the same command to resume", step, ckpt.directory)
        save()
    ckpt.close()
    writer.close()
    finished = step >= stop_at and not preempted
    result = dict(row, step=step, finished=finished, preempted=preempted, num_devices=mesh.size)
    if finished and "val_accuracy" in row:
        result.update(best_validation(metrics_lib.read_metrics(workdir)))
    if finished and is_main:
        write_final(workdir, result)
    return result
