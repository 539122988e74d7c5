"""Quantizer specs: a name (plus estimator and its parameters) -> a callable.

A spec is what a layer is configured with: ``"bwn"``, or
``QuantizerSpec("twn", estimator=Estimator("clipped"))``, or a dict
``{"name": "swish_sign", ...}``. It knows its bit width (for the summary and
export) and whether the latent weights are clipped to [-1, 1] after each
update (BinaryConnect).

Weight quantizers (``WEIGHT_QUANTIZERS``):
  fp             float, no quantization                             32 bits
  bc             BinaryConnect, sign(W)                             1 bit, clipped latent
  bc_stochastic  BinaryConnect, stochastic sign (needs a key)       1 bit, clipped latent
  bwn            BWN, mean|W| * sign(W), per output channel         1 bit
  twn            TWN, alpha * T(W), Delta = 0.7 mean|W|             2 bits
  ttq            TTQ, W_p / 0 / -W_n with learned scales            2 bits
  bitnet         BitNet b1.58 absmean ternary                       2 bits (1.58)
  int8           symmetric int8, per output channel                 8 bits

Input (activation) quantizers (``INPUT_QUANTIZERS``):
  fp     float                                                      32 bits
  sign   BinaryNet sign(x), no scale                                1 bit
  xnor   XNOR-Net sign(x) with the K-map scale                      1 bit
  int8   symmetric int8, one absmax scale per example               8 bits
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from extremeq.ste import ESTIMATORS, Estimator, get_estimator

WEIGHT_QUANTIZERS = {
    # name: (bits, clip_latent)
    "fp": (32, False),
    "bc": (1, True),
    "bc_stochastic": (1, True),
    "bwn": (1, False),
    "twn": (2, False),
    "ttq": (2, False),
    "bitnet": (2, False),
    "int8": (8, False),
}
INPUT_QUANTIZERS = {"fp": 32, "sign": 1, "xnor": 1, "int8": 8}
BINARY = ("bc", "bc_stochastic", "bwn")
TERNARY = ("twn", "ttq", "bitnet")


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
        table = WEIGHT_QUANTIZERS if self.kind == "weight" else INPUT_QUANTIZERS
        if self.kind not in ("weight", "input"):
            raise ValueError(f"quantizer kind must be 'weight' or 'input', got {self.kind!r}")
        if self.name not in table:
            raise ValueError(
                f"{self.kind} quantizer {self.name!r} unknown; choose one of {', '.join(table)}"
            )

    @property
    def bits(self) -> int:
        if self.kind == "weight":
            return WEIGHT_QUANTIZERS[self.name][0]
        return INPUT_QUANTIZERS[self.name]

    @property
    def clip_latent(self) -> bool:
        return self.kind == "weight" and WEIGHT_QUANTIZERS[self.name][1]

    @property
    def is_binary(self) -> bool:
        return self.bits == 1

    @property
    def is_ternary(self) -> bool:
        return self.kind == "weight" and self.name in TERNARY

    def option(self, key: str, default: Any = None) -> Any:
        return dict(self.options).get(key, default)


def as_spec(spec, kind: str = "weight", ste=None, ste_kwargs: Mapping | None = None) -> QuantizerSpec:
    """Resolve a name, dict or QuantizerSpec into a QuantizerSpec.

    ``ste``/``ste_kwargs`` set the estimator when ``spec`` is a name. A dict
    may hold ``name``, ``ste``, ``ste_kwargs`` and any extra options.
    The default estimator is "ste", except BinaryNet's "sign" input, which
    uses the clipped STE of the paper.
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
    if ste is None:
        ste = "clipped" if (kind == "input" and name == "sign") else "ste"
    if isinstance(ste, str) and ste not in ESTIMATORS:
        raise ValueError(f"estimator {ste!r} unknown; choose one of {', '.join(ESTIMATORS)}")
    estimator = get_estimator(ste, **dict(ste_kwargs or {}))
    return QuantizerSpec(name, kind, estimator, tuple(sorted(options.items())))
