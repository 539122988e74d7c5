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


@functools.partial(jax.jit, static_argnums=(0, 5, 6))
def _prefill(graphdef, state, tokens, start, key, temperature, top_k):
    model = nnx.merge(graphdef, state)
    logits, cache = model(tokens, cache=model.init_cache(tokens.shape[0]), start=start)
    return sample_logits(logits[:, -1], key, temperature, top_k), cache


@functools.partial(jax.jit, static_argnums=(0, 7, 8), donate_argnums=(3,))
def _step(graphdef, state, token, cache, start, key, i, temperature, top_k):
    model = nnx.merge(graphdef, state)
    logits, cache = model(token[:, None], cache=cache, start=start)
    return sample_logits(logits[:, -1], jax.random.fold_in(key, i), temperature, top_k), cache


@functools.partial(jax.jit, static_argnums=(0, 5, 6))
def _window(graphdef, state, tokens, key, i, temperature, top_k):
    logits = nnx.merge(graphdef, state)(tokens)
    return sample_logits(logits[:, -1], jax.random.fold_in(key, i), temperature, top_k)


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
    block, rotary = model.block_size, model.positions == "rope"
    out = [jnp.asarray(prompt)]
    if max_new_tokens:
        crop = max(prompt.shape[1] - block, 0)  # the prompt's last `block` tokens fill the cache
        # rotary scores depend on position differences only, so the cache keeps absolute positions;
        # learned positions restart at 0 for the cropped window
        token, cache = _prefill(
            graphdef,
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
                token, cache = _step(graphdef, state, token, cache, pos, key, i, temperature, top_k)
                pos += 1
            else:
                window = jnp.concatenate(out[-block:], axis=1)[:, -block:]
                token = _window(graphdef, state, window, key, i, temperature, top_k)
            out.append(token[:, None])
    tokens = np.concatenate(jax.device_get(out), axis=1)  # on the host: no compile per length
    return tokens[0] if squeeze else tokens
