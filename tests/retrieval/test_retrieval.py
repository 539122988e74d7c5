"""extremeq.retrieval against NumPy brute force: codes, Hamming distances, top-k, save/load."""

import itertools

import jax.numpy as jnp
import numpy as np
import pytest

from extremeq.packing import np_pack_bits_reference
from extremeq.retrieval import (
    build_index,
    dot_product_search,
    hamming_distances,
    itq_loss,
    itq_rotation,
    load_index,
    random_rotation,
    recall_at_k,
    rerank,
    search,
)


def _data(seed, n, dim, q=7):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, dim)).astype(np.float32), rng.standard_normal((q, dim)).astype(np.float32)


def _np_codes(x, mean, proj):
    z = x.astype(np.float32) - mean
    if proj is not None:
        z = z @ proj
    return np.where(z >= 0, 1, -1)


def _np_hamming(qc, dc):
    return (qc[:, None, :] != dc[None, :, :]).sum(-1)


@pytest.mark.parametrize(
    "projection,dim,bits", [("none", 40, None), ("none", 64, None), ("random", 50, 20), ("itq", 33, 33)]
)
def test_codes_and_search_match_numpy(projection, dim, bits):
    db, q = _data(dim, 300, dim)
    index = build_index(db, projection=projection, bits=bits, itq_iterations=5)
    c = bits or dim
    dc = _np_codes(db, db.mean(0), index.projection)
    np.testing.assert_array_equal(np.asarray(index.codes), np_pack_bits_reference(dc > 0))
    qc = _np_codes(q, db.mean(0), index.projection)
    ham = _np_hamming(qc, dc)
    np.testing.assert_array_equal(
        np.asarray(hamming_distances(index.encode(q), index.codes, c, backend="xla_popcount")), ham
    )
    for backend in ("xla_popcount", "dot"):
        dist, idx = search(index, q, k=17, batch=3, backend=backend)
        want_idx = np.argsort(ham, axis=1, kind="stable")[:, :17]  # ties: lower index first
        np.testing.assert_array_equal(np.asarray(idx), want_idx)
        np.testing.assert_array_equal(np.asarray(dist), np.take_along_axis(ham, want_idx, 1))


def test_uncentered_codes_are_plain_signs():
    db, _q = _data(1, 50, 32)
    index = build_index(db, center=False)
    np.testing.assert_array_equal(np.asarray(index.codes), np_pack_bits_reference(db >= 0))
    # A database row searched for itself is at Hamming distance 0.
    dist, _idx = search(index, db[:5], k=1)
    np.testing.assert_array_equal(np.asarray(dist)[:, 0], 0)


def test_random_rotation_is_orthonormal_and_seeded():
    p = random_rotation(24, 10, seed=3)
    np.testing.assert_allclose(p.T @ p, np.eye(10), atol=1e-5)
    np.testing.assert_array_equal(p, random_rotation(24, 10, seed=3))
    assert not np.allclose(p, random_rotation(24, 10, seed=4))


def test_itq_lowers_quantization_loss_and_is_orthonormal():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 16)) @ rng.standard_normal((16, 16))  # correlated
    x -= x.mean(0)
    p0 = itq_rotation(x, 8, iterations=0)
    p = itq_rotation(x, 8, iterations=30)
    np.testing.assert_allclose(p.T @ p, np.eye(8), atol=1e-4)
    # Same PCA subspace, so the loss is comparable: ITQ's alternation never increases it.
    losses = [itq_loss(x @ itq_rotation(x, 8, iterations=0), np.eye(8))]
    for it in (1, 5, 30):
        losses.append(itq_loss(x @ itq_rotation(x, 8, iterations=it), np.eye(8)))
    assert all(b <= a + 1e-6 for a, b in itertools.pairwise(losses))
    assert losses[-1] < losses[0]
    # The projection spans the top-8 principal subspace in both cases.
    np.testing.assert_allclose(p @ p.T, p0 @ p0.T, atol=1e-4)


