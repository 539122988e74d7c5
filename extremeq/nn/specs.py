"""Quantizer specs: a registered name (plus estimator and its parameters) -> a configured quantizer.

A spec is what a layer is configured with: ``"bwn"``, or
``QuantizerSpec("twn", estimator=Estimator("clipped"))``, or a dict
``{"name": "swish_sign", ...}``. Every fact about the named method (forward, bit width,
precision, scales, whether the latent weights are clipped) comes from its registry entry
(``spec.method``, see ``extremeq.methods``), so a method registered there is accepted here.

The names are those of the registry: ``WEIGHT_QUANTIZERS`` and ``INPUT_QUANTIZERS`` (live views;
the built-ins and their formulas are tabled in ``extremeq.methods.fp``, ``.binary``, ``.ternary`` and
``.int8``; ``methods.weight_method(name).doc`` is each one's line).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from extremeq import methods as registry
from extremeq.methods import BINARY, INPUT_QUANTIZERS, TERNARY, WEIGHT_QUANTIZERS
from extremeq.ste import ESTIMATORS, Estimator, get_estimator

__all__ = ["BINARY", "INPUT_QUANTIZERS", "TERNARY", "WEIGHT_QUANTIZERS", "QuantizerSpec", "as_spec"]


@dataclasses.dataclass(frozen=True)
class QuantizerSpec:
    """A configured quantizer.

    Attributes:
      name: quantizer name (see the module docstring).
      kind: "weight" or "input".
      estimator: the STE used on the backward pass.
      options: extra keyword options (e.g. ``per_channel``, TTQ's ``t``).
    """

    name: str
    kind: str = "weight"
    estimator: Estimator = Estimator("ste")
    options: tuple = ()

    def __post_init__(self):
        if self.kind not in ("weight", "input"):
            raise ValueError(f"quantizer kind must be 'weight' or 'input', got {self.kind!r}")
        _ = self.method  # an unknown name fails here, naming the registered ones

    @property
    def method(self) -> registry.WeightMethod | registry.InputMethod:
        """The registry entry of this quantizer."""
        if self.kind == "weight":
            return registry.weight_method(self.name)
        return registry.input_method(self.name)

    @property
    def bits(self) -> int:
        return self.method.bits

    @property
    def precision(self) -> str:
        return self.method.precision

    @property
    def clip_latent(self) -> bool:
        return self.kind == "weight" and self.method.clip_latent

    @property
    def is_binary(self) -> bool:
        return self.bits == 1

    @property
    def is_ternary(self) -> bool:
        return self.kind == "weight" and self.precision == "ternary"

    def option(self, key: str, default: Any = None) -> Any:
        return dict(self.options).get(key, default)


def as_spec(spec, kind: str = "weight", ste=None, ste_kwargs: Mapping | None = None) -> QuantizerSpec:
    """Resolve a name, dict or QuantizerSpec into a QuantizerSpec.

    ``ste``/``ste_kwargs`` set the estimator when ``spec`` is a name. A dict
    may hold ``name``, ``ste``, ``ste_kwargs`` and any extra options.
    The default estimator is "ste", or the input method's ``default_estimator``
    (BinaryNet's "sign" input: the clipped STE of the paper).
    """
    if isinstance(spec, QuantizerSpec):
        if spec.kind != kind:
            raise ValueError(f"got a {spec.kind} quantizer where a {kind} quantizer is needed")
        return spec
    options: dict = {}
    if isinstance(spec, Mapping):
        spec = dict(spec)
        if "name" not in spec:
            raise ValueError(f"a quantizer dict needs a 'name' key, got keys {sorted(spec)}")
        name = spec.pop("name")
        ste = spec.pop("ste", ste)
        ste_kwargs = spec.pop("ste_kwargs", ste_kwargs)
        options = spec
    elif spec is None:
        name = "fp"
    elif isinstance(spec, str):
        name = spec
    else:
        raise TypeError(f"a quantizer is a name, dict or QuantizerSpec, got {type(spec).__name__}")
    if ste is None:  # the method's own default (BinaryNet's sign input: the clipped STE of the paper)
        ste = registry.input_method(name).default_estimator if kind == "input" and name in INPUT_QUANTIZERS else "ste"
    if isinstance(ste, str) and ste not in ESTIMATORS:
        raise ValueError(f"estimator {ste!r} unknown; choose one of {', '.join(ESTIMATORS)}")
    estimator = get_estimator(ste, **dict(ste_kwargs or {}))
    return QuantizerSpec(name, kind, estimator, tuple(sorted(options.items())))
