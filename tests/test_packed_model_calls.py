"""PackedModel calls: one executable per input shape, compiled once; same logits as the jitted module."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import extremeq
from extremeq.nn import method_rules, quantize_model
from extremeq.nn.models import build_model


def _packed():
    recipe = {
        "model": {"name": "mlp", "hidden": [64, 64], "activation": "hardtanh"},
        "num_classes": 10,
        "input_shape": [8, 8, 1],
    }
    model = build_model(recipe["model"], 10, (8, 8, 1), nnx.Rngs(0))
    quantize_model(model, method_rules("bnn"))
    model.eval()
    return model, extremeq.export(model, recipe=recipe)


def test_one_executable_per_shape_and_same_logits():
    model, packed = _packed()
    rng = np.random.default_rng(0)
    graphdef, state = nnx.split(packed.module)
    reference = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))
    for batch in (1, 3, 1, 3, 1):
        x = rng.standard_normal((batch, 8, 8, 1)).astype(np.float32)
        for given in (x, jnp.asarray(x), x.astype(np.float64)):
            np.testing.assert_array_equal(np.asarray(packed(given)), np.asarray(reference(state, jnp.asarray(x))))
    assert sorted(packed._executables) == [(1, 8, 8, 1), (3, 8, 8, 1)]


def test_callable_inside_the_callers_jit():
    _, packed = _packed()
    x = jnp.asarray(np.random.default_rng(1).standard_normal((2, 8, 8, 1)), jnp.float32)
    np.testing.assert_array_equal(np.asarray(jax.jit(lambda v: packed(v) * 2.0)(x)), np.asarray(packed(x)) * 2.0)


def test_fast_path_only_for_compiled_float32_arrays():
    # A concrete float32 array of a compiled shape goes straight to its executable; anything else
    # (another dtype, a new shape) is cast / compiled first and gives the logits of its float32 cast.
    _, packed = _packed()
    x = jnp.asarray(np.random.default_rng(2).standard_normal((2, 8, 8, 1)), jnp.float32)
    first = np.asarray(packed(x))
    np.testing.assert_array_equal(np.asarray(packed(x)), first)  # second call: the fast path
    x16 = x.astype(jnp.bfloat16)
    np.testing.assert_array_equal(np.asarray(packed(x16)), np.asarray(packed(x16.astype(jnp.float32))))
    assert sorted(packed._executables) == [(2, 8, 8, 1)]
    assert packed(x[:1]).shape == (1, 10) and sorted(packed._executables) == [(1, 8, 8, 1), (2, 8, 8, 1)]


def test_arguments_group_small_arrays_and_give_back_the_same_arrays():
    # Float arrays under SMALL_BYTES and integer ones under PACKED_BYTES travel in one buffer per dtype,
    # the others (and PRNG keys) on their own; the executable's slices give back every array exactly,
    # in order.
    from extremeq.inference.model import _Arguments

    rng = np.random.default_rng(3)
    leaves = [
        rng.standard_normal(7).astype(np.float32),
        rng.integers(0, 2**32, (5, 3), dtype=np.uint32),
        rng.standard_normal((200, 100)).astype(np.float32),  # 80,000 bytes: on its own
        rng.standard_normal((2, 3)).astype(np.float32),
        np.array(2.5, np.float32),
        jax.random.key(0),
        rng.integers(-1, 2, (4,), dtype=np.int8),
        rng.integers(0, 2**32, (300, 100), dtype=np.uint32),  # 120,000 bytes of packed words: grouped
        rng.integers(0, 2**32, (300, 1000), dtype=np.uint32),  # 1.2 MB: on its own
    ]
    a = _Arguments(leaves)
    bigs, buffers = a.args[: len(a.big)], a.args[len(a.big) :]  # flat: the executable's arguments
    assert a.big == [2, 5, 8] and [b.shape for b in bigs] == [(200, 100), (), (300, 1000)]
    assert [b.shape for b in buffers] == [(14,), (30015,), (4,)]
    assert [b.dtype for b in buffers] == [jnp.float32, jnp.uint32, jnp.int8]
    back = jax.jit(a.leaves)(a.args)
    for got, want in zip(back, leaves):
        if jax.dtypes.issubdtype(got.dtype, jax.dtypes.extended):
            np.testing.assert_array_equal(jax.random.key_data(got), jax.random.key_data(want))
        else:
            assert got.dtype == want.dtype and got.shape == np.shape(want)
            np.testing.assert_array_equal(np.asarray(got), want)


def test_the_mlp_is_called_with_few_arguments():
    _, packed = _packed()
    n_state = len(jax.tree_util.tree_leaves(nnx.split(packed.module)[1]))
    # 64x64 layers: every array under 64 KiB, so one buffer per dtype (float32; uint32 words)
    assert len(jax.tree_util.tree_leaves(packed._args)) == 2 < n_state


def test_fast_path_calls_give_the_first_calls_logits():
    # The fast path calls the C++ call of the input shape's executable, which checks the input's dtype
    # itself: same logits as the first call whichever shape came before, and a bfloat16 input (which
    # fails that check) gets the logits of its float32 cast.
    model, packed = _packed()
    graphdef, state = nnx.split(packed.module)
    reference = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))
    rng = np.random.default_rng(4)
    xs = [jnp.asarray(rng.standard_normal((b, 8, 8, 1)), jnp.float32) for b in (1, 2)]
    want = [np.asarray(reference(state, x)) for x in xs]
    for i in (0, 0, 1, 0, 1, 1, 0):
        np.testing.assert_array_equal(np.asarray(packed(xs[i])), want[i])
    x16 = xs[0].astype(jnp.bfloat16)
    np.testing.assert_array_equal(np.asarray(packed(x16)), np.asarray(reference(state, x16.astype(jnp.float32))))
    with pytest.raises(TypeError, match="contracting dimensions"):
        packed(jnp.zeros((1, 8, 8, 2), jnp.float32))  # a wrong input still gets the first layer's own error
    assert sorted(packed._executables) == sorted(packed._calls) == [(1, 8, 8, 1), (2, 8, 8, 1)]
