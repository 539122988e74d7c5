"""A GPT-style decoder-only transformer (Radford et al., 2019) with float or BitNet linear layers.

    model = GPT(vocab_size=65, block_size=64, num_layers=4, num_heads=4, width=128,
                linear="bitnet", rngs=nnx.Rngs(0))
    logits = model(tokens)                                   # [B, T] int -> [B, T, V]
    cache = model.init_cache(batch_size=1)
    logits, cache = model(prompt, cache=cache, start=0)      # fills the KV cache
    logits, cache = model(next_token, cache=cache, start=t)  # one step, attends to the cache

Block (pre-norm)::

    x = x + Attn(LN_1(x)),   x = x + MLP(LN_2(x)),   MLP(h) = W_2 GELU(W_1 h)
    Attn: q, k, v = h W_qkv;  a = softmax(q k^T / sqrt(d) + M) v;  out = a W_o

M masks every key at a later position (causal) and every key more than ``block_size - 1``
positions back (the context window). ``linear`` picks the four matmuls of each block: "fp"
(``nnx.Linear``, no bias) or a :class:`~extremeq.nn.bitlinear.BitLinear` method ("bitnet" =
BitNet b1.58, "bitnet_1bit" = the original BitNet). The token embedding, positions, layer norms
and the output head stay float32, as in BitNet. ``tie_embeddings`` makes the head the transposed
token embedding (Press & Wolf, 2017).

Positions: "learned" (GPT-2: an embedding added to the tokens, at most ``block_size`` of them) or
"rope" (rotary, Su et al., 2021: q and k of position p rotated by p * theta_i, theta_i =
base^(-2i/d), which makes scores depend on the relative position only). With "rope" the KV cache
is a ring buffer of ``block_size`` slots, so decoding past the context window keeps every step
cached: it computes sliding-window attention (Child et al., 2019; Mistral), where a token's keys
were computed from its own window (``model(tokens)`` on the whole sequence computes the same), not
nanoGPT's re-run of the last ``block_size`` tokens from scratch; with "learned" positions
:mod:`extremeq.nn.generate` recomputes the window once it is full.

Initialisation as GPT-2 / nanoGPT: every weight N(0, 0.02), the residual output projections
N(0, 0.02 / sqrt(2 * num_layers)).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from extremeq.nn.bitlinear import BITLINEAR_METHODS, BitLinear

POSITIONS = ("learned", "rope")
LINEARS = ("fp", *BITLINEAR_METHODS)


def _linear(kind: str, n_in: int, n_out: int, std: float, rngs: nnx.Rngs):
    init = nnx.initializers.normal(std)
    if kind == "fp":
        return nnx.Linear(n_in, n_out, use_bias=False, kernel_init=init, rngs=rngs)
    return BitLinear(n_in, n_out, method=kind, kernel_init=init, rngs=rngs)


def tokenwise(layer, x):
    """``layer`` applied to x [..., C] as one [N, C] matrix of N tokens (reshaped back after).

    Same values as ``layer(x)``; the reason is XLA:CPU's backward pass: the weight gradient of a
    linear layer on [B, T, C] activations contracts over two axes, which XLA:CPU lowers with a
    transposed copy of the [B, T, C_out] gradient (fused with the GELU backward, the slowest ops of
    the whole step: ``experiments/bench_lm_step.py``); on [B*T, C] it is one plain matrix product."""
    return layer(x.reshape(-1, x.shape[-1])).reshape(*x.shape[:-1], -1)


def rope(x, positions, base: float = 10000.0):
    """Rotary embedding of x [..., T, d] at integer ``positions`` [T]: the pairs (x_i, x_{i+d/2})
    rotated by the angle p * base^(-2i/d)."""
    half = x.shape[-1] // 2
    theta = base ** (-jnp.arange(half, dtype=jnp.float32) * 2.0 / x.shape[-1])
    angle = positions.astype(jnp.float32)[:, None] * theta[None, :]
    cos, sin = jnp.cos(angle).astype(x.dtype), jnp.sin(angle).astype(x.dtype)
    x1, x2 = x[..., :half], x[..., half:]
    return jnp.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)


def attention_mask(q_pos, k_pos, window: int):
    """M[i, j] = True where query position q_pos[i] may see key position k_pos[j]:
    0 <= k_pos[j] <= q_pos[i] and q_pos[i] - k_pos[j] < window (empty cache slots hold -1)."""
    q, k = q_pos[:, None], k_pos[None, :]
    return (k >= 0) & (k <= q) & (q - k < window)


class CausalSelfAttention(nnx.Module):
    def __init__(
        self,
        width: int,
        num_heads: int,
        *,
        block_size: int,
        positions: str,
        linear: str,
        proj_std: float,
        rope_base: float,
        rngs: nnx.Rngs,
    ):
        if width % num_heads:
            raise ValueError(f"width {width} must be divisible by num_heads {num_heads}")
        self.num_heads, self.block_size, self.positions, self.rope_base = num_heads, block_size, positions, rope_base
        self.qkv = _linear(linear, width, 3 * width, 0.02, rngs)
        self.proj = _linear(linear, width, width, proj_std, rngs)

    def __call__(self, x, pos, cache=None):
        b, t, c = x.shape
        h = self.num_heads
        q, k, v = jnp.split(tokenwise(self.qkv, x), 3, axis=-1)
        q, k, v = (a.reshape(b, t, h, c // h).transpose(0, 2, 1, 3) for a in (q, k, v))  # [B, H, T, d]
        if self.positions == "rope":
            q, k = rope(q, pos, self.rope_base), rope(k, pos, self.rope_base)
        if cache is None:
            k_all, v_all, k_pos = k, v, pos
        else:  # ring buffer: position p lives in slot p % block_size
            slots = pos % self.block_size
            k_all = cache["k"].at[:, :, slots].set(k)
            v_all = cache["v"].at[:, :, slots].set(v)
            k_pos = cache["pos"].at[slots].set(pos)
            cache = {"k": k_all, "v": v_all, "pos": k_pos}
        scores = jnp.einsum("bhqd,bhkd->bhqk", q, k_all) / math.sqrt(c // h)
        scores = jnp.where(attention_mask(pos, k_pos, self.block_size), scores, -jnp.inf)
        y = jnp.einsum("bhqk,bhkd->bhqd", jax.nn.softmax(scores, axis=-1), v_all)
        return tokenwise(self.proj, y.transpose(0, 2, 1, 3).reshape(b, t, c)), cache


class Block(nnx.Module):
    def __init__(
        self, width: int, num_heads: int, *, mlp_ratio: int, linear: str, proj_std: float, rngs: nnx.Rngs, **attn_kwargs
    ):
        self.ln_1 = nnx.LayerNorm(width, use_bias=False, epsilon=1e-5, rngs=rngs)
        self.attn = CausalSelfAttention(width, num_heads, linear=linear, proj_std=proj_std, rngs=rngs, **attn_kwargs)
        self.ln_2 = nnx.LayerNorm(width, use_bias=False, epsilon=1e-5, rngs=rngs)
        self.fc = _linear(linear, width, mlp_ratio * width, 0.02, rngs)
        self.fc_proj = _linear(linear, mlp_ratio * width, width, proj_std, rngs)

    def __call__(self, x, pos, cache=None):
        a, cache = self.attn(self.ln_1(x), pos, cache)
        x = x + a
        h = jax.nn.gelu(tokenwise(self.fc, self.ln_2(x)))
        return x + tokenwise(self.fc_proj, h), cache


class GPT(nnx.Module):
    """Decoder-only transformer; ``__call__(tokens)`` -> logits, or with ``cache`` -> (logits, cache)."""

    def __init__(
        self,
        vocab_size: int,
        *,
        block_size: int = 64,
        num_layers: int = 4,
        num_heads: int = 4,
        width: int = 128,
        mlp_ratio: int = 4,
        positions: str = "rope",
        linear: str = "fp",
        tie_embeddings: bool = True,
        rope_base: float = 10000.0,
        rngs: nnx.Rngs,
    ):
        if positions not in POSITIONS:
            raise ValueError(f"positions {positions!r} unknown; choose one of {', '.join(POSITIONS)}")
        if linear not in LINEARS:
            raise ValueError(f"linear {linear!r} unknown; choose one of {', '.join(LINEARS)}")
        if positions == "rope" and (width // num_heads) % 2:
            raise ValueError(f"rope needs an even head size, got width {width} / {num_heads} heads")
        self.vocab_size, self.block_size, self.width = vocab_size, block_size, width
        self.num_layers, self.num_heads = num_layers, num_heads
        self.positions, self.linear, self.tie_embeddings = positions, linear, tie_embeddings
        self.mlp_ratio, self.rope_base = mlp_ratio, rope_base
        init = nnx.initializers.normal(0.02)
        self.wte = nnx.Embed(vocab_size, width, embedding_init=init, rngs=rngs)
        self.wpe = nnx.Embed(block_size, width, embedding_init=init, rngs=rngs) if positions == "learned" else None
        proj_std = 0.02 / math.sqrt(2 * num_layers)
        self.blocks = nnx.List(
            [
                Block(
                    width,
                    num_heads,
                    mlp_ratio=mlp_ratio,
                    linear=linear,
                    proj_std=proj_std,
                    block_size=block_size,
                    positions=positions,
                    rope_base=rope_base,
                    rngs=rngs,
                )
                for _ in range(num_layers)
            ]
        )
        self.ln_f = nnx.LayerNorm(width, use_bias=False, epsilon=1e-5, rngs=rngs)
        self.head = (
            None if tie_embeddings else nnx.Linear(width, vocab_size, use_bias=False, kernel_init=init, rngs=rngs)
        )

    def init_cache(self, batch_size: int, dtype=jnp.float32) -> list[dict]:
        """An empty KV cache: per layer k, v [B, H, block_size, d] and the slots' positions (-1 = empty)."""
        d = self.width // self.num_heads
        shape = (batch_size, self.num_heads, self.block_size, d)
        return [
            {
                "k": jnp.zeros(shape, dtype),
                "v": jnp.zeros(shape, dtype),
                "pos": jnp.full((self.block_size,), -1, jnp.int32),
            }
            for _ in range(self.num_layers)
        ]

    def __call__(self, tokens, cache=None, start=0):
        """tokens [B, T] at positions start .. start + T - 1 -> logits [B, T, vocab] (float32).

        With ``cache`` (from :meth:`init_cache`), keys and values of the new tokens are written to it
        and the new tokens attend to everything cached in their window; returns (logits, cache).
        T <= block_size; with a cache, T > 1 only into an empty cache (the prompt). Without a cache a
        rotary model takes any T: every token attends to the last ``block_size`` positions (sliding
        window attention), which is what cached decoding past the window computes.
        """
        t = tokens.shape[1]
        if t > self.block_size and (self.positions == "learned" or cache is not None):
            raise ValueError(
                f"GPT got {t} tokens, more than its block_size {self.block_size}; crop the input "
                "(longer inputs need rotary positions and no cache)"
            )
        pos = start + jnp.arange(t, dtype=jnp.int32)
        x = self.wte(tokens)
        if self.wpe is not None:
            x = x + self.wpe(pos)
        new_cache = []
        for i, block in enumerate(self.blocks):
            x, layer_cache = block(x, pos, None if cache is None else cache[i])
            new_cache.append(layer_cache)
        x = self.ln_f(x)
        logits = self.wte.attend(x) if self.head is None else self.head(x)
        return logits if cache is None else (logits, new_cache)

    def config(self) -> dict:
        """The keyword arguments that rebuild this architecture (``GPT(**config, rngs=...)``)."""
        return {
            "vocab_size": self.vocab_size,
            "block_size": self.block_size,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "width": self.width,
            "mlp_ratio": self.mlp_ratio,
            "positions": self.positions,
            "linear": self.linear,
            "tie_embeddings": self.tie_embeddings,
            "rope_base": self.rope_base,
        }
