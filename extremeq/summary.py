"""Model summary in the spirit of ``larq.models.summary``.

For every layer that owns parameters: parameters by bit width, memory when the
weights are packed (1-bit binary, 2-bit ternary, 8-bit int8, 32-bit float)
against float32, and multiply-accumulates (MACs) by precision. Totals and the
compression ratio (float32 bytes / packed bytes) close the table.

Conventions (the same ones ``extremeq.export`` uses, so the prediction matches
the file); every per-method number is read from the method's registry entry
(``extremeq.methods``: ``bits``, ``precision``, ``scale_count``), so a registered
method of your own is summarised without a change here:
  * a quantized kernel of n weights takes ceil(n * bits / 8) bytes, bits = 1
    (bc, bwn), 2 (twn, ttq, bitnet: the 2-bit format of ``extremeq.packing``)
    or 8 (int8);
  * a quantized kernel also stores its scales in float32: one per output
    channel (bwn, int8), one per tensor (twn, bitnet), W_p and W_n (ttq,
    already parameters);
  * biases, batch-norm parameters and every float layer are float32; batch-norm
    running statistics are counted with the float parameters (they are stored);
  * MACs of a Linear: in * out per example; of a Conv: H' W' kh kw (Cin/groups)
    Cout. A layer's MACs are filed under its weight method's precision ("binary",
    "ternary", "int8", "float", or one a registered method names); ``xnor`` counts the binary ones whose inputs are
    binary too (XNOR-popcount).

``Summary.energy(table)`` turns these counts into an estimated energy per inference
(compute + weight reads from DRAM) with :mod:`extremeq.energy`'s cost model: an estimate
from a cost table, not a measurement.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from extremeq.energy import HOROWITZ_45NM, CostTable, EnergyEstimate, estimate_energy
from extremeq.methods import PRECISIONS
from extremeq.nn.layers import QuantConv, QuantLinear, _Quantized
from extremeq.nn.policy import path_string


@dataclasses.dataclass
class LayerRow:
    path: str
    kind: str
    weight: str  # weight quantizer name
    inputs: str  # input quantizer name
    params: dict  # bits -> count
    packed_bytes: int
    float32_bytes: int
    macs: dict  # precision -> count
    xnor_macs: int
    output_shape: tuple


@dataclasses.dataclass
class Summary:
    rows: list
    input_shape: tuple

    def total_params(self) -> dict:
        out: dict = {}
        for r in self.rows:
            for b, n in r.params.items():
                out[b] = out.get(b, 0) + n
        return dict(sorted(out.items()))

    @property
    def packed_bytes(self) -> int:
        return sum(r.packed_bytes for r in self.rows)

    @property
    def float32_bytes(self) -> int:
        return sum(r.float32_bytes for r in self.rows)

    @property
    def compression(self) -> float:
        return self.float32_bytes / max(self.packed_bytes, 1)

    @property
    def precisions(self) -> tuple:
        """The built-in precisions, then any other a layer's method names, in order of appearance."""
        extra = [p for r in self.rows for p in r.macs if p not in PRECISIONS]
        return PRECISIONS + tuple(dict.fromkeys(extra))

    def total_macs(self) -> dict:
        return {p: sum(r.macs.get(p, 0) for r in self.rows) for p in self.precisions}

    @property
    def xnor_macs(self) -> int:
        return sum(r.xnor_macs for r in self.rows)

    def energy(self, table: CostTable = HOROWITZ_45NM) -> EnergyEstimate:
        """Estimated energy per inference (batch 1) from the cost model of :mod:`extremeq.energy`."""
        return estimate_energy(self.total_macs(), self.xnor_macs, self.packed_bytes, table)

    def __str__(self) -> str:
        bits = sorted({b for r in self.rows for b in r.params})
        head = (
            ["layer", "type", "W/A"]
            + [f"{b}-bit params" for b in bits]
            + ["packed", "float32"]
            + [f"MACs {p}" for p in self.precisions]
        )
        lines = [head]
        for r in self.rows:
            lines.append(
                [r.path, r.kind, f"{r.weight}/{r.inputs}"]
                + [_fmt_int(r.params.get(b, 0)) for b in bits]
                + [_fmt_bytes(r.packed_bytes), _fmt_bytes(r.float32_bytes)]
                + [_fmt_int(r.macs.get(p, 0)) for p in self.precisions]
            )
        tp, tm = self.total_params(), self.total_macs()
        lines.append(
            ["total", "", ""]
            + [_fmt_int(tp.get(b, 0)) for b in bits]
            + [_fmt_bytes(self.packed_bytes), _fmt_bytes(self.float32_bytes)]
            + [_fmt_int(tm[p]) for p in self.precisions]
        )
        widths = [max(len(str(row[i])) for row in lines) for i in range(len(head))]
        text = [" | ".join(str(c).ljust(w) for c, w in zip(row, widths)) for row in lines]
        text.insert(1, "-+-".join("-" * w for w in widths))
        text.insert(len(text) - 1, "-+-".join("-" * w for w in widths))
        text.append(
            f"compression (float32 / packed): {self.compression:.2f}x; XNOR-popcount MACs: {_fmt_int(self.xnor_macs)}"
        )
        text.append(str(self.energy()))
        return "\n".join(text)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": [dataclasses.asdict(r) for r in self.rows],
            "params": self.total_params(),
            "packed_bytes": self.packed_bytes,
            "float32_bytes": self.float32_bytes,
            "compression": self.compression,
            "macs": self.total_macs(),
            "xnor_macs": self.xnor_macs,
            "energy": self.energy().as_dict(),
        }


