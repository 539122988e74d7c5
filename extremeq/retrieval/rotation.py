"""Projections applied before the sign: none, random orthogonal, or learned by ITQ.

Binary codes of an embedding x in R^d are ``b = sign((x - mu) P)`` with ``P`` [d, c], c <= d
bits (sign(0) = +1, as in :mod:`extremeq.packing`). Centering by the database mean ``mu``
makes each bit split the data near its middle; the projection decides which directions the
bits measure:

* ``"none"``: ``P = I`` (c = d), the sign of each coordinate.
* ``"random"``: ``P`` with orthonormal columns, the Q factor of a standard Gaussian [d, c]
  matrix. For unit vectors, Hamming distance then estimates the angle (Charikar, 2002:
  ``P(bit differs) = theta / pi`` for Gaussian directions), and a rotation spreads variance
  evenly over the bits.
* ``"itq"``: Iterative Quantization (Gong and Lazebnik, CVPR 2011): PCA to the top c
  directions ``W`` [d, c], then a rotation ``R`` [c, c] minimising the quantization loss
  ``||B - V R||_F^2`` over ``B in {-1, +1}^{n x c}`` and orthogonal ``R``, ``V = (X - mu) W``,
  by alternating ``B = sign(V R)`` and the orthogonal Procrustes step ``R = U S^T`` where
  ``V^T B = U Sigma S^T`` (SVD). ``P = W R``.

Everything here is NumPy on the host (float64 for the factorizations, float32 for ITQ's
alternating products): it runs once, at
index build time.
"""

from __future__ import annotations

import numpy as np

PROJECTIONS = ("none", "random", "itq")


def random_rotation(dim: int, bits: int, seed: int = 0) -> np.ndarray:
    """[dim, bits] with orthonormal columns: Q of the QR factorization of a Gaussian matrix,
    signs fixed so that diag(R) > 0 (then Q is Haar-distributed; Mezzadri, 2007)."""
    if not 1 <= bits <= dim:
        raise ValueError(f"random rotation needs 1 <= bits <= dim, got bits={bits}, dim={dim}.")
    g = np.random.default_rng(seed).standard_normal((dim, bits))
    q, r = np.linalg.qr(g)
    return (q * np.where(np.diag(r) < 0, -1.0, 1.0)).astype(np.float32)


def itq_loss(v: np.ndarray, rotation: np.ndarray) -> float:
    """ITQ's quantization loss ``||sign(V R) - V R||_F^2`` (Gong and Lazebnik, 2011, Eq. 2)."""
    vr = v @ rotation
    return float(np.sum((np.where(vr >= 0, 1.0, -1.0) - vr) ** 2))


def itq_rotation(centered: np.ndarray, bits: int, iterations: int = 50, seed: int = 0) -> np.ndarray:
    """ITQ projection ``W R`` [dim, bits] learned from centered data [n, dim] (see module doc).

    Starts from a random rotation (seeded) and runs ``iterations`` alternating steps; each
    step cannot increase :func:`itq_loss`.
    """
    x = np.asarray(centered, np.float64)
    if x.ndim != 2:
        raise ValueError(f"itq_rotation needs [n, dim] data, got shape {x.shape}.")
    _n, dim = x.shape
    if not 1 <= bits <= dim:
        raise ValueError(f"ITQ needs 1 <= bits <= dim, got bits={bits}, dim={dim}.")
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}.")
    # PCA: the top `bits` right singular vectors of X.
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    w = vt[:bits].T
    v = (x @ w).astype(np.float32)  # the alternation in float32: twice as fast, same codes
    r = random_rotation(bits, bits, seed)
    for _ in range(iterations):
        b = np.where(v @ r >= 0, np.float32(1), np.float32(-1))
        u, _, st = np.linalg.svd((v.T @ b).astype(np.float64))
        r = (u @ st).astype(np.float32)
    return (w @ r).astype(np.float32)


def make_projection(
    kind: str,
    embeddings: np.ndarray,
    mean: np.ndarray,
    bits: int,
    *,
    seed: int = 0,
    itq_iterations: int = 50,
    itq_sample: int | None = None,
) -> np.ndarray | None:
    """The projection ``P`` [dim, bits] of ``kind`` (None for ``"none"``); ITQ learns from
    ``itq_sample`` rows drawn at random (seeded), or all rows when None."""
    dim = embeddings.shape[1]
    if kind == "none":
        if bits != dim:
            raise ValueError(
                f"projection 'none' keeps one bit per dimension (bits={dim}); "
                f"got bits={bits}: use projection='random' or 'itq' for fewer bits."
            )
        return None
    if kind == "random":
        return random_rotation(dim, bits, seed)
    if kind == "itq":
        x = np.asarray(embeddings)
        if itq_sample is not None and itq_sample < len(x):
            x = x[np.sort(np.random.default_rng(seed).choice(len(x), itq_sample, replace=False))]
        return itq_rotation(np.asarray(x, np.float64) - mean, bits, itq_iterations, seed)
    raise ValueError(f"projection {kind!r} unknown; choose one of {', '.join(map(repr, PROJECTIONS))}.")
