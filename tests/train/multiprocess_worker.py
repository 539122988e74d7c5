"""One process of a multi-process training test (run by test_train_multiprocess.py).

    python multiprocess_worker.py <spec.json>

spec: {"process_id", "num_processes", "port", "devices", "out", "runs": [{"name", "workdir",
"config": {dotted key: value}, "kill_at_step": optional}]}. The process gets ``devices`` fake CPU
devices; with ``num_processes > 1`` each run sets ``--config.distributed=True`` and
``config.cluster`` (the training code calls ``jax.distributed.initialize``, gloo collectives).

Per run it writes to ``out``:
  <name>_p<id>.npz      the parameters this process held at the run's last checkpoint save (one
                        copy), after checking that all of its local devices hold the same bytes;
  <name>_ids_p<id>.json {global step: the example ids this process's devices gathered};
  <name>_p<id>.json     train_and_evaluate's result.
``kill_at_step``: this process SIGKILLs itself just before that global step (a crashed host).
``streamed``: the run streams a fake ImageNet (100 training and 36 validation images of varying
size) through the grain path instead of holding digits in memory.
"""

import json
import os
import signal
import sys

with open(sys.argv[1]) as f:
    SPEC = json.load(f)
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={SPEC['devices']}"
os.environ["JAX_PLATFORMS"] = "cpu"

import functools

import jax
import numpy as np
from train_testing import tiny_config

from extremeq import data as data_lib
from extremeq.train import checkpoint as ckpt_lib
from extremeq.train import train as train_mod
from extremeq.train.steps import step_example_ids

PID = SPEC["process_id"]
captured = {}


def local_copy(x):
    """This process's copy of a replicated array; all its devices must hold the same bytes."""
    shards = [np.asarray(s.data) for s in x.addressable_shards]
    for s in shards[1:]:
        assert s.tobytes() == shards[0].tobytes(), "local devices disagree on a replicated array"
    return shards[0]


_save = ckpt_lib.Checkpointer.save


def capturing_save(self, step, model_vars, train_vars, meta):
    flat, paths, _ = ckpt_lib.flatten(model_vars)
    captured["params"] = {paths[int(k)]: local_copy(v) for k, v in flat.items()}
    return _save(self, step, model_vars, train_vars, meta)


ckpt_lib.Checkpointer.save = capturing_save
_functions = train_mod.in_memory_functions


def recording_functions(*args, **kwargs):
    fns = dict(_functions(*args, **kwargs))
    _, optimizer, inputs = args[:3]
    ids_of = jax.jit(functools.partial(step_example_ids, steps_per_epoch=optimizer.steps_per_epoch, inputs=inputs))
    step = fns["step"]

    def recorded(state, x, y, plan, *rest):
        s = int(state.step)
        if s == captured.get("kill_at_step"):
            os.kill(os.getpid(), signal.SIGKILL)
        ids = ids_of(plan, state.step)
        captured["ids"][s] = sorted(int(i) for sh in ids.addressable_shards for i in np.asarray(sh.data))
        return step(state, x, y, plan, *rest)

    fns["step"] = recorded
    return fns


train_mod.in_memory_functions = recording_functions


class FakeImageNet:
    """n uint8 RGB images of varying size, labels in [0, 10), the same in every process."""

    def __init__(self, n, seed):
        rng = np.random.default_rng(seed)
        self.items = [
            {"image": rng.integers(0, 256, (20 + i % 7, 24 + i % 5, 3), dtype=np.uint8), "label": np.int64(i % 10)}
            for i in range(n)
        ]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


FAKE = {"train": FakeImageNet(100, 0), "validation": FakeImageNet(36, 1)}


def streamed(c):
    data_lib.imagenet_source = lambda split, data_dir=None: FAKE[split]
    c.batch_size = c.eval_batch_size = 16
    c.dataset.name = "imagenet2012"
    c.dataset.image_size = 16
    c.dataset.augment.crop_padding = 0
    c.model.hidden = (16, 16, 16)


def main():
    for run in SPEC["runs"]:
        c = tiny_config("bwn", sync_every_step=True)
        if run.get("streamed"):
            streamed(c)
        for key, value in run.get("config", {}).items():
            node = c
            *parents, leaf = key.split(".")
            for p in parents:
                node = node[p]
            node[leaf] = tuple(value) if isinstance(value, list) else value
        if SPEC["num_processes"] > 1:
            c.distributed = True
            c.cluster.coordinator_address = f"127.0.0.1:{SPEC['port']}"
            c.cluster.num_processes = SPEC["num_processes"]
            c.cluster.process_id = PID
        captured.clear()
        captured.update(ids={}, kill_at_step=run.get("kill_at_step") if PID == run.get("kill_process", PID) else None)
        result = train_mod.train_and_evaluate(c, run["workdir"])
        assert jax.process_count() == SPEC["num_processes"], jax.process_count()
        assert jax.device_count() == SPEC["num_processes"] * SPEC["devices"], jax.devices()
        name = os.path.join(SPEC["out"], f"{run['name']}_p{PID}")
        if "params" in captured:
            np.savez(name + ".npz", **captured["params"])
        with open(os.path.join(SPEC["out"], f"{run['name']}_ids_p{PID}.json"), "w") as f:
            json.dump(captured["ids"], f)
        with open(name + ".json", "w") as f:
            json.dump(result, f)


if __name__ == "__main__":
    main()
