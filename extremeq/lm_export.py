"""Packed export of a BitNet language model: 2-bit (or 1-bit) weight words + scales, decoded by the kernels.

    from extremeq.lm_export import export_lm, load_lm
    packed = export_lm(model)                 # a GPT whose BitLinear layers became PackedBitLinear
    packed.save("bitnet.npz")                 # bytes written
    packed = load_lm("bitnet.npz")
    tokens = generate(packed.module, prompt, 500)   # same structure, same generate()

Every :class:`~extremeq.nn.bitlinear.BitLinear` is replaced by a :class:`PackedBitLinear` holding

=================  ==========================================  ====================================
method             stored                                      matmul (``extremeq.kernels``)
=================  ==========================================  ====================================
bitnet (b1.58)     c_W in {-1, 0, +1} as 2-bit words            ``ternary_weight_matmul(c_x, w, gamma)``
                   [N, ceil(K/16)] uint32, gamma float32
bitnet_1bit        sign(W - mean W) as 1-bit words              ``binary_weight_matmul(c_x, w, gamma)``
                   [N, ceil(K/32)] uint32, gamma float32
=================  ==========================================  ====================================

plus the layer's RMSNorm scale (float32). The forward is BitLinear's: the same per-token 8-bit codes
c_x, then ``((c_x @ c_W) * gamma) * s`` (:func:`~extremeq.nn.bitlinear.bitlinear_output`). Since c_x
and c_W are small integers their product is exact in float32, so the packed model's logits equal the
training graph's bit for bit, and greedy decoding gives the same tokens. Embeddings, positions,
layer norms and the head stay float32, as in training.

File (``.npz``, no pickles): ``__extremeq_lm__`` (uint8 UTF-8 JSON: ``format`` =
"extremeq.lm_export", ``version`` = 1, ``config`` = the GPT's keyword arguments) and one array per
state variable, named by its "/"-joined path (``blocks/0/attn/qkv/w``, ``.../gamma``,
``.../norm/scale``, ``wte/embedding``, ...). Loading rebuilds the GPT from ``config``, swaps in the
packed layers and fills them; a file whose arrays do not fit raises :class:`ExportFormatError`.
"""

from __future__ import annotations

import json
import os
import zipfile

import jax.numpy as jnp
import numpy as np
from flax import nnx

from extremeq import kernels as K
from extremeq import quantizers as Q
from extremeq.nn.bitlinear import (
    BITLINEAR_METHODS,
    BitLinear,
    activation_codes,
    bitlinear_output,
)
from extremeq.nn.gpt import GPT
from extremeq.packing import pack_signs, pack_ternary

FORMAT, FORMAT_VERSION, META_KEY = "extremeq.lm_export", 1, "__extremeq_lm__"


class ExportFormatError(ValueError):
    """A file is not a loadable extremeq language-model export."""


class PackedWeights(nnx.Variable):
    """Packed weight words and their scale (not trained)."""


