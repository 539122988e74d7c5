"""Where the packed MLP's batch-1 call goes, beside LCE, cache-cold as in the round-robin (issue 13).

The 784-1024-1024-1024-10 MLP of ``bench_inference_peers.py`` (same weights, same LCE worker, one
pinned core). Each candidate is timed right after one LCE call and followed by one call of the
training graph, as ``bench_inference_peers.py`` times the packed model, so every candidate starts
with the caches other engines left behind; the candidates' order is shuffled each round.
Candidates: the packed model (``PackedModel.__call__``), its executable called through
``Compiled.__call__``, the same network called with one argument per array (18, as before the
arrays were grouped), executables that do nothing but take 1 or 18 arguments (the call's own
cost), and the float first layer alone (784x1024, 3.1 MiB as float32) in several forms: ``x @ W``
(as in the model), ``W^T x``, NumPy's ``x @ W`` (OpenBLAS), and with the weights stored in half or
a quarter of the bytes (bfloat16, float16, int8) and converted to float32 inside the executable:
XLA:CPU writes the converted matrix out before its dot, so these read fewer bytes from memory but
move more in all.

    python experiments/profile_mlp_batch1.py --repeats 100
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=40)
    p.add_argument("--lce-python", default=".peers/lce/bin/python")
    args = p.parse_args(argv)
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    sys.path.insert(0, os.path.dirname(HERE))
    sys.path.insert(0, HERE)
    import jax

    jax.config.update("jax_cpu_enable_async_dispatch", False)
    import jax.numpy as jnp
    import numpy as np
    from bench_inference import jitted_eval
    from bench_inference_peers import LceWorker, build_models, peer_arrays
    from flax import nnx

    import extremeq

    model, _, recipe = build_models()["mlp"]
    packed, graph = extremeq.export(model, recipe=recipe), jitted_eval(model)
    folder = tempfile.mkdtemp(prefix="lce_peer_")
    arrays, spec = peer_arrays("mlp", model)
    x_np = np.random.default_rng(101).standard_normal((1, 784)).astype(np.float32)
    np.savez(os.path.join(folder, "weights.npz"), **arrays)
    np.savez(os.path.join(folder, "inputs.npz"), mlp_1=x_np)
    with open(os.path.join(folder, "spec.json"), "w") as f:
        json.dump({"models": ["mlp"], "batches": [1], "mlp": spec}, f)
    worker = LceWorker(args.lce_python, folder)
    x = jnp.asarray(x_np.reshape(1, 28, 28, 1))
    xf = jnp.asarray(x_np)
    exe, pargs = packed.executable(x.shape), packed._args
    graphdef, state = nnx.split(packed.module)
    leaves = jax.tree_util.tree_leaves(state)  # one argument per array: the call before grouping
    ungrouped = jax.jit(
        lambda ls, v: nnx.merge(graphdef, jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(state), ls))(v)
    )
    ungrouped = ungrouped.lower(leaves, x).compile()
    w1 = next(v for v in jax.tree_util.tree_leaves(pargs) if v.shape == (784, 1024))
    w1_np = np.asarray(w1).copy()

    def compiled(f, *a):
        c = jax.jit(f, keep_unused=True).lower(*a).compile()
        return lambda: c(*a)

    def first(w, transposed=False):
        if transposed:
            return compiled(lambda w, v: jax.lax.dot_general(w, v, (((0,), (1,)), ((), ()))), w, xf)
        return compiled(lambda w, v: v @ w.astype(jnp.float32), w, xf)

    int8 = np.clip(np.round(w1_np / np.abs(w1_np).max() * 127), -127, 127).astype(np.int8)
    candidates = {
        "packed model, `packed(x)`": lambda: packed(x),
        "packed model, its executable through `Compiled.__call__`": lambda: exe(*pargs, x),
        "packed model, one argument per array (18, as before this round)": lambda: ungrouped(leaves, x),
        "executable that does nothing, 1 argument": compiled(lambda v: v[0, 0, 0], x),
        "executable that does nothing, 18 arguments": compiled(lambda ls, v: v[0, 0, 0], leaves, x),
        "first layer alone, XLA `x @ W`": first(w1),
        "first layer alone, XLA `W^T x`": first(w1, transposed=True),
        "first layer alone, NumPy `x @ W` (OpenBLAS)": lambda: x_np @ w1_np,
        "first layer alone, bfloat16 W converted in XLA": first(jnp.asarray(w1_np, jnp.bfloat16)),
        "first layer alone, float16 W converted in XLA": first(jnp.asarray(w1_np, jnp.float16)),
        "first layer alone, int8 W converted in XLA": first(jnp.asarray(int8)),
    }
    times = {k: [] for k in ["LCE, whole network", *candidates]}
    load0 = os.getloadavg()
    order = random.Random(0)
    for i in range(args.repeats + 5):
        names = list(candidates)
        order.shuffle(names)  # a new order each round: no candidate always follows the same one
        for k in names:
            f = candidates[k]
            dt_lce = worker.ask("time", "mlp", 1, 1)["seconds"]
            t0 = time.perf_counter()
            jax.block_until_ready(f())
            dt = time.perf_counter() - t0
            jax.block_until_ready(graph(x))
            if i >= 5:
                times[k].append(dt)
                times["LCE, whole network"].append(dt_lce)
    worker.close()
    load = ", ".join(f"{v:.1f}" for v in load0)
    print(
        f"MLP batch 1, one pinned core, median ms of {args.repeats} cache-cold calls; jax {jax.__version__}; "
        f"load average {load} (1, 5, 15 min) at the start\n"
    )
    print("| what | ms |\n| --- | ---: |")
    for k, v in times.items():
        print(f"| {k} | {statistics.median(v) * 1e3:.3f} |")


if __name__ == "__main__":
    main()