def test_itq_recovers_a_rotated_hypercube():
    """Data exactly on the vertices of a rotated cube: ITQ finds codes equal (up to bit
    permutation and flips) to the generating signs, i.e. zero loss once scaled."""
    rng = np.random.default_rng(1)
    b = np.where(rng.standard_normal((400, 6)) >= 0, 1.0, -1.0)
    b -= b.mean(0)
    r0 = random_rotation(6, 6, seed=7).astype(np.float64)
    p = itq_rotation(b @ r0.T, 6, iterations=100)
    codes = np.where((b @ r0.T) @ p >= 0, 1, -1)
    truth = np.where(b >= 0, 1, -1)
    # every learned bit equals one generating bit or its negation
    agree = np.abs(codes.T @ truth) / len(b)
    assert np.all(np.max(agree, axis=1) == 1.0)


def test_save_load_roundtrip_plain_arrays(tmp_path):
    db, q = _data(2, 200, 48)
    for projection in ("none", "random"):
        index = build_index(db, projection=projection)
        path = tmp_path / f"{projection}.npz"
        index.save(str(path))
        with np.load(path, allow_pickle=False) as f:  # no pickle needed to read it
            assert f["codes"].dtype == np.uint32
        back = load_index(str(path))
        assert (back.bits, back.dim, len(back)) == (48, 48, 200)
        for a, b in zip(search(index, q, 5), search(back, q, 5)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_load_rejects_other_files(tmp_path):
    path = tmp_path / "x.npz"
    np.savez(path, codes=np.zeros((2, 1), np.uint32))
    with pytest.raises(ValueError, match="missing"):
        load_index(str(path))


def test_exact_search_rerank_and_recall_match_numpy():
    db, q = _data(3, 100, 12)
    scores, idx = dot_product_search(db, q, k=4, batch=2)
    full = q @ db.T
    want = np.argsort(-full, axis=1, kind="stable")[:, :4]
    np.testing.assert_array_equal(np.asarray(idx), want)
    np.testing.assert_allclose(np.asarray(scores), np.take_along_axis(full, want, 1), rtol=1e-5)
    cand = np.stack([np.arange(0, 100, 5)] * len(q)).astype(np.int32)
    _, ridx = rerank(jnp.asarray(db), jnp.asarray(q), jnp.asarray(cand), k=3)
    sub = full[:, ::5]
    np.testing.assert_array_equal(np.asarray(ridx), 5 * np.argsort(-sub, axis=1, kind="stable")[:, :3])
    assert recall_at_k([[1, 2, 3]], [[3, 4, 5]]) == pytest.approx(1 / 3)
    assert recall_at_k([[1, 2, 3, 4], [9, 8, 7, 6]], [[4, 1], [0, 5]]) == pytest.approx(0.5)


def test_bad_inputs_say_what_to_do():
    db, q = _data(4, 20, 8)
    with pytest.raises(ValueError, match="choose one of"):
        build_index(db, projection="pca")
    with pytest.raises(ValueError, match="use projection='random'"):
        build_index(db, bits=4)
    index = build_index(db)
    with pytest.raises(ValueError, match="database size"):
        search(index, q, k=21)
    with pytest.raises(ValueError, match="built for 8"):
        search(index, q[:, :7], k=1)
    with pytest.raises(ValueError, match="float"):
        build_index(np.zeros((3, 4), np.int32))


def test_many_ties_keep_lower_index_first():
    """8-bit codes over 5,000 rows: every distance value is shared by hundreds of rows."""
    db, q = _data(5, 5000, 8, q=4)
    index = build_index(db)
    ham = _np_hamming(_np_codes(q, db.mean(0), None), _np_codes(db, db.mean(0), None))
    dist, idx = search(index, q, k=300)
    np.testing.assert_array_equal(np.asarray(idx), np.argsort(ham, axis=1, kind="stable")[:, :300])
    np.testing.assert_array_equal(np.asarray(dist), np.sort(ham, axis=1)[:, :300])
