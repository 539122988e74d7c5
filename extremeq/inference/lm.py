"""Packed export of a BitNet language model: 2-bit (or 1-bit) weight words + scales, decoded by the kernels.

    from extremeq.inference.lm import export_lm, load_lm
    packed = export_lm(model)                 # a GPT whose BitLinear layers became PackedBitLinear
    packed.save("bitnet.npz")                 # bytes written
    packed = load_lm("bitnet.npz")            # decode="codes": int8 codes unpacked once (opt-in)
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

File: the export format of :mod:`extremeq.inference.file_format` (same version check, per-array
SHA-256 checksums and metadata checksums, same :class:`ExportFormatError`), with ``model_class`` =
"GPT", ``recipe`` = ``{"gpt": <the GPT's keyword arguments>}`` and ``layers`` = {path:
{"class": "PackedBitLinear", "config": {in_features, out_features, method}}}; one array per state
variable, named by its "/"-joined path (``blocks/0/attn/qkv/w``, ``.../gamma``, ``.../norm/scale``,
``wte/embedding``, ...). Loading rebuilds the GPT from the recipe, swaps in the packed layers and
fills them; a file whose arrays do not fit, or fail their checksums, raises ExportFormatError.

Decoding on the CPU (``decode``): ``"words"`` (the default, ``"auto"``) multiplies from the 2-bit
words through ``ternary_weight_matmul``, whose CPU path at batch 1 decodes the words inside each
fused matrix-vector product (no float matrix is written; 2 bits per weight read per token), so a
packed GPT decodes faster than its float32 twin once the weight bytes dominate
(``experiments/bench_lm_decode.py``). ``decode="codes"`` unpacks every layer once, at load time,
into int8 codes held on the device beside the words, as c_W^T [N, K] (1 byte per weight while
loaded; the file stays 2-bit), and multiplies c_x by them in float32 (exact: small integers): 4x the
bytes of the words, but no unpacking per token (``experiments/bench_ternary_matvec.py``). On GPU/TPU the words go to the Pallas kernel, which
decodes in registers.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import nnx

from extremeq import kernels as K
from extremeq import quantizers as Q
from extremeq.inference.file_format import (
    ExportFormatError,
    read_export,
    verify_arrays,
    verify_metadata,
    write_export,
)
from extremeq.kernels.xla import weight_only_dot
from extremeq.nn.bitlinear import (
    BITLINEAR_METHODS,
    BitLinear,
    activation_codes,
    bitlinear_output,
)
from extremeq.nn.gpt import GPT
from extremeq.packing import pack_signs, pack_ternary, unpack_signs, unpack_ternary

__all__ = ["DECODES", "ExportFormatError", "PackedBitLinear", "PackedLM", "export_lm", "load_lm"]

MODEL_CLASS = "GPT"
#: How PackedBitLinear multiplies: "words" (the packed kernels), "codes" (int8 codes unpacked once).
DECODES = ("auto", "words", "codes")


class PackedWeights(nnx.Variable):
    """Packed weight words and their scale (not trained)."""


class DecodeCodes(nnx.Variable):
    """Int8 codes c_W [K, N] unpacked from the words at load time (not saved)."""


class PackedBitLinear(nnx.Module):
    """BitLinear's forward from packed words: y = ((c_x @ c_W) * gamma) * s, c_x = Q_8(RMSNorm(x))."""

    def __init__(self, in_features: int, out_features: int, method: str, words, gamma, norm: nnx.RMSNorm):
        self.in_features, self.out_features, self.method = in_features, out_features, method
        self.w = PackedWeights(jnp.asarray(words, jnp.uint32))
        self.gamma = PackedWeights(jnp.asarray(gamma, jnp.float32))
        self.norm = norm
        self.codes = nnx.data(None)

    @classmethod
    def from_layer(cls, layer: BitLinear) -> PackedBitLinear:
        w = layer.kernel[...]
        if layer.method == "bitnet":
            codes, gamma = Q.bitnet_codes(w)
            words = pack_ternary(codes.T.astype(jnp.int8), axis=-1)
        else:
            codes, gamma = Q.bitnet_1bit_codes(w)
            words = pack_signs(codes.T, axis=-1)
        return cls(layer.in_features, layer.out_features, layer.method, words, gamma, nnx.clone(layer.norm))

    @classmethod
    def empty(cls, in_features: int, out_features: int, method: str) -> PackedBitLinear:
        per_word = 16 if BITLINEAR_METHODS[method][0] == "ternary" else 32
        words = jnp.zeros((out_features, -(-in_features // per_word)), jnp.uint32)
        return cls(in_features, out_features, method, words, 1.0, nnx.RMSNorm(in_features, rngs=nnx.Rngs(0)))

    def unpack_codes(self) -> None:
        """Hold c_W^T [N, K] as int8 on the device (decode="codes"): 1 byte per weight while loaded,
        rows in the words' order (each output's K codes contiguous, the order a matrix-vector
        product reads them)."""
        if self.method == "bitnet":
            codes = unpack_ternary(self.w[...], self.in_features, axis=-1, dtype=jnp.int8)
        else:
            codes = unpack_signs(self.w[...], self.in_features, axis=-1, dtype=jnp.int8)
        self.codes = nnx.data(DecodeCodes(jnp.asarray(codes)))

    def drop_codes(self) -> None:
        self.codes = nnx.data(None)

    def product(self, c_x):
        """(c_x @ c_W) * gamma: a float32 dot with the unpacked int8 codes, else the packed-weight kernel."""
        if getattr(self, "codes", None) is not None:
            # a float32 dot of small integers (exact) against c_W^T [N, K], written by the kernels'
            # weight_only_dot in the form XLA:CPU fuses with the int8 -> float32 conversion at small M
            # (an int8 x int8 -> int32 dot measured far slower, and unfused conversions of every
            # layer are hoisted to the start of a jitted step)
            c2 = c_x.reshape(-1, self.in_features).astype(jnp.float32)
            acc = weight_only_dot(c2, self.codes[...], self.gamma[...], unpack=_codes_as, k=self.in_features)
            return acc.reshape(*c_x.shape[:-1], self.out_features)
        matmul = K.ternary_weight_matmul if self.method == "bitnet" else K.binary_weight_matmul
        return matmul(c_x, self.w[...], self.gamma[...])

    def __call__(self, x):
        c_x, s = activation_codes(self.norm(x))
        return bitlinear_output(c_x, s, self.product)


def _codes_as(codes, k: int, dtype):
    """weight_only_dot's ``unpack`` for codes already unpacked: a module-level function, since
    weight_only_dot is jitted with ``unpack`` static (a new function per call would recompile it)."""
    return codes.astype(dtype)


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
    ``config``, ``save(path)``, :meth:`layer_sizes`, :meth:`set_decode`."""

    def __init__(self, module: GPT, config: dict, decode: str = "auto"):
        self.module = module
        self.config = dict(config)
        self.decode = None
        self.set_decode(decode)

    def set_decode(self, decode: str = "auto") -> PackedLM:
        """ "codes": unpack every layer's words once to int8 c_W held on the device (1 byte per
        weight while loaded); "words" (= "auto"): multiply from the packed words (the kernels)."""
        if decode not in DECODES:
            raise ValueError(f"decode={decode!r} unknown; choose one of {', '.join(DECODES)}")
        if decode == "auto":
            decode = "words"
        for layer in self.packed_layers():
            layer.unpack_codes() if decode == "codes" else layer.drop_codes()
        self.decode = decode
        return self

    def packed_layers(self) -> list[PackedBitLinear]:
        return [m for _, m in nnx.iter_modules(self.module) if isinstance(m, PackedBitLinear)]

    def __call__(self, tokens, **kwargs):
        return self.module(jnp.asarray(tokens), **kwargs)

    def arrays(self) -> dict[str, np.ndarray]:
        """The saved arrays: every state variable but RNG state and the decode-time int8 codes."""
        flat = nnx.to_flat_state(nnx.state(self.module, nnx.Not(nnx.Any(nnx.RngState, DecodeCodes))))
        return {"/".join(map(str, path)): np.asarray(var.get_value()) for path, var in flat}

    def metadata(self) -> dict:
        layers = {
            "/".join(map(str, p)): {
                "class": "PackedBitLinear",
                "config": {"in_features": m.in_features, "out_features": m.out_features, "method": m.method},
            }
            for p, m in nnx.iter_modules(self.module)
            if isinstance(m, PackedBitLinear)
        }
        return {"recipe": {"gpt": self.config}, "model_class": MODEL_CLASS, "layers": layers, "summary": None}

    def save(self, path) -> int:
        """Write the export file (:mod:`extremeq.inference.file_format`); returns its size in bytes."""
        return write_export(path, self.metadata(), self.arrays())

    def layer_sizes(self) -> list[tuple[str, int, int]]:
        """(path, packed bytes = words + gamma, float32 bytes of the kernel) per packed layer."""
        rows = []
        for path, m in nnx.iter_modules(self.module):
            if isinstance(m, PackedBitLinear):
                packed = m.w[...].nbytes + m.gamma[...].nbytes
                rows.append(("/".join(map(str, path)), int(packed), 4 * m.in_features * m.out_features))
        return rows


def _block_linears(model: GPT) -> list:
    return [m for _, m in nnx.iter_modules(model) if isinstance(m, (nnx.Linear, BitLinear)) and m is not model.head]


def export_lm(model: GPT, decode: str = "auto") -> PackedLM:
    """Pack every BitLinear of a trained GPT (the model itself is left unchanged).

    A GPT built with ``linear="bitnet"`` / ``"bitnet_1bit"`` or a float GPT whose block linears
    ``quantize_model`` turned into BitLinear of one method (``{"bitlinear": method}`` rules)."""
    if not isinstance(model, GPT):
        raise TypeError(f"export_lm packs an extremeq.nn.gpt.GPT, got {type(model).__name__}")
    linears = _block_linears(model)
    methods = {m.method for m in linears if isinstance(m, BitLinear)}
    if not methods:
        raise ValueError(
            "this GPT has float linear layers (linear='fp'); there is nothing to pack: "
            "train it with linear='bitnet' or 'bitnet_1bit' (or convert it with quantize_model)"
        )
    if len(methods) > 1 or not all(isinstance(m, BitLinear) for m in linears):
        raise ValueError(
            f"export_lm packs GPTs whose block linear layers are all BitLinear of one method; "
            f"this one has {sorted(methods)} and {sum(not isinstance(m, BitLinear) for m in linears)} "
            "float ones: convert all of them (quantize_model rules) before exporting"
        )
    packed = nnx.clone(model)
    _replace_bitlinears(packed, PackedBitLinear.from_layer)
    return PackedLM(packed, {**model.config(), "linear": methods.pop()}, decode)


def load_lm(path, decode: str = "auto") -> PackedLM:
    """Read a file written by :meth:`PackedLM.save`: format, version, the recipe, every array's
    checksum and the metadata's are checked (:class:`ExportFormatError` says what failed)."""
    meta, arrays = read_export(path)
    recipe = meta.get("recipe")
    if (
        meta.get("model_class") != MODEL_CLASS
        or not isinstance(recipe, dict)
        or not isinstance(recipe.get("gpt"), dict)
    ):
        raise ExportFormatError(
            f"{path} holds a {meta.get('model_class')!r}, not a packed GPT; load image "
            "models with extremeq.inference.load"
        )
    verify_arrays(path, meta, arrays)
    try:
        module = GPT(**recipe["gpt"], rngs=nnx.Rngs(0))
    except (TypeError, ValueError) as e:
        raise ExportFormatError(f"{path}: its GPT config does not build a GPT ({e}); export the model again") from e
    _replace_bitlinears(module, lambda m: PackedBitLinear.empty(m.in_features, m.out_features, m.method))
    state = nnx.state(module, nnx.Not(nnx.RngState))
    flat = list(nnx.to_flat_state(state))
    names = {"/".join(map(str, p)) for p, _ in flat}
    if names != set(arrays):
        raise ExportFormatError(
            f"{path}: arrays do not fit the GPT of its config: missing "
            f"{sorted(names - set(arrays))[:5]}, unexpected {sorted(set(arrays) - names)[:5]}"
        )
    for p, var in flat:
        name, old = "/".join(map(str, p)), var.get_value()
        new = arrays[name]
        if tuple(old.shape) != new.shape or np.dtype(old.dtype) != new.dtype:
            raise ExportFormatError(
                f"{path}: array {name!r} is {new.dtype} {new.shape}, the GPT needs "
                f"{np.dtype(old.dtype)} {tuple(old.shape)}"
            )
        var.set_value(jnp.asarray(new))
    nnx.update(module, state)
    verify_metadata(path, meta)
    return PackedLM(module, recipe["gpt"], decode)