class PackedBitLinear(nnx.Module):
    """BitLinear's forward from packed words: y = ((c_x @ c_W) * gamma) * s, c_x = Q_8(RMSNorm(x))."""

    def __init__(self, in_features: int, out_features: int, method: str, words, gamma, norm: nnx.RMSNorm):
        self.in_features, self.out_features, self.method = in_features, out_features, method
        self.w = PackedWeights(jnp.asarray(words, jnp.uint32))
        self.gamma = PackedWeights(jnp.asarray(gamma, jnp.float32))
        self.norm = norm

    @classmethod
    def from_layer(cls, layer: BitLinear) -> PackedBitLinear:
        w = layer.kernel[...]
        if layer.method == "bitnet":
            codes, gamma = Q.bitnet_codes(w)
            words = pack_ternary(codes.T.astype(jnp.int8), axis=-1)
        else:
            gamma = Q.bwn_scale(w, per_channel=False)
            words = pack_signs((w - jnp.mean(w)).T, axis=-1)
        return cls(layer.in_features, layer.out_features, layer.method, words, gamma, nnx.clone(layer.norm))

    @classmethod
    def empty(cls, in_features: int, out_features: int, method: str) -> PackedBitLinear:
        per_word = 16 if BITLINEAR_METHODS[method][0] == "ternary" else 32
        words = jnp.zeros((out_features, -(-in_features // per_word)), jnp.uint32)
        return cls(in_features, out_features, method, words, 1.0, nnx.RMSNorm(in_features, rngs=nnx.Rngs(0)))

    def product(self, c_x):
        """(c_x @ c_W) * gamma through the packed-weight kernel."""
        matmul = K.ternary_weight_matmul if self.method == "bitnet" else K.binary_weight_matmul
        return matmul(c_x, self.w[...], self.gamma[...])

    def __call__(self, x):
        c_x, s = activation_codes(self.norm(x))
        return bitlinear_output(c_x, s, self.product)


def _replace_bitlinears(model, make) -> list[str]:
    targets = [(p, m) for p, m in nnx.iter_modules(model) if isinstance(m, BitLinear)]
    for path, layer in targets:
        parent = model
        for key in path[:-1]:
            parent = parent[key] if isinstance(key, int) else getattr(parent, key)
        if isinstance(path[-1], int):
            parent[path[-1]] = make(layer)
        else:
            setattr(parent, path[-1], make(layer))
    return ["/".join(map(str, p)) for p, _ in targets]


class PackedLM:
    """A packed GPT: ``module`` (run it with :func:`extremeq.nn.generate.generate` or call it),
    ``config``, ``save(path)``, :meth:`layer_sizes`."""

    def __init__(self, module: GPT):
        self.module = module
        self.config = module.config()

    def __call__(self, tokens, **kwargs):
        return self.module(jnp.asarray(tokens), **kwargs)

    def arrays(self) -> dict[str, np.ndarray]:
        flat = nnx.to_flat_state(nnx.state(self.module, nnx.Not(nnx.RngState)))
        return {"/".join(map(str, path)): np.asarray(var.get_value()) for path, var in flat}

    def save(self, path) -> int:
        """Write the npz file; returns its size in bytes."""
        meta = json.dumps({"format": FORMAT, "version": FORMAT_VERSION, "config": self.config}).encode()
        with open(os.fspath(path), "wb") as f:
            np.savez(f, **{META_KEY: np.frombuffer(meta, np.uint8)}, **self.arrays())
        return os.path.getsize(os.fspath(path))

    def layer_sizes(self) -> list[tuple[str, int, int]]:
        """(path, packed bytes = words + gamma, float32 bytes of the kernel) per packed layer."""
        rows = []
        for path, m in nnx.iter_modules(self.module):
            if isinstance(m, PackedBitLinear):
                packed = m.w[...].nbytes + m.gamma[...].nbytes
                rows.append(("/".join(map(str, path)), int(packed), 4 * m.in_features * m.out_features))
        return rows


def export_lm(model: GPT) -> PackedLM:
    """Pack every BitLinear of a trained GPT (the model itself is left unchanged)."""
    if not isinstance(model, GPT):
        raise TypeError(f"export_lm packs an extremeq.nn.gpt.GPT, got {type(model).__name__}")
    if model.linear == "fp":
        raise ValueError("this GPT has float linear layers (linear='fp'); there is nothing to pack: "
                         "train it with linear='bitnet' or 'bitnet_1bit'")
    packed = nnx.clone(model)
    _replace_bitlinears(packed, PackedBitLinear.from_layer)
    return PackedLM(packed)


def load_lm(path) -> PackedLM:
    """Read a file written by :meth:`PackedLM.save`."""
    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            if META_KEY not in z.files:
                raise ExportFormatError(f"{path} is not an extremeq language-model export (no '{META_KEY}')")
            meta = json.loads(bytes(z[META_KEY]).decode())
            arrays = {k: z[k] for k in z.files if k != META_KEY}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, json.JSONDecodeError) as e:
        if isinstance(e, ExportFormatError):
            raise
        raise ExportFormatError(f"{path} is truncated or corrupt ({type(e).__name__}: {e}); export it again") from e
    if meta.get("format") != FORMAT or meta.get("version") != FORMAT_VERSION:
        raise ExportFormatError(f"{path}: format {meta.get('format')!r} version {meta.get('version')!r}; "
                                f"this code reads {FORMAT!r} version {FORMAT_VERSION}")
    module = GPT(**meta["config"], rngs=nnx.Rngs(0))
    _replace_bitlinears(module, lambda m: PackedBitLinear.empty(m.in_features, m.out_features, m.method))
    state = nnx.state(module, nnx.Not(nnx.RngState))
    flat = list(nnx.to_flat_state(state))
    names = {"/".join(map(str, p)) for p, _ in flat}
    if names != set(arrays):
        raise ExportFormatError(f"{path}: arrays do not fit the GPT of its config: missing "
                                f"{sorted(names - set(arrays))[:5]}, unexpected {sorted(set(arrays) - names)[:5]}")
    for p, var in flat:
        name, old = "/".join(map(str, p)), var.get_value()
        new = arrays[name]
        if tuple(old.shape) != new.shape or np.dtype(old.dtype) != new.dtype:
            raise ExportFormatError(f"{path}: array {name!r} is {new.dtype} {new.shape}, the GPT needs "
                                    f"{np.dtype(old.dtype)} {tuple(old.shape)}")
        var.set_value(jnp.asarray(new))
    nnx.update(module, state)
    return PackedLM(module)
