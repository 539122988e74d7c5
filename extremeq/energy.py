"""Energy per inference from a cost model: MACs per precision x energy per MAC, plus the
weights read from DRAM x energy per byte. An **estimate from a cost table, not a measurement**.

    E = sum_p MACs_p * e_mac(p) + weight_bytes * e_dram_byte

Default table :data:`HOROWITZ_45NM` (Horowitz, "Computing's energy problem (and what we can do
about it)", ISSCC 2014, 45 nm, 0.9 V), in pJ:

==============================  =========  ========================================================
operation                       pJ         source
==============================  =========  ========================================================
32-bit float multiply            3.7        Horowitz 2014
32-bit float add                 0.9        Horowitz 2014
8-bit integer multiply           0.2        Horowitz 2014
8-bit integer add                0.03       Horowitz 2014
32-bit DRAM read                 640        Horowitz 2014, as tabulated by Han et al. (Deep
                                            Compression, ICLR 2016, Table 1); 160 pJ per byte
1-bit XNOR + popcount, per MAC   0.00375    derived here, not from a paper: a popcount tree over n
                                            bits needs about n full adders, and Horowitz's 8-bit
                                            add (8 full adders) costs 0.03 pJ, so about 0.03 / 8
                                            pJ per bit; the XNOR gate is ignored beside it. A
                                            cross-check: the XNORBIN accelerator (Bahou et al.,
                                            2018, 65 nm) reports 95 TOp/s/W, 10.5 fJ per op
                                            including its on-chip memory.
==============================  =========  ========================================================

Energy per MAC by the precision classes of :mod:`extremeq.summary` (weights / inputs):

* ``float`` (fp32 / fp32): multiply + add, 4.6 pJ.
* ``int8`` (int8 / int8): 8-bit multiply + 8-bit add, 0.23 pJ (accumulator width ignored).
* ``binary`` with real inputs (BinaryConnect, BWN): +-w x only flips a sign, so one fp32
  add, 0.9 pJ; the per-channel scale alpha is one multiply per output, not per MAC, ignored.
* ``ternary`` (TWN, TTQ, BitNet weights; real inputs): one fp32 add, 0.9 pJ (zeros are counted,
  not skipped: a dense accelerator's cost).
* ``xnor`` (binary weights and binary inputs): XNOR + popcount, 0.00375 pJ.

Memory traffic counts the packed weights read once from DRAM per inference (batch 1, nothing
cached on chip); activations are not counted. Replace any value with
``dataclasses.replace(HOROWITZ_45NM, fp32_add=...)`` or a new :class:`CostTable`.
"""

from __future__ import annotations

import dataclasses

from extremeq.methods import PRECISIONS

#: The precision classes a cost table prices: the built-in precisions of the method registry
#: (``extremeq.methods.PRECISIONS``, what the summary files MACs under), with ``xnor`` split off ``binary``.
MAC_CLASSES = (*PRECISIONS, "xnor")


@dataclasses.dataclass(frozen=True, kw_only=True)
class CostTable:
    """Energy per operation in picojoules (see the module docstring for sources)."""

    name: str
    fp32_mult: float
    fp32_add: float
    int8_mult: float
    int8_add: float
    dram_read_32bit: float
    xnor_popcount_mac: float

    def __post_init__(self):
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name != "name" and not (isinstance(v, (int, float)) and v >= 0):
                raise ValueError(f"CostTable.{f.name} must be a non-negative number of pJ, got {v!r}.")

    def mac(self, precision: str) -> float:
        """pJ per multiply-accumulate of a precision class (``MAC_CLASSES``)."""
        table = {
            "float": self.fp32_mult + self.fp32_add,
            "int8": self.int8_mult + self.int8_add,
            "binary": self.fp32_add,
            "ternary": self.fp32_add,
            "xnor": self.xnor_popcount_mac,
        }
        if precision not in table:
            raise ValueError(f"precision {precision!r} unknown; choose one of {', '.join(MAC_CLASSES)}.")
        return table[precision]

    @property
    def dram_byte(self) -> float:
        """pJ per byte read from DRAM (a 32-bit read / 4)."""
        return self.dram_read_32bit / 4


HOROWITZ_45NM = CostTable(
    name="Horowitz ISSCC 2014, 45 nm",
    fp32_mult=3.7,
    fp32_add=0.9,
    int8_mult=0.2,
    int8_add=0.03,
    dram_read_32bit=640.0,
    xnor_popcount_mac=0.03 / 8,
)


@dataclasses.dataclass(frozen=True)
class EnergyEstimate:
    """Estimated energy of one inference, in pJ, split into compute per class and weight traffic."""

    compute_pj: dict  # MAC class -> pJ
    memory_pj: float
    table: CostTable
    unpriced_macs: dict = dataclasses.field(default_factory=dict)  # precision the table has no price for -> MACs

    @property
    def compute_total_pj(self) -> float:
        return float(sum(self.compute_pj.values()))

    @property
    def total_pj(self) -> float:
        return self.compute_total_pj + self.memory_pj

    def as_dict(self) -> dict:
        return {
            "table": self.table.name,
            "compute_pj": dict(self.compute_pj),
            "memory_pj": self.memory_pj,
            "total_pj": self.total_pj,
            "unpriced_macs": dict(self.unpriced_macs),
        }

    def __str__(self) -> str:
        text = (
            f"estimated energy per inference (cost model {self.table.name!r}, not a measurement): "
            f"compute {self.compute_total_pj / 1e6:.4g} uJ + weight DRAM reads "
            f"{self.memory_pj / 1e6:.4g} uJ = {self.total_pj / 1e6:.4g} uJ"
        )
        if self.unpriced_macs:
            text += f"; not priced (no entry in the table, left out): {self.unpriced_macs} MACs"
        return text


def estimate_energy(macs: dict, xnor_macs: int, weight_bytes: int, table: CostTable = HOROWITZ_45NM) -> EnergyEstimate:
    """Energy of one inference from MAC counts and weight bytes (formula in the module docstring).

    Args:
      macs: MACs per weight precision (as ``Summary.total_macs()``); the registry's built-in
        precisions (``extremeq.methods.PRECISIONS``: binary, ternary, int8, float) are priced,
        ``binary`` including the XNOR ones; any other precision (one a registered method names
        for itself) is reported in ``unpriced_macs`` and left out of the total.
      xnor_macs: the binary MACs whose inputs are binary too (priced as XNOR + popcount).
      weight_bytes: bytes of the (packed) weights read from DRAM.
      table: the cost table (default :data:`HOROWITZ_45NM`).
    """
    priced = PRECISIONS
    unpriced = {p: int(n) for p, n in macs.items() if p not in priced and n}
    counts = {p: int(macs.get(p, 0)) for p in priced}
    if (
        min(counts.values(), default=0) < 0
        or min(unpriced.values(), default=0) < 0
        or xnor_macs < 0
        or weight_bytes < 0
    ):
        raise ValueError(
            f"counts must be non-negative, got macs={macs}, xnor_macs={xnor_macs}, weight_bytes={weight_bytes}."
        )
    if xnor_macs > counts["binary"]:
        raise ValueError(
            f"xnor_macs ({xnor_macs}) exceeds the binary MACs ({counts['binary']}): the "
            "XNOR MACs are a part of the binary ones."
        )
    counts["binary"] -= int(xnor_macs)
    counts["xnor"] = int(xnor_macs)
    compute = {p: n * table.mac(p) for p, n in counts.items()}
    return EnergyEstimate(compute, float(weight_bytes) * table.dram_byte, table, unpriced)
