"""Exact float search, re-ranking and recall: the yardsticks for a binary index.

* :func:`dot_product_search`: the k rows of a float32 database with the largest inner
  product ``<q, x>`` (for L2-normalised rows, the cosine), ties by the lower index.
* :func:`rerank`: the k best of given candidate rows by the exact inner product (the usual
  second stage after a Hamming-distance shortlist).
* :func:`recall_at_k`: ``|found_q  intersect  true_q| / k`` averaged over queries, where
  ``true_q`` are the exact top k.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


@functools.partial(jax.jit, static_argnames=("k",))
def _dot_block(queries, database, *, k):
    scores = jnp.dot(queries, database.T, precision=jax.lax.Precision.HIGHEST)
    return jax.lax.top_k(scores, k)


def dot_product_search(database, queries, k: int = 10, *, batch: int = 256):
    """Exact top-k by float32 inner product: ``(scores [Q, k], indices int32 [Q, k])``."""
    database = jnp.asarray(database, jnp.float32)
    queries = jnp.asarray(queries, jnp.float32)
    if database.ndim != 2 or queries.ndim != 2 or database.shape[1] != queries.shape[1]:
        raise ValueError(f"need database [N, d] and queries [Q, d]; got {database.shape}, {queries.shape}.")
    if not 1 <= k <= database.shape[0]:
        raise ValueError(f"k must be in [1, {database.shape[0]}], got {k}.")
    out = [_dot_block(queries[s : s + batch], database, k=k) for s in range(0, queries.shape[0], batch)]
    return jnp.concatenate([s for s, _ in out]), jnp.concatenate([i for _, i in out])


@functools.partial(jax.jit, static_argnames=("k",))
def rerank(database, queries, candidates, k: int = 10):
    """The ``k`` of ``candidates`` [Q, C] (row indices) with the largest exact inner product.

    Returns ``(scores [Q, k], indices [Q, k])``, indices into the database.
    """
    rows = jnp.asarray(database, jnp.float32)[candidates]  # [Q, C, d]
    scores = jnp.einsum("qd,qcd->qc", jnp.asarray(queries, jnp.float32), rows, precision=jax.lax.Precision.HIGHEST)
    best, pos = jax.lax.top_k(scores, k)
    return best, jnp.take_along_axis(candidates, pos, axis=1)


def recall_at_k(found, truth) -> float:
    """Mean over queries of ``|found_q & truth_q| / |truth_q|`` (``found`` may hold more
    columns than ``truth``: recall of the true k in a longer shortlist)."""
    found, truth = np.asarray(found), np.asarray(truth)
    if found.ndim != 2 or truth.ndim != 2 or found.shape[0] != truth.shape[0]:
        raise ValueError(f"found [Q, k'] and truth [Q, k] needed; got {found.shape}, {truth.shape}.")
    hits = [len(np.intersect1d(f, t)) for f, t in zip(found, truth)]
    return float(np.mean(hits) / truth.shape[1])
