"""Binary embeddings for similarity search, measured against float32 dot-product search.

Embeddings: the 256-d penultimate layer (after ReLU, L2-normalised) of an MLP 784-512-256-10
trained briefly on MNIST (Adam, --epochs). Database: the 60,000 training images; queries: the
first --queries test images. Ground truth: exact top-10 by float32 inner product (= cosine).

For each projection (none / random rotation / ITQ, :mod:`extremeq.retrieval`) the table gives
recall@10 of the Hamming top-10 and of the Hamming top-100 re-ranked in float32. Timings: the
scoring alone (float32 ``Q x N`` dot vs the XNOR-popcount product) and the whole search
(scores + top-10), for one query and for a batch of queries; queries/s and speed-up against
float32; memory of both databases. Each time is the median of --repeats calls after warm-up,
each call timed alone with ``jax.block_until_ready``, two query sets alternated.

    PYTHONPATH=. python experiments/bench_retrieval.py --out results/bench_retrieval.md
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform as py_platform
import statistics
import time

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from extremeq.kernels import xnor_matmul
from extremeq.retrieval import (
    build_index,
    dot_product_search,
    recall_at_k,
    rerank,
    search,
)
from extremeq.retrieval.exact import _dot_block
from extremeq.retrieval.index import _search_block


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mnist", default=os.environ.get("EXTREMEQ_MNIST", "../shared/data/mnist.npz"))
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--backend", default="auto", help="xnor_matmul backend")
    p.add_argument("--out", default="bench_retrieval.md")
    return p.parse_args(argv)


class Embedder(nnx.Module):
    def __init__(self, rngs):
        self.fc1 = nnx.Linear(784, 512, rngs=rngs)
        self.fc2 = nnx.Linear(512, 256, rngs=rngs)
        self.head = nnx.Linear(256, 10, rngs=rngs)

    def embed(self, x):
        return jax.nn.relu(self.fc2(jax.nn.relu(self.fc1(x))))

    def __call__(self, x):
        return self.head(self.embed(x))


def train_embedder(x, y, epochs, seed=0, batch=128):
    model = Embedder(nnx.Rngs(seed))
    opt = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)

    @nnx.jit
    def step(model, opt, xb, yb):
        def loss_fn(m):
            return optax.softmax_cross_entropy_with_integer_labels(m(xb), yb).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        opt.update(model, grads)
        return loss

    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        perm = rng.permutation(len(x))
        for s in range(0, len(x) - batch + 1, batch):
            idx = perm[s : s + batch]
            step(model, opt, x[idx], y[idx])
    return model


def median_time(fn, argsets, repeats):
    jax.block_until_ready(fn(*argsets[0]))
    jax.block_until_ready(fn(*argsets[1]))
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*argsets[i % 2]))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None):
    args = parse_args(argv)
    t0 = time.perf_counter()
    with np.load(args.mnist) as f:
        xtr = f["x_train"].reshape(-1, 784).astype(np.float32) / 255.0
        ytr = f["y_train"].astype(np.int32)
        xte = f["x_test"].reshape(-1, 784).astype(np.float32) / 255.0
        yte = f["y_test"].astype(np.int32)
    model = train_embedder(jnp.asarray(xtr), jnp.asarray(ytr), args.epochs)
    acc = float(jnp.mean(jnp.argmax(model(jnp.asarray(xte)), -1) == yte))
    emb = jax.jit(lambda x: model.embed(x))

    def normed(x):
        e = np.asarray(emb(jnp.asarray(x)))
        return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)

    db = normed(xtr)
    queries = normed(xte[: 2 * args.queries])
    q_a, q_b = queries[: args.queries], queries[args.queries :]
    train_s = time.perf_counter() - t0
    n, dim = db.shape
    _, truth = dot_product_search(db, q_a, k=10)

    def label_precision(found):
        """Fraction of the retrieved rows whose label equals the query's (semantic precision)."""
        return float(np.mean(ytr[np.asarray(found)] == yte[: args.queries, None]))

    lines = [
        f"# Binary embeddings for search vs float32 dot product ({datetime.date.today()})",
        "",
        (
            f"- machine: {py_platform.processor() or py_platform.machine()}, {os.cpu_count()} CPU cores "
            f"(shared with other jobs: timings under load), jax {jax.__version__}, flax {flax.__version__}, "
            f"backend {jax.default_backend()}, xnor_matmul backend {args.backend!r}"
        ),
        (
            f"- embeddings: MLP 784-512-256-10 trained {args.epochs} epoch(s) on MNIST (test accuracy "
            f"{100 * acc:.2f}%), penultimate layer (ReLU) L2-normalised; database {n:,} x {dim} "
            f"(train images), {args.queries} queries (test images); set-up {train_s:.0f} s"
        ),
        (
            f"- memory: float32 database {db.nbytes / 2**20:.2f} MiB; packed binary codes "
            f"{n * dim // 8 / 2**20:.2f} MiB ({db.nbytes / (n * dim // 8):.0f}x smaller)"
        ),
        f"- timings: median of {args.repeats} calls after warm-up, each with block_until_ready",
        "",
        "## Recall against exact float32 search (true top-10 by inner product)",
        "",
        (
            "| projection | bits | code bytes | recall@10 (Hamming top-10) | recall@10 (Hamming top-100, "
            "float re-rank) | same-label precision@10 | build s |"
        ),
        "| --- | --- | --- | --- | --- | --- | --- |",
        f"| exact float32 | 32 x {dim} | {4 * dim} | 1.000 | 1.000 | {label_precision(truth):.3f} | - |",
    ]
    indexes = {}
    for proj, nbits in (("none", dim), ("random", dim), ("itq", dim), ("random", 64), ("itq", 64)):
        tb = time.perf_counter()
        index = build_index(db, projection=proj, bits=nbits)
        jax.block_until_ready(index.codes)
        build_s = time.perf_counter() - tb
        indexes[proj, nbits] = index
        _, top10 = search(index, q_a, k=10, backend=args.backend)
        _, top100 = search(index, q_a, k=100, backend=args.backend)
        _, rr = rerank(jnp.asarray(db), jnp.asarray(q_a), top100, k=10)
        lines.append(
            f"| {proj} | {nbits} | {nbits // 8} | {recall_at_k(top10, truth):.3f} | "
            f"{recall_at_k(rr, truth):.3f} | {label_precision(top10):.3f} | {build_s:.1f} |"
        )
        print(lines[-1], flush=True)

    index = indexes["random", dim]
    dbf = jnp.asarray(db)
    lines += [
        "",
        f"## Speed ({dim}-bit codes; every projection costs the same to search)",
        "",
        "| queries per call | stage | float32 ms | binary ms | speed-up | float32 queries/s | binary queries/s |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    score_f = jax.jit(lambda q, d: jnp.dot(q, d.T))
    bits = index.bits

    def score_b(qc, dc):
        return xnor_matmul(qc, dc, bits, backend=args.backend)

    for nq in sorted({1, 100, args.queries}):
        qa, qb = jnp.asarray(q_a[:nq]), jnp.asarray(q_b[:nq])
        ca, cb = index.encode(qa), index.encode(qb)
        rows = [
            (
                "scores only",
                lambda q: score_f(q, dbf),
                [(qa,), (qb,)],
                lambda c: score_b(c, index.codes),
                [(ca,), (cb,)],
            ),
            (
                "scores + top-10",
                lambda q: _dot_block(q, dbf, k=10),
                [(qa,), (qb,)],
                lambda c: _search_block(c, index.codes, bits=bits, k=10, backend=args.backend),
                [(ca,), (cb,)],
            ),
            (
                "encode + scores + top-10 (API)",
                lambda q, nq=nq: dot_product_search(dbf, q, k=10, batch=nq),
                [(qa,), (qb,)],
                lambda q, nq=nq: search(index, q, k=10, batch=nq, backend=args.backend),
                [(qa,), (qb,)],
            ),
        ]
        if args.backend == "auto":  # the other CPU path of xnor_matmul: unpack to int8, one int8 dot
            rows.insert(
                1,
                (
                    "scores only, xnor_matmul backend 'dot'",
                    lambda q: score_f(q, dbf),
                    [(qa,), (qb,)],
                    lambda c: xnor_matmul(c, index.codes, bits, backend="dot"),
                    [(ca,), (cb,)],
                ),
            )
        for stage, ff, fa, bf, ba in rows:
            tf = median_time(ff, fa, args.repeats)
            tbin = median_time(bf, ba, args.repeats)
            lines.append(
                f"| {nq} | {stage} | {1e3 * tf:.3f} | {1e3 * tbin:.3f} | {tf / tbin:.1f}x | "
                f"{nq / tf:,.0f} | {nq / tbin:,.0f} |"
            )
            print(lines[-1], flush=True)
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