def _fmt_int(n: int) -> str:
    return f"{n:,}"


def _fmt_bytes(n: int) -> str:
    for unit, size in (("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"


def scale_count(layer: _Quantized) -> int:
    """How many float32 scales a packed quantized kernel stores beside its codes (the method's
    ``scale_count``: per output channel for bwn and int8, one for twn and bitnet, none for fp and
    bc; ttq's scales are parameters already)."""
    spec = layer.kernel_quantizer
    return spec.method.scale_count(spec, layer.out_features)


@contextlib.contextmanager
def _record_shapes(store: dict):
    """Temporarily record each Linear/Conv layer's input and output shape."""
    classes = (nnx.Linear, nnx.Conv, QuantLinear, QuantConv, nnx.BatchNorm, nnx.LayerNorm)
    originals = {c: c.__call__ for c in classes}

    def make(orig):
        def call(self, x, *a, **k):
            y = orig(self, x, *a, **k)
            store.setdefault(id(self), (tuple(x.shape), tuple(y.shape)))
            return y

        return call

    try:
        for c in classes:
            c.__call__ = make(originals[c])
        yield
    finally:
        for c, f in originals.items():
            c.__call__ = f


def _layer_macs(module, in_shape, out_shape) -> int:
    if isinstance(module, (nnx.Linear, QuantLinear)):
        per_example = math.prod(in_shape[1:-1]) if len(in_shape) > 2 else 1
        return per_example * module.in_features * module.out_features
    kh, kw, cin_g, cout = module.kernel[...].shape
    return math.prod(out_shape[1:-1]) * kh * kw * cin_g * cout


def _param_count(module) -> int:
    return sum(int(x.size) for x in jax.tree_util.tree_leaves(nnx.state(module, nnx.Param)))


def _all_state_count(module) -> int:
    return sum(int(x.size) for x in jax.tree_util.tree_leaves(nnx.state(module)) if hasattr(x, "size"))


def summary(model, sample_input) -> Summary:
    """Summarise ``model`` for inputs shaped like ``sample_input`` (batch 1 is used).

    The model is traced with ``jax.eval_shape`` (nothing is computed); rows
    follow the forward (call) order.
    """
    shapes: dict = {}
    x = jax.ShapeDtypeStruct((1, *jnp.shape(sample_input)[1:]), jnp.float32)
    was_training = _is_training(model)
    model.eval()
    try:
        with _record_shapes(shapes):
            jax.eval_shape(lambda v: model(v), x)
    finally:
        if was_training:
            model.train()
    rows = []
    order = {key: i for i, key in enumerate(shapes)}
    modules = sorted(nnx.iter_modules(model), key=lambda pm: order.get(id(pm[1]), len(order)))
    for path, module in modules:
        if isinstance(module, (nnx.Linear, nnx.Conv, _Quantized)):
            if id(module) not in shapes:
                continue  # defined but unused in the forward pass
            in_shape, out_shape = shapes[id(module)]
            macs = _layer_macs(module, in_shape, out_shape)
            kernel_n = int(module.kernel[...].size)
            other_n = _param_count(module) - kernel_n
            if isinstance(module, _Quantized):
                wbits = module.kernel_quantizer.bits
                wname, iname = module.kernel_quantizer.name, module.input_quantizer.name
                ibits = module.input_quantizer.bits
            else:
                wbits, ibits, wname, iname = 32, 32, "fp", "fp"
            params = {wbits: kernel_n}
            n_scales = scale_count(module) if isinstance(module, _Quantized) else 0
            if other_n:
                params[32] = params.get(32, 0) + other_n
            packed = -(-kernel_n * wbits // 8) + 4 * (other_n + n_scales)
            prec = module.kernel_quantizer.precision if isinstance(module, _Quantized) else "float"
            rows.append(
                LayerRow(
                    path_string(path),
                    type(module).__name__,
                    wname,
                    iname,
                    params,
                    packed,
                    4 * (kernel_n + other_n),
                    {prec: macs},
                    macs if (wbits == 1 and ibits == 1) else 0,
                    out_shape,
                )
            )
        elif isinstance(module, (nnx.BatchNorm, nnx.LayerNorm)):
            n = _all_state_count(module)
            rows.append(
                LayerRow(path_string(path), type(module).__name__, "fp", "fp", {32: n}, 4 * n, 4 * n, {}, 0, ())
            )
    return Summary(rows, tuple(jnp.shape(sample_input)))


def _is_training(model) -> bool:
    for _, m in nnx.iter_modules(model):
        if hasattr(m, "use_running_average") and m.use_running_average is not None:
            return not m.use_running_average
        if hasattr(m, "deterministic") and isinstance(m.deterministic, bool):
            return not m.deterministic
    return False
