"""A packed binary index: encode embeddings to bits, search by Hamming distance, save, load.

Encoding (projections in :mod:`extremeq.retrieval.rotation`):

    b(x) = sign((x - mu) P)  in {-1, +1}^c,   packed c bits per row (extremeq.packing)

Search: for a query code q and a database code d, both +-1 of length c,

    hamming(q, d) = (c - q . d) / 2,     q . d = c - 2 popcount(q_bits XOR d_bits)

so the XNOR-popcount product of :func:`extremeq.kernels.xnor_matmul` gives every Hamming
distance of a block of queries against the whole database, and ``lax.top_k`` on the negated
distances returns the k nearest, ties broken by the lower database index. The distances go
to ``top_k`` as float32 (exact: integers below 2^24): XLA's CPU top-k has a fast path for
float32 only and sorts int32 rows, measured 5-20x slower here at N = 60,000.

Files are plain ``.npz`` arrays (no pickle): ``codes`` uint32 [N, ceil(c/32)], ``mean``
float32 [d], ``projection`` float32 [d, c] (absent for ``"none"``), ``bits``, ``dim``,
``format``.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from extremeq.kernels import xnor_matmul
from extremeq.packing import num_words, pack_signs
from extremeq.retrieval.rotation import PROJECTIONS, make_projection

FORMAT = "extremeq.retrieval.BinaryIndex/1"


@dataclasses.dataclass(frozen=True)
class BinaryIndex:
    """Packed codes of a database plus what encodes a query the same way."""

    codes: jax.Array  # uint32 [N, ceil(bits / 32)]
    mean: jax.Array  # float32 [dim], subtracted before projecting
    projection: jax.Array | None  # float32 [dim, bits]; None: identity (bits == dim)
    bits: int
    dim: int

    def __len__(self) -> int:
        return int(self.codes.shape[0])

    @property
    def nbytes(self) -> int:
        """Bytes of the packed codes (the database as searched)."""
        return int(self.codes.size) * 4

    def encode(self, x) -> jax.Array:
        """Packed codes of float vectors ``x`` [n, dim] -> uint32 [n, ceil(bits / 32)]."""
        x = _check_embeddings(x, "x", self.dim)
        return _encode(jnp.asarray(x), self.mean, self.projection)

    def save(self, path: str) -> None:
        """Write the index as plain arrays (``numpy.savez``, readable without pickle)."""
        arrays = {
            "codes": np.asarray(self.codes),
            "mean": np.asarray(self.mean, np.float32),
            "bits": np.int64(self.bits),
            "dim": np.int64(self.dim),
            "format": np.str_(FORMAT),
        }
        if self.projection is not None:
            arrays["projection"] = np.asarray(self.projection, np.float32)
        with open(path, "wb") as f:
            np.savez(f, **arrays)


@jax.jit
def _encode(x, mean, projection):
    z = x.astype(jnp.float32) - mean
    if projection is not None:
        z = z @ projection
    return pack_signs(z, axis=-1)


def _check_embeddings(x, name: str, dim: int | None = None) -> np.ndarray | jax.Array:
    if not hasattr(x, "dtype"):
        x = np.asarray(x)
    if x.ndim != 2 or not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"{name} must be float [n, dim] embeddings, got {x.dtype} {tuple(x.shape)}.")
    if dim is not None and x.shape[1] != dim:
        raise ValueError(f"{name} has dimension {x.shape[1]}, the index was built for {dim}.")
    return x


def build_index(
    embeddings,
    *,
    projection: str = "none",
    bits: int | None = None,
    center: bool = True,
    seed: int = 0,
    itq_iterations: int = 50,
    itq_sample: int | None = 10_000,
) -> BinaryIndex:
    """Binarize and pack a database of float embeddings [N, dim].

    Args:
      embeddings: float [N, dim].
      projection: ``"none"`` (sign of each coordinate), ``"random"`` (random orthogonal
        rotation) or ``"itq"`` (PCA + Iterative Quantization rotation, learned from
        ``embeddings``); see :mod:`extremeq.retrieval.rotation`.
      bits: code length c (default ``dim``; ``"random"``/``"itq"`` allow fewer).
      center: subtract the database mean before projecting (else mu = 0).
      seed: seed of the random rotation (and of ITQ's starting rotation and sample).
      itq_iterations, itq_sample: ITQ's alternating steps (the paper's 50) and how many rows
        (drawn at random, seeded) it learns from; None: all rows.
    """
    if projection not in PROJECTIONS:
        raise ValueError(f"projection {projection!r} unknown; choose one of {', '.join(map(repr, PROJECTIONS))}.")
    x = np.asarray(_check_embeddings(embeddings, "embeddings"), np.float32)
    n, dim = x.shape
    if n < 1:
        raise ValueError("embeddings is empty; an index needs at least one row.")
    bits = dim if bits is None else int(bits)
    mean = x.mean(axis=0) if center else np.zeros(dim, np.float32)
    proj = make_projection(projection, x, mean, bits, seed=seed, itq_iterations=itq_iterations, itq_sample=itq_sample)
    index = BinaryIndex(
        codes=jnp.zeros((0, num_words(bits)), jnp.uint32),
        mean=jnp.asarray(mean, jnp.float32),
        projection=None if proj is None else jnp.asarray(proj),
        bits=bits,
        dim=dim,
    )
    return dataclasses.replace(index, codes=index.encode(x))


def hamming_distances(query_codes, database_codes, bits: int, *, backend: str = "auto") -> jax.Array:
    """int32 [Q, N] Hamming distances ``(c - q . d) / 2`` from one XNOR-popcount product."""
    dots = xnor_matmul(query_codes, database_codes, bits, backend=backend)
    return (jnp.int32(bits) - dots) // 2


@functools.partial(jax.jit, static_argnames=("bits", "k", "backend"))
def _search_block(query_codes, database_codes, *, bits, k, backend):
    dist = hamming_distances(query_codes, database_codes, bits, backend=backend)
    neg, idx = jax.lax.top_k(-dist.astype(jnp.float32), k)
    return (-neg).astype(jnp.int32), idx


def search(index: BinaryIndex, queries, k: int = 10, *, batch: int = 256, backend: str = "auto"):
    """The ``k`` database rows nearest to each query in Hamming distance.

    Queries [Q, dim] are encoded like the database and searched ``batch`` at a time (the
    distance block is int32 [batch, N]). Returns ``(distances int32 [Q, k], indices int32
    [Q, k])``, nearest first, ties by the lower database index.
    """
    k = int(k)
    if not 1 <= k <= len(index):
        raise ValueError(f"k must be in [1, {len(index)}] (the database size), got {k}.")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}.")
    q = index.encode(queries)
    out = [
        _search_block(q[s : s + batch], index.codes, bits=index.bits, k=k, backend=backend)
        for s in range(0, q.shape[0], batch)
    ]
    if not out:
        return jnp.zeros((0, k), jnp.int32), jnp.zeros((0, k), jnp.int32)
    return jnp.concatenate([d for d, _ in out]), jnp.concatenate([i for _, i in out])


def load_index(path: str) -> BinaryIndex:
    """Read an index written by :meth:`BinaryIndex.save` (``allow_pickle=False``)."""
    with np.load(path, allow_pickle=False) as f:
        keys = set(f.files)
        missing = {"codes", "mean", "bits", "dim", "format"} - keys
        if missing:
            raise ValueError(f"{path} is not a BinaryIndex file: missing {sorted(missing)}.")
        if str(f["format"]) != FORMAT:
            raise ValueError(f"{path} has format {str(f['format'])!r}; this version reads {FORMAT!r}.")
        bits, dim = int(f["bits"]), int(f["dim"])
        codes = f["codes"]
        proj = f["projection"] if "projection" in keys else None
        mean = f["mean"]
    if codes.dtype != np.uint32 or codes.ndim != 2 or codes.shape[1] != num_words(bits):
        raise ValueError(f"{path}: codes must be uint32 [N, {num_words(bits)}], got {codes.dtype} {codes.shape}.")
    if mean.shape != (dim,) or (proj is not None and proj.shape != (dim, bits)):
        raise ValueError(f"{path}: mean/projection shapes do not match dim={dim}, bits={bits}.")
    return BinaryIndex(
        codes=jnp.asarray(codes),
        mean=jnp.asarray(mean),
        projection=None if proj is None else jnp.asarray(proj),
        bits=bits,
        dim=dim,
    )
