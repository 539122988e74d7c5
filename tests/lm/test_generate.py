"""Sampling with the KV cache against full recomputation, and the packed export against the training graph."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from extremeq.inference.lm import ExportFormatError, export_lm, load_lm
from extremeq.nn.generate import generate, sample_logits
from extremeq.nn.gpt import GPT

SMALL = {"block_size": 16, "num_layers": 2, "num_heads": 2, "width": 32}


def peaked(linear="fp", positions="rope", scale=40.0, **kw):
    """A random GPT with confident predictions (scaled tied embeddings), so greedy argmax has margins."""
    model = GPT(17, **{**SMALL, **kw}, linear=linear, positions=positions, rngs=nnx.Rngs(0))
    model.wte.embedding[...] = model.wte.embedding[...] * scale
    return model


@pytest.mark.parametrize("positions", ["rope", "learned"])
def test_greedy_equals_argmax_of_full_recomputation(positions):
    model = peaked("fp", positions)
    prompt = np.array([[1, 5, 2]], np.int32)
    out = generate(model, prompt, 40)
    # one compiled forward of a fixed width: the context right-padded with zeros, which no earlier
    # position sees (causal mask: test_gpt.py::test_no_token_sees_the_future), and its logits read at the last real token
    width = prompt.shape[1] + 40 if positions == "rope" else 16
    full = jax.jit(lambda tokens: model(tokens))
    seq = prompt
    for _ in range(40):
        # rope: the whole sequence with sliding-window attention; learned: the last block_size tokens
        ctx = seq if positions == "rope" else seq[:, -16:]
        padded = np.zeros((1, width), np.int32)
        padded[:, : ctx.shape[1]] = ctx
        nxt = np.asarray(jnp.argmax(full(jnp.asarray(padded))[:, ctx.shape[1] - 1], axis=-1))
        seq = np.concatenate([seq, nxt[:, None].astype(np.int32)], axis=1)
    np.testing.assert_array_equal(out, seq)


def test_sampling_top_k_and_temperature():
    logits = jnp.asarray([[0.0, 3.0, 1.0, 2.5, -1.0]])
    assert int(sample_logits(logits, None)[0]) == 1  # greedy
    keys = jax.random.split(jax.random.key(0), 300)
    draws = np.array([int(sample_logits(logits, k, 1.0, 2)[0]) for k in keys])
    assert set(draws) == {1, 3}  # only the 2 largest logits
    p3 = np.exp(2.5) / (np.exp(3.0) + np.exp(2.5))  # renormalised softmax over the top 2
    assert abs(np.mean(draws == 3) - p3) < 0.1
    assert all(int(sample_logits(logits, k, 0.7, 1)[0]) == 1 for k in keys[:5])
    model = peaked()
    a = generate(model, [1, 2], 20, temperature=1.0, top_k=5, key=jax.random.key(3))
    b = generate(model, [1, 2], 20, temperature=1.0, top_k=5, key=jax.random.key(3))
    np.testing.assert_array_equal(a, b)  # same key, same text
    with pytest.raises(ValueError, match="key"):
        generate(model, [1], 3, temperature=1.0)


@pytest.mark.parametrize("linear", ["bitnet", "bitnet_1bit"])
def test_packed_export_decodes_the_same_500_tokens(linear, tmp_path):
    model = peaked(linear, "rope", scale=10.0)
    packed = export_lm(model)
    tokens = jnp.asarray(np.random.default_rng(0).integers(0, 17, (2, 16)), jnp.int32)
    np.testing.assert_allclose(packed(tokens), model(tokens), rtol=1e-5, atol=1e-5)
    nbytes = packed.save(tmp_path / "m.npz")
    loaded = load_lm(tmp_path / "m.npz")
    ref = generate(model, [3, 1, 4], 500)
    np.testing.assert_array_equal(generate(loaded.module, [3, 1, 4], 500), ref)
    # 2 bits (1 bit) per weight + one float32 gamma per layer, against 32 bits per float weight
    ratio = 16 if linear == "bitnet" else 32
    for path, packed_bytes, float_bytes in loaded.layer_sizes():
        assert packed_bytes == float_bytes // ratio + 4, path
    assert nbytes < sum(a.nbytes for a in jax.tree_util.tree_leaves(nnx.state(model))) / 2


def test_export_errors(tmp_path):
    with pytest.raises(ValueError, match="nothing to pack"):
        export_lm(peaked("fp"))
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ExportFormatError, match="corrupt"):
        load_lm(bad)


@pytest.mark.parametrize("linear", ["bitnet", "bitnet_1bit"])
def test_codes_and_words_decoding_agree_and_codes_are_not_saved(linear, tmp_path):
    """decode="codes" (int8 c_W unpacked once) and decode="words" (the kernels) give the same logits,
    bit for bit (integer products), and the file holds the 2-bit / 1-bit words only."""
    packed = export_lm(peaked(linear, "rope", scale=10.0), decode="words")
    tokens = jnp.asarray(np.random.default_rng(1).integers(0, 17, (2, 16)), jnp.int32)
    by_words = np.asarray(packed(tokens))
    packed.set_decode("codes")
    layer = packed.packed_layers()[0]
    assert layer.codes[...].dtype == jnp.int8 and layer.codes[...].shape == (layer.out_features, layer.in_features)
    np.testing.assert_array_equal(np.asarray(packed(tokens)), by_words)
    assert not any(k.endswith("codes") for k in packed.arrays())
    packed.save(tmp_path / "m.npz")
    assert load_lm(tmp_path / "m.npz", decode="words").packed_layers()[0].codes is None
    with pytest.raises(ValueError, match="decode"):
        packed.set_decode("int4")


def test_export_file_checksums_and_image_loader(tmp_path):
    """The LM file is the project's export format: an array changed after saving fails its checksum,
    a wrong version is refused, and the image loader names the LM loader."""
    import json

    from extremeq.inference import META_KEY, load

    path = tmp_path / "m.npz"
    export_lm(peaked("bitnet")).save(path)
    assert isinstance(load_lm(path), type(export_lm(peaked("bitnet"))))
    with pytest.raises(ExportFormatError, match="load_lm"):
        load(path)
    with np.load(path) as z:
        entries = {k: z[k] for k in z.files}
    name = next(k for k in entries if k.endswith("/w"))
    damaged = dict(entries, **{name: entries[name] ^ np.uint32(1)})
    np.savez(tmp_path / "damaged.npz", **damaged)
    with pytest.raises(ExportFormatError, match="checksum"):
        load_lm(tmp_path / "damaged.npz")
    meta = json.loads(bytes(entries[META_KEY]).decode())
    meta["version"] = 99
    np.savez(tmp_path / "v99.npz", **dict(entries, **{META_KEY: np.frombuffer(json.dumps(meta).encode(), np.uint8)}))
    with pytest.raises(ExportFormatError, match="version 99"):
        load_lm(tmp_path / "v99.npz")
