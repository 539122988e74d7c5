"""The method registry: every quantization method of extremeq, defined once, looked up by name.

Three kinds of entries, each registered under a name (Larq's name aliases, ``"ste_sign"``):

* :class:`WeightMethod` - a weight quantizer: its training forward (fake quantization with its
  straight-through estimator), its bit width and ``precision`` (what the summary reads, as Larq's
  ``precision`` attribute), its float32 scales, its learned scales (TTQ), and ``encode`` /
  ``decode``: the integer codes and scales of the evaluation forward (a :class:`QArray`, the typed
  quantized value of Qwix) and the weights they stand for. ``decode(encode(w)) == forward(w)`` in
  evaluation is the contract the exporter packs by (``tests/test_methods.py`` checks it for every
  registered method).
* :class:`InputMethod` - an activation quantizer: forward ``(x_q, K)`` with K the XNOR-Net input
  scale (None for all but ``xnor``), bit width, precision.
* :class:`Method` - a paper's recipe for the precision policy: a weight and an input quantizer
  (``"xnor"`` = BWN weights + XNOR inputs), the names ``method_rules`` and the configs accept.

The built-in families live beside this module (``fp``, ``binary``, ``ternary``, ``int8``); a
method of your own is one file that builds entries and calls :func:`register` (README, "Adding a
method"). Quantizer-level formulas live in ``extremeq.quantizers`` / ``extremeq.ste``; this
module holds only the facts that tie them to layers, the summary and the packed format.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

#: Precisions with a column of their own in the summary; a method may name another (e.g. "4-bit").
PRECISIONS = ("binary", "ternary", "int8", "float")
#: Storage formats of packed weights (``WeightMethod.packing``).
PACKINGS = ("binary", "ternary", "ttq", "int8", "float", "codes")


@dataclasses.dataclass(frozen=True)
class QArray:
    """A quantized tensor: integer ``codes`` (stored as floats holding integers, in the layout of
    the weights) and named float ``scales`` (``alpha`` per tensor or per output channel, broadcast
    against the codes; TTQ's ``w_p``/``w_n``). ``dequantize()`` is the method's ``decode``."""

    codes: Any
    scales: Mapping[str, Any]
    method: str

    def dequantize(self):
        return weight_method(self.method).decode(self)


def scaled_decode(q: QArray):
    """codes * alpha (codes alone when the method stores no scale)."""
    alpha = q.scales.get("alpha")
    return q.codes if alpha is None else q.codes * alpha


def no_scales(spec, out_features: int) -> int:
    del spec, out_features
    return 0


def per_channel_scales(default: bool) -> Callable[[Any, int], int]:
    """``scale_count`` of a method with one scale per output channel or one per tensor
    (the spec option ``per_channel``, ``default`` when unset)."""

    def count(spec, out_features: int) -> int:
        return out_features if spec.option("per_channel", default) else 1

    return count


@dataclasses.dataclass(frozen=True, kw_only=True)
class WeightMethod:
    """A weight quantizer.

    Attributes:
      name: the registered name (``kernel_quantizer="bwn"``).
      bits: bits one packed weight takes (1 binary, 2 ternary, 8 int8, 32 float, k for k-bit).
      precision: ``"binary"``, ``"ternary"``, ``"int8"``, ``"float"`` or a name of your own: the
        summary files the layer's MACs under it.
      forward: ``forward(w, spec, *, scales, key) -> W_q``, the fake-quantized weights the layer
        multiplies with (``spec.estimator`` on the backward pass, ``spec.option(...)`` for options;
        ``scales`` the learned scales by name; ``key`` a PRNG key while training a stochastic
        method, else None).
      encode: ``encode(w, spec, scales) -> QArray``, the codes and scales of the evaluation
        forward (None: stored as float).
      decode: ``decode(QArray) -> W_q`` (default: codes * alpha).
      scale_count: ``scale_count(spec, out_features)``, float32 scales stored beside the codes.
      learned_scales: names of learned scalar parameters the layer owns (TTQ: ttq_wp, ttq_wn).
      init_scales: ``init_scales(w, spec) -> {name: value}`` for ``learned_scales``.
      clip_latent: clip the latent weights to [-1, 1] after each update (BinaryConnect).
      stochastic: draws noise from the layer's ``quant`` rng stream while training.
      packing: how export stores the codes: ``"binary"`` (+-1 codes as 1-bit words, optional
        ``alpha``), ``"ternary"`` ({-1, 0, 1} as 2-bit words, ``alpha``), ``"ttq"`` (2-bit words,
        ``w_p``/``w_n``), ``"int8"`` (int8 codes, ``alpha``), ``"float"`` (the float32 kernel of
        the evaluation forward; the default without ``encode``), or ``"codes"`` (the default with
        an ``encode``: integer codes in [-127, 127], at most 2^bits distinct ones per layer, stored
        as ``bits``-bit indices into a per-layer codebook, with an optional ``alpha``; turned back
        into weights by ``decode`` when the model runs).
      doc: one line for tables and error messages.
    """

    name: str
    bits: int
    precision: str
    forward: Callable
    encode: Callable | None = None
    decode: Callable = scaled_decode
    scale_count: Callable = no_scales
    learned_scales: tuple[str, ...] = ()
    init_scales: Callable | None = None
    clip_latent: bool = False
    stochastic: bool = False
    packing: str | None = None
    doc: str = ""

    def __post_init__(self):
        _check_entry(self)
        if self.packing is None:  # frozen: set the default once, here
            object.__setattr__(self, "packing", "float" if self.encode is None else "codes")
        if self.packing not in PACKINGS:
            raise ValueError(f"weight method {self.name!r}: packing {self.packing!r} unknown; choose one of {PACKINGS}")
        if self.packing != "float" and self.encode is None:
            raise ValueError(
                f"weight method {self.name!r}: packing {self.packing!r} stores integer codes, so it "
                "needs an encode(w, spec, scales) -> QArray (or packing='float' to store the weights)"
            )
        if self.learned_scales and self.init_scales is None:
            raise ValueError(f"weight method {self.name!r}: learned_scales need an init_scales function")


@dataclasses.dataclass(frozen=True, kw_only=True)
class InputMethod:
    """An input (activation) quantizer.

    Attributes:
      forward: ``forward(x, spec, *, kernel_size, strides, padding) -> (x_q, K or None)``; a dense
        layer passes ``kernel_size=None``.
      default_estimator: the STE when the user names none (BinaryNet's sign: "clipped").
    """

    name: str
    bits: int
    precision: str
    forward: Callable
    default_estimator: str = "ste"
    doc: str = ""

    def __post_init__(self):
        _check_entry(self)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Method:
    """A paper's method for the precision policy: ``kernel`` weights, ``input`` activations."""

    name: str
    kernel: str
    input: str = "fp"
    doc: str = ""


def _check_entry(entry):
    if not (isinstance(entry.name, str) and entry.name.isidentifier()):
        raise ValueError(f"a method name must be an identifier, got {entry.name!r}")
    if not (isinstance(entry.bits, int) and 1 <= entry.bits <= 32):
        raise ValueError(f"method {entry.name!r}: bits must be an int in [1, 32], got {entry.bits!r}")
    if not callable(entry.forward):
        raise TypeError(f"method {entry.name!r}: forward must be callable")


_WEIGHTS: dict[str, WeightMethod] = {}
_INPUTS: dict[str, InputMethod] = {}
_METHODS: dict[str, Method] = {}
_TABLES = {
    WeightMethod: (_WEIGHTS, "weight quantizer"),
    InputMethod: (_INPUTS, "input quantizer"),
    Method: (_METHODS, "method"),
}


def register(*entries, replace: bool = False):
    """Register weight quantizers, input quantizers and methods (in that order of dependence).

    A name already taken raises unless ``replace=True`` (re-running a notebook cell). A
    :class:`Method` must name registered quantizers. Returns the entries (one, or a tuple).
    """
    for entry in entries:
        if type(entry) not in _TABLES:
            raise TypeError(f"register takes WeightMethod, InputMethod or Method entries, got {entry!r}")
        table, what = _TABLES[type(entry)]
        if isinstance(entry, Method):
            weight_method(entry.kernel)
            input_method(entry.input)
        if entry.name in table and not replace and table[entry.name] != entry:
            raise ValueError(f"{what} {entry.name!r} is registered already; pass replace=True to redefine it")
        table[entry.name] = entry
    return entries[0] if len(entries) == 1 else entries


def _lookup(table: dict, name, what: str):
    try:
        return table[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"{what} {name!r} unknown; choose one of {', '.join(table)} "
            "(or register your own: extremeq.methods.register)"
        ) from None


def weight_method(name: str) -> WeightMethod:
    return _lookup(_WEIGHTS, name, "weight quantizer")


def input_method(name: str) -> InputMethod:
    return _lookup(_INPUTS, name, "input quantizer")


def method(name: str) -> Method:
    return _lookup(_METHODS, name, "method")


class _View(Mapping):
    """A read-only live view of a table (new registrations appear in it)."""

    def __init__(self, table: dict, value: Callable):
        self._table, self._value = table, value

    def __getitem__(self, name):
        return self._value(self._table[name])

    def __iter__(self) -> Iterator[str]:
        return iter(self._table)

    def __len__(self) -> int:
        return len(self._table)

    def __repr__(self) -> str:
        return repr(dict(self))


class _Names(Sequence):
    """The names whose entry satisfies ``keep``, re-read on every use (new registrations count)."""

    def __init__(self, table: dict, keep: Callable):
        self._table, self._keep = table, keep

    def _names(self) -> tuple:
        return tuple(n for n, e in self._table.items() if self._keep(e))

    def __getitem__(self, i):
        return self._names()[i]

    def __len__(self) -> int:
        return len(self._names())

    def __eq__(self, other):
        return self._names() == tuple(other)

    def __hash__(self):
        return hash(self._names())

    def __repr__(self) -> str:
        return repr(self._names())


#: name -> (bits, clip_latent), for every registered weight quantizer.
WEIGHT_QUANTIZERS = _View(_WEIGHTS, lambda m: (m.bits, m.clip_latent))
#: name -> bits, for every registered input quantizer.
INPUT_QUANTIZERS = _View(_INPUTS, lambda m: m.bits)
#: method -> (weight quantizer, input quantizer), for every registered method.
METHODS = _View(_METHODS, lambda m: (m.kernel, m.input))
BINARY = _Names(_WEIGHTS, lambda m: m.precision == "binary")
TERNARY = _Names(_WEIGHTS, lambda m: m.precision == "ternary")
#: methods whose weights are 1-bit / whose inputs are 1-bit (the configs' dropout and schedules read these).
BINARY_METHODS = _Names(_METHODS, lambda m: _WEIGHTS[m.kernel].bits == 1)
BINARY_INPUT_METHODS = _Names(_METHODS, lambda m: _INPUTS[m.input].bits == 1)
