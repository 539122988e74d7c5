"""PackedModel: an exported network (packed layers inside the network's own structure), run jitted;
saving, loading and the size report."""

from __future__ import annotations

import dataclasses
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from extremeq import methods
from extremeq.inference.file_format import (
    ExportFormatError,
    read_export,
    verify_arrays,
    verify_metadata,
    write_export,
)
from extremeq.inference.rebuild import fill, skeleton, storable_state

__all__ = ["PackedModel", "SizeRow", "load"]

_CONCRETE = type(jnp.zeros((), jnp.float32))  # jax's concrete array class (never a tracer)


@dataclasses.dataclass
class SizeRow:
    path: str
    stored_as: str
    file_bytes: int
    float32_bytes: int
    predicted_bytes: int | None


class PackedModel:
    """An exported network: packed layers inside the network's own structure, run jitted.

    ``packed(x)`` -> logits (eval mode, any batch size); ``save(path)`` -> bytes written;
    ``PackedModel.load(path)`` (or ``extremeq.inference.load``); ``size_report()``.
    Attributes: ``module`` (the NNX network with packed layers), ``recipe``, ``layers``
    (path -> packed layer config), ``summary`` (extremeq.summary's size prediction or None).
    """

    def __init__(self, module, *, recipe=None, layers=None, summary=None):
        self.module = module
        self.recipe = recipe
        self.layers = dict(layers or {})
        self.summary = summary
        self.file_bytes: int | None = None
        graphdef, state = nnx.split(module)
        # The state flattened once and grouped into few arguments (:class:`_Arguments`): a call
        # passes them to an executable compiled ahead of time for the input's shape (no pytree
        # walk, no re-tracing per call).
        leaves, treedef = jax.tree_util.tree_flatten(state)
        self._arguments = _Arguments(leaves)
        self._args = self._arguments.args

        def forward(*args):  # the grouped arrays, then x: flat positional arguments
            state = jax.tree_util.tree_unflatten(treedef, self._arguments.leaves(args[:-1]))
            x = args[-1]
            return nnx.merge(graphdef, state)(x)

        self._forward = jax.jit(forward)
        self._executables = {}
        self._calls = {}  # shape -> the fast path's call: the executable's C++ call, once made

    def executable(self, shape):
        """The compiled forward pass for float32 inputs of ``shape`` (compiled on first use)."""
        shape = tuple(int(d) for d in shape)
        exe = self._executables.get(shape)
        if exe is None:
            x = jax.ShapeDtypeStruct(shape, jnp.float32)
            exe = self._executables[shape] = self._forward.lower(*self._args, x).compile()
        return exe

    def __call__(self, x):
        # Fast path (batch-1 latency): a concrete array of a shape called before goes straight to
        # that executable's C++ call (``Compiled._call``), which checks the input's dtype itself and
        # raises TypeError on a mismatch. No Python frame of ``Compiled.__call__`` and no
        # ``x.shape`` / ``x.dtype`` properties: together ~0.02 ms of a cache-cold call.
        if type(x) is _CONCRETE:
            call = self._calls.get(x.aval.shape)
            if call is not None:
                try:
                    return call(*self._args, x)
                except TypeError:  # another dtype: cast below
                    pass
        if isinstance(x, jax.core.Tracer):  # inside the caller's own jit: trace through
            return self._forward(*self._args, jnp.asarray(x, jnp.float32))
        if not (isinstance(x, jax.Array) and x.dtype == jnp.float32):
            x = jnp.asarray(x, jnp.float32)
        exe = self.executable(x.shape)
        out = exe(*self._args, x)
        if type(x) is _CONCRETE:
            self._calls[x.shape] = getattr(exe, "_call", None) or exe
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        """Every stored array by name (what :meth:`save` writes besides the metadata)."""
        return {k: np.asarray(v) for k, v in storable_state(self.module).items()}

    @property
    def nbytes(self) -> int:
        """Payload bytes: the sum of the stored arrays' sizes."""
        return sum(a.nbytes for a in self.arrays().values())

    def metadata(self) -> dict:
        """The file's metadata but for what :func:`write_export` adds (format, version, arrays, checksums)."""
        return {
            "recipe": self.recipe,
            "model_class": type(self.module).__name__,
            "layers": self.layers,
            "summary": self.summary,
        }

    def save(self, path) -> int:
        """Write the npz file (:mod:`extremeq.inference.file_format`); returns the bytes written."""
        if self.recipe is None:
            raise ValueError(
                "this PackedModel has no recipe, so a file could not be loaded back: export with "
                "recipe={'model': {'name': 'mlp', ...}, 'num_classes': 10, 'input_shape': [8, 8, 1]} "
                "(the build_model arguments) or recipe={'factory': <a name registered with register_factory>, "
                "'kwargs': {...}}"
            )
        self.file_bytes = write_export(path, self.metadata(), self.arrays())
        return self.file_bytes

    @classmethod
    def load(cls, path) -> "PackedModel":
        return load(path)

    def check_rebuild(self):
        """Fail at export time (not at load time) when the recipe does not rebuild this structure."""
        arrays = self.arrays()
        fill(skeleton(self.recipe, self.layers, arrays), arrays, "the recipe")

    def size_rows(self) -> list[SizeRow]:
        arrays = self.arrays()
        by_layer: dict[str, list] = {}
        for name, a in arrays.items():
            by_layer.setdefault(name.rsplit("/", 1)[0], []).append(a)
        predicted = (self.summary or {}).get("rows", {})
        rows = []
        for layer, arrs in by_layer.items():
            conf = self.layers.get(layer)
            stored = f"{conf['config']['weight']}/{conf['config']['inputs']}" if conf else "float32"
            if conf:  # float32 size of the layer it replaced: kernel, bias, the method's learned scales
                c = conf["config"]
                n = c["in_features"] * c["out_features"]
                if "kernel_size" in c:
                    n = math.prod(c["kernel_size"]) * (c["in_features"] // c["feature_group_count"]) * c["out_features"]
                own = {k.rsplit("/", 1)[1]: a for k, a in arrays.items() if k.rsplit("/", 1)[0] == layer}
                learned = methods.weight_method(c["weight"]).learned_scales
                n += sum(own[k].size for k in ("bias", *learned) if k in own)
                f32 = 4 * n
            else:
                f32 = sum(4 * a.size for a in arrs)
            rows.append(SizeRow(layer, stored, sum(a.nbytes for a in arrs), f32, predicted.get(layer)))
        return rows

    def size_report(self) -> str:
        """Table: per layer the bytes stored, its float32 size and extremeq.summary's prediction."""
        rows = self.size_rows()
        lines = [("layer", "stored as", "bytes", "float32", "ratio", "summary")]
        for r in rows:
            lines.append(
                (
                    r.path,
                    r.stored_as,
                    f"{r.file_bytes:,}",
                    f"{r.float32_bytes:,}",
                    f"{r.float32_bytes / max(r.file_bytes, 1):.1f}x",
                    "-" if r.predicted_bytes is None else f"{r.predicted_bytes:,}",
                )
            )
        payload = sum(r.file_bytes for r in rows)
        pred = (self.summary or {}).get("packed_bytes")
        lines.append(
            (
                "total arrays",
                "",
                f"{payload:,}",
                f"{sum(r.float32_bytes for r in rows):,}",
                "",
                "-" if pred is None else f"{pred:,}",
            )
        )
        widths = [max(len(row[i]) for row in lines) for i in range(len(lines[0]))]
        text = [" | ".join(c.ljust(w) for c, w in zip(row, widths)) for row in lines]
        text.insert(1, "-+-".join("-" * w for w in widths))
        if self.file_bytes is not None:
            tail = f"file on disk: {self.file_bytes:,} bytes"
            if pred:
                tail += f"; summary predicted {pred:,} bytes ({100 * (self.file_bytes / pred - 1):+.2f}%)"
            text.append(tail)
        elif pred:
            text.append(
                f"arrays {payload:,} bytes; summary predicted {pred:,} "
                f"({100 * (payload / pred - 1):+.2f}%); save() to measure the file"
            )
        return "\n".join(text)


class _Arguments:
    """The model's arrays as few executable arguments: the small ones concatenated (flattened) into
    one buffer per dtype, which the executable slices back into the arrays (static offsets), the
    others (and PRNG keys) on their own.

    Why: the call's cost at batch 1 grows with its number of arguments, and more so when the caches
    are cold (each argument is checked and looked up on the host before the executable runs). The
    784-1024-1024-1024-10 MLP (17 arrays) goes from 18 arguments to 4. "Small": integer arrays (packed
    words and codes) under ``PACKED_BYTES``, which only decode / XNOR-popcount fusions read, in place
    from the buffer; other arrays under ``SMALL_BYTES``, since a slice that XLA feeds to a dot or a
    convolution (a float kernel) is copied per call, which then costs about what an argument of its
    own would. The grouped buffers are a second copy of those arrays in memory.
    """

    SMALL_BYTES = 64 * 1024
    PACKED_BYTES = 1024 * 1024

    def _small(self, a) -> bool:
        if jax.dtypes.issubdtype(a.dtype, jax.dtypes.extended):
            return False
        limit = self.PACKED_BYTES if jnp.issubdtype(a.dtype, jnp.integer) else self.SMALL_BYTES
        return a.nbytes < limit

    def __init__(self, leaves):
        leaves = [jnp.asarray(a) for a in leaves]
        self.specs = [a.shape for a in leaves]
        small = [self._small(a) for a in leaves]
        self.big = [i for i, s in enumerate(small) if not s]
        self.groups = {}  # dtype name -> indices of its small arrays, in order
        for i, a in enumerate(leaves):
            if small[i]:
                self.groups.setdefault(np.dtype(a.dtype).name, []).append(i)
        buffers = tuple(jnp.concatenate([jnp.ravel(leaves[i]) for i in idx]) for idx in self.groups.values())
        self.args = (*(leaves[i] for i in self.big), *buffers)  # flat: each a positional argument

    def leaves(self, args):
        """The arrays in their original order, from ``args`` (traced inside the executable)."""
        bigs, buffers = args[: len(self.big)], args[len(self.big) :]
        out = [None] * len(self.specs)
        for i, a in zip(self.big, bigs):
            out[i] = a
        for idx, buf in zip(self.groups.values(), buffers):
            offset = 0
            for i in idx:
                shape = self.specs[i]
                n = math.prod(shape)
                out[i] = buf[offset : offset + n].reshape(shape)
                offset += n
        return out


def load(path) -> PackedModel:
    """Read a file written by :meth:`PackedModel.save` and rebuild the packed model.

    Checked, in order: format and version, every array against its listed dtype/shape, the recipe
    (only registered builders; nothing the file names is imported or called), every array against
    its checksum, the arrays against the rebuilt structure, then the metadata against its checksums.
    Any failure raises :class:`ExportFormatError` saying what was wrong.
    """
    meta, arrays = read_export(path)
    if meta.get("model_class") == "GPT" and isinstance(meta.get("recipe"), dict) and "gpt" in meta["recipe"]:
        raise ExportFormatError(f"{path} is a packed language model; load it with extremeq.inference.lm.load_lm")
    model = skeleton(meta.get("recipe"), meta.get("layers", {}), arrays)
    verify_arrays(path, meta, arrays)
    if type(model).__name__ != meta.get("model_class"):
        raise ExportFormatError(
            f"{path}: the recipe rebuilt a {type(model).__name__}, the file holds a {meta.get('model_class')}"
        )
    fill(model, arrays, f"the recipe in {path}")
    verify_metadata(path, meta)
    out = PackedModel(model, recipe=meta["recipe"], layers=meta["layers"], summary=meta.get("summary"))
    out.file_bytes = os.path.getsize(os.fspath(path))
    return out
