"""GPT: causal masking, KV-cache decoding equal to full recomputation, the rotary sliding window."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from extremeq.nn.gpt import GPT, attention_mask, rope

SMALL = {"block_size": 16, "num_layers": 2, "num_heads": 2, "width": 32}
TOKENS = jnp.asarray(np.random.default_rng(0).integers(0, 17, (2, 16)), jnp.int32)


def small(linear="fp", positions="rope", **kw):
    return GPT(17, **{**SMALL, **kw}, linear=linear, positions=positions, rngs=nnx.Rngs(0))


@pytest.mark.parametrize("linear", ["fp", "bitnet", "bitnet_1bit"])
@pytest.mark.parametrize("positions", ["rope", "learned"])
def test_no_token_sees_the_future(linear, positions):
    model = small(linear, positions)
    t = 9
    changed = TOKENS.at[:, t].set((TOKENS[:, t] + 5) % 17)
    a, b = model(TOKENS), model(changed)
    np.testing.assert_array_equal(a[:, :t], b[:, :t])  # earlier logits bit-identical
    assert np.all(np.abs(np.asarray(a[:, t:]) - np.asarray(b[:, t:])).max(axis=-1) > 0)


@pytest.mark.parametrize("linear", ["fp", "bitnet_1bit", "bitnet"])
@pytest.mark.parametrize("positions", ["rope", "learned"])
def test_kv_cache_decoding_equals_full_recomputation(linear, positions):
    model = small(linear, positions)
    full = model(TOKENS)
    cache = model.init_cache(2)
    logits, cache = model(TOKENS[:, :5], cache=cache, start=0)
    steps = [logits]
    for t in range(5, 16):
        logits, cache = model(TOKENS[:, t : t + 1], cache=cache, start=t)
        steps.append(logits)
    np.testing.assert_allclose(jnp.concatenate(steps, axis=1), full, rtol=1e-4, atol=1e-4)


def test_rope_cache_slides_past_the_context_window():
    """Past block_size the ring buffer holds the last block_size keys: cached decoding equals the
    whole sequence run at once with sliding-window attention (window = block_size)."""
    model = small("fp", "rope")
    seq = jnp.asarray(np.random.default_rng(1).integers(0, 17, (1, 40)), jnp.int32)
    full = model(seq)
    cache = model.init_cache(1)
    logits, cache = model(seq[:, :16], cache=cache, start=0)
    steps = [logits]
    for t in range(16, 40):
        logits, cache = model(seq[:, t : t + 1], cache=cache, start=t)
        steps.append(logits)
    np.testing.assert_allclose(jnp.concatenate(steps, axis=1), full, rtol=1e-4, atol=1e-4)
    # each layer looks block_size - 1 positions back: after 2 layers, position 0 reaches up to 30 only
    moved = model(seq.at[0, 0].set((seq[0, 0] + 1) % 17))
    np.testing.assert_array_equal(moved[:, 31:], full[:, 31:])
    assert np.abs(np.asarray(moved[:, 30] - full[:, 30])).max() > 0


def test_attention_mask_and_rope_closed_forms():
    m = np.asarray(attention_mask(jnp.arange(5) + 3, jnp.asarray([-1, 0, 3, 5, 7, 4]), 4))
    # query position 3..7; keys: empty slot, 0, 3, 5, 7, 4 (window 4: q - k < 4)
    ref = np.array([[k >= 0 and k <= q and q - k < 4 for k in (-1, 0, 3, 5, 7, 4)] for q in range(3, 8)])
    np.testing.assert_array_equal(m, ref)
    x = jnp.asarray(np.random.default_rng(2).standard_normal((3, 8)), jnp.float32)
    y = rope(x, jnp.asarray([0, 1, 2]), base=100.0)
    np.testing.assert_allclose(y[0], x[0], rtol=1e-6)  # position 0: no rotation
    theta = 100.0 ** (-np.arange(4) * 2 / 8)
    x1, x2 = np.asarray(x[2, :4]), np.asarray(x[2, 4:])
    np.testing.assert_allclose(y[2, :4], x1 * np.cos(2 * theta) - x2 * np.sin(2 * theta), rtol=1e-5, atol=1e-6)
    # scores depend on the position difference only
    q, k = x[0], x[1]
    s1 = jnp.dot(rope(q[None], jnp.asarray([7]))[0], rope(k[None], jnp.asarray([4]))[0])
    s2 = jnp.dot(rope(q[None], jnp.asarray([3]))[0], rope(k[None], jnp.asarray([0]))[0])
    np.testing.assert_allclose(s1, s2, rtol=1e-5)


def test_embeddings_and_head_stay_float_and_bad_arguments_fail():
    model = small("bitnet", tie_embeddings=False)
    assert isinstance(model.head, nnx.Linear) and isinstance(model.wte, nnx.Embed)
    with pytest.raises(ValueError, match="block_size"):
        small("fp", "learned")(jnp.zeros((1, 17), jnp.int32))
    with pytest.raises(ValueError, match="linear"):
        small("ternary")
    with pytest.raises(ValueError, match="positions"):
        small(positions="alibi")
    assert GPT(**small().config(), rngs=nnx.Rngs(1)).config() == small().config()
    jax.block_until_ready(model(TOKENS))
