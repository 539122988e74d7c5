"""The summary's energy estimate: the cost model applied to its own counts, by hand."""

import jax.numpy as jnp
import pytest
from flax import nnx

from extremeq.energy import HOROWITZ_45NM
from extremeq.nn import QuantLinear
from extremeq.summary import summary


class TwoLayer(nnx.Module):
    def __init__(self, rngs):
        self.stem = nnx.Linear(64, 32, use_bias=False, rngs=rngs)
        self.mid = QuantLinear(32, 16, use_bias=False, kernel_quantizer="bwn", input_quantizer="xnor", rngs=rngs)

    def __call__(self, x):
        return self.mid(self.stem(x))


def test_energy_of_a_float_and_an_xnor_layer_by_hand():
    s = summary(TwoLayer(nnx.Rngs(0)), jnp.zeros((1, 64)))
    e = s.energy()
    # float 64 x 32 MACs at 3.7 + 0.9 pJ; XNOR 32 x 16 at 0.03 / 8 pJ
    assert e.compute_total_pj == pytest.approx(64 * 32 * 4.6 + 32 * 16 * 0.00375)
    # weights: 64*32 float32 + 32*16 bits + 16 float32 BWN scales, at 640 / 4 pJ per byte
    assert s.packed_bytes == 64 * 32 * 4 + 32 * 16 // 8 + 16 * 4
    assert e.memory_pj == pytest.approx(s.packed_bytes * 160.0)
    assert "not a measurement" in str(s) and s.as_dict()["energy"]["total_pj"] == pytest.approx(e.total_pj)
    cheap = s.energy(table=HOROWITZ_45NM.__class__(**{**HOROWITZ_45NM.__dict__, "dram_read_32bit": 0.0}))
    assert cheap.total_pj == pytest.approx(e.compute_total_pj)
