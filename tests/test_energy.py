"""The energy cost model against hand-computed closed forms."""

import dataclasses

import pytest

from extremeq.energy import HOROWITZ_45NM, CostTable, estimate_energy


def test_default_table_values_are_the_papers():
    t = HOROWITZ_45NM
    assert (t.fp32_mult, t.fp32_add, t.int8_mult, t.int8_add, t.dram_read_32bit) == (3.7, 0.9, 0.2, 0.03, 640.0)
    assert t.xnor_popcount_mac == pytest.approx(0.00375)
    assert t.dram_byte == 160.0
    assert t.mac("float") == pytest.approx(4.6)
    assert t.mac("int8") == pytest.approx(0.23)
    assert t.mac("binary") == t.mac("ternary") == 0.9


def test_estimate_closed_form():
    e = estimate_energy({"float": 1000, "binary": 500, "ternary": 200, "int8": 100}, xnor_macs=300, weight_bytes=64)
    # 1000 x 4.6 + 200 x 0.9 (binary, real inputs) + 300 x 0.00375 + 200 x 0.9 + 100 x 0.23
    assert e.compute_pj == pytest.approx(
        {"float": 4600.0, "binary": 180.0, "xnor": 1.125, "ternary": 180.0, "int8": 23.0}
    )
    assert e.memory_pj == 64 * 160.0
    assert e.total_pj == pytest.approx(4600 + 180 + 1.125 + 180 + 23 + 10240)
    assert "not a measurement" in str(e)


def test_a_float_layer_against_its_binary_twin():
    """784 x 256 dense layer: float 200,704 MACs at 4.6 pJ + 802,816 bytes at 160 pJ; the XNOR
    twin 200,704 x 0.00375 pJ + 25,088 bytes (1 bit per weight) + 1 KiB of scales."""
    macs = 784 * 256
    fp = estimate_energy({"float": macs}, 0, 4 * macs)
    xn = estimate_energy({"binary": macs}, macs, macs // 8 + 4 * 256)
    assert fp.total_pj == pytest.approx(macs * 4.6 + 4 * macs * 160)
    assert xn.total_pj == pytest.approx(macs * 0.00375 + (macs // 8 + 1024) * 160)
    assert fp.total_pj / xn.total_pj == pytest.approx((4.6 + 640) / (0.00375 + (1 / 8 + 1024 / macs) * 160), rel=1e-9)


def test_user_table_replaces_values():
    t = dataclasses.replace(HOROWITZ_45NM, name="mine", xnor_popcount_mac=0.01, dram_read_32bit=0.0)
    e = estimate_energy({"binary": 10}, 10, 1000, table=t)
    assert e.total_pj == pytest.approx(0.1) and e.table.name == "mine"


def test_bad_inputs():
    with pytest.raises(ValueError, match="part of the binary"):
        estimate_energy({"binary": 5}, 6, 0)
    e = estimate_energy({"float": 2, "fp16": 5}, 0, 0)  # a registered method's own precision
    assert e.unpriced_macs == {"fp16": 5} and e.total_pj == pytest.approx(9.2) and "not priced" in str(e)
    with pytest.raises(ValueError, match="non-negative"):
        estimate_energy({"float": -1}, 0, 0)
    with pytest.raises(ValueError, match="non-negative"):
        dataclasses.replace(HOROWITZ_45NM, fp32_add=-1.0)
    with pytest.raises(ValueError, match="choose one of"):
        HOROWITZ_45NM.mac("bf16")
    with pytest.raises(TypeError):
        CostTable(name="incomplete")
