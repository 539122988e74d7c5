"""Several processes (one per host, or several on one machine): JAX's multi-controller runtime.

Every process runs the same program (``python -m extremeq.train ... --config.distributed=True``);
``jax.distributed.initialize`` connects them through process 0's coordinator, after which
``jax.devices()`` lists the devices of all processes, the data-parallel mesh spans them, and a
jitted step's gradient all-reduce crosses hosts (NCCL on GPUs, ICI/DCN on TPUs, gloo on CPUs).

What each process does differently (the rest is identical, parameters included):

* it reads only its part of every global batch (in-memory data: the rows its devices hold of the
  batch sharded along ``"data"``; streamed data: every ``P``-th local batch,
  extremeq.data.sharding);
* process 0 alone writes ``metrics.jsonl``, ``final.json``, ``config.json`` and TensorBoard;
* checkpoints are written by all of them together (orbax: process 0 commits the step).
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

# CPU devices of different processes exchange all-reduces through gloo (XLA:CPU's default has no
# cross-process collectives).
CPU_COLLECTIVES = "gloo"


def cluster_kwargs(cluster) -> dict:
    """The arguments of ``jax.distributed.initialize`` set in ``config.cluster`` (the unset ones are
    left for JAX to detect from the environment: Cloud TPU, SLURM, Open MPI, Kubernetes)."""
    kwargs = {}
    if cluster.coordinator_address:
        kwargs["coordinator_address"] = cluster.coordinator_address
    if cluster.num_processes > 0:
        kwargs["num_processes"] = int(cluster.num_processes)
    if cluster.process_id >= 0:
        kwargs["process_id"] = int(cluster.process_id)
    return kwargs


def initialize(config) -> None:
    """``jax.distributed.initialize(**cluster_kwargs(config.cluster))`` once per process, with gloo
    collectives when the devices are CPUs. Call before anything touches a device."""
    if jax.distributed.is_initialized():
        return
    jax.config.update("jax_cpu_collectives_implementation", CPU_COLLECTIVES)
    jax.distributed.initialize(**cluster_kwargs(config.cluster))


def split_cpu(num_devices: int) -> None:
    """Expose the host's CPU as ``num_devices`` XLA devices (``jax_num_cpu_devices``), so that the
    data-parallel mesh puts one share of every batch on each, run on its own thread.

    XLA:CPU runs each matrix product on a single thread; a step of small products (a character-level
    GPT: [768 x 128] @ [128 x 512]) therefore keeps one core busy at a time, and splitting the batch
    over one device per core is what uses the others (``experiments/bench_lm_step.py``). Only the CPU
    backend is affected (on a GPU or TPU host the mesh spans the accelerators). 1 leaves JAX's default
    (one CPU device). Call before anything touches a device."""
    if num_devices < 1:
        raise ValueError(f"config.cpu_devices must be >= 1, got {num_devices}")
    if num_devices == 1 or jax.config.jax_num_cpu_devices == num_devices:
        return
    try:
        jax.config.update("jax_num_cpu_devices", int(num_devices))
    except RuntimeError as e:
        raise RuntimeError(
            f"config.cpu_devices={num_devices} must be set before JAX touches a device; this process "
            "already has its devices (start a fresh process, e.g. the python -m extremeq.train CLI)"
        ) from e


def is_main_process() -> bool:
    """True in process 0, the one that writes the run's files."""
    return jax.process_index() == 0


def replicate(tree, mesh):
    """``tree``'s arrays replicated over ``mesh``: ``jax.device_put`` in one process; with several,
    every process holds the same host values and fills its own devices
    (``jax.make_array_from_process_local_data``; PRNG keys through their key data)."""
    sharding = NamedSharding(mesh, P())
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)

    def put(x):
        if isinstance(x, jax.Array) and x.sharding == sharding:
            return x
        if hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(put(jax.random.key_data(x)), impl=jax.random.key_impl(x))
        return jax.make_array_from_process_local_data(sharding, np.asarray(x))

    return jax.tree_util.tree_map(put, tree)
