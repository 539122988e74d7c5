"""Autoregressive sampling with a KV cache: greedy, temperature and top-k.

    tokens = generate(model, prompt, 500)                                   # greedy
    tokens = generate(model, prompt, 500, temperature=0.8, top_k=20, key=jax.random.key(0))

``model`` is any module with the :class:`~extremeq.nn.gpt.GPT` calling convention
(``model(tokens, cache=, start=)`` -> (logits, cache), ``init_cache``, ``block_size``,
``positions``): the training model (fake-quantized BitLinear layers) or its packed export, which
keeps the same structure. Each new token is predicted from (at most) the last ``block_size``
tokens, as nanoGPT's ``generate`` does. With rotary positions every step reads the ring-buffer
cache; with learned positions the cache serves the first ``block_size`` tokens, after which each
step recomputes the window (absolute positions cannot slide).

Each decoded token is one jitted program (the model's step on its KV cache, the weights passed as
arguments), compiled once per model structure and batch shape and never re-traced per token.

Sampling from logits l: greedy takes argmax l; otherwise softmax(l / temperature) restricted to
the ``top_k`` largest logits (all when ``top_k`` is None).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


def sample_logits(logits, key, temperature: float = 0.0, top_k: int | None = None):
    """Next tokens [B] from last-position logits [B, V] (greedy when temperature == 0)."""
    if temperature == 0.0:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    logits = logits.astype(jnp.float32) / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = jax.lax.top_k(logits, top_k)[0][..., -1:]
        logits = jnp.where(logits < kth, -jnp.inf, logits)
    return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)


def _prefill(graphdef, state, tokens, start, key, temperature, top_k):
    model = nnx.merge(graphdef, state)
    logits, cache = model(tokens, cache=model.init_cache(tokens.shape[0]), start=start)
    return sample_logits(logits[:, -1], key, temperature, top_k), cache


def _step(graphdef, state, token, cache, start, key, i, temperature, top_k):
    model = nnx.merge(graphdef, state)
    logits, cache = model(token[:, None], cache=cache, start=start)
    return sample_logits(logits[:, -1], jax.random.fold_in(key, i), temperature, top_k), cache


def _window(graphdef, state, tokens, key, i, temperature, top_k):
    logits = nnx.merge(graphdef, state)(tokens)
    return sample_logits(logits[:, -1], jax.random.fold_in(key, i), temperature, top_k)


@functools.lru_cache(maxsize=16)
def _programs(graphdef):
    """The jitted (prefill, step, window) of one model structure, with its graphdef bound: a graphdef
    as a static jit argument is hashed on every call (~0.2-0.3 ms for a 4-layer GPT, as long as a
    small model's whole decoding step), here once per :func:`generate` call."""
    return (
        jax.jit(functools.partial(_prefill, graphdef), static_argnums=(4, 5)),
        jax.jit(functools.partial(_step, graphdef), static_argnums=(6, 7), donate_argnums=(2,)),
        jax.jit(functools.partial(_window, graphdef), static_argnums=(4, 5)),
    )


def _check(model, prompt, max_new_tokens, temperature, top_k, key):
    if prompt.ndim != 2 or prompt.shape[1] < 1:
        raise ValueError(f"prompt must be int tokens [B, T] with T >= 1, got shape {prompt.shape}")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be None or >= 1, got {top_k}")
    if temperature > 0 and key is None:
        raise ValueError("sampling with temperature > 0 needs key=jax.random.key(seed); temperature=0 is greedy")


def generate(
    model, prompt, max_new_tokens: int, *, temperature: float = 0.0, top_k: int | None = None, key=None
) -> np.ndarray:
    """prompt int [B, T] (or [T]) -> int32 [B, T + max_new_tokens] (prompt followed by the samples)."""
    prompt = np.asarray(prompt, np.int32)
    squeeze = prompt.ndim == 1
    prompt = prompt[None] if squeeze else prompt
    _check(model, prompt, max_new_tokens, temperature, top_k, key)
    temperature = float(temperature)
    key = jax.random.key(0) if key is None else key
    graphdef, state = nnx.split(model)
    prefill, step, window_step = _programs(graphdef)
    block, rotary = model.block_size, model.positions == "rope"
    out = [jnp.asarray(prompt)]
    if max_new_tokens:
        crop = max(prompt.shape[1] - block, 0)  # the prompt's last `block` tokens fill the cache
        # rotary scores depend on position differences only, so the cache keeps absolute positions;
        # learned positions restart at 0 for the cropped window
        token, cache = prefill(
            state,
            jnp.asarray(prompt[:, crop:]),
            crop if rotary else 0,
            jax.random.fold_in(key, 0),
            temperature,
            top_k,
        )
        out.append(token[:, None])
        pos = prompt.shape[1] if rotary else prompt.shape[1] - crop  # position of `token`
        for i in range(1, max_new_tokens):
            if rotary or pos < block:
                token, cache = step(state, token, cache, pos, key, i, temperature, top_k)
                pos += 1
            else:
                window = jnp.concatenate(out[-block:], axis=1)[:, -block:]
                token = window_step(state, window, key, i, temperature, top_k)
            out.append(token[:, None])
    tokens = np.concatenate(jax.device_get(out), axis=1)  # on the host: no compile per length
    return tokens[0] if squeeze else tokens
