"""The summary's numbers equal a hand count on a small model."""

import jax.numpy as jnp
from flax import nnx

from extremeq.nn import method_rules, quantize_model
from extremeq.summary import summary


class Small(nnx.Module):
    def __init__(self, rngs):
        self.stem = nnx.Conv(1, 4, (3, 3), padding="SAME", rngs=rngs)  # 36 + 4 params
        self.bn = nnx.BatchNorm(4, rngs=rngs)  # 4 scale + 4 bias (+ 8 running stats)
        self.body = nnx.Conv(4, 8, (3, 3), strides=2, padding="SAME", rngs=rngs)  # 288 + 8
        self.fc = nnx.Linear(128, 16, rngs=rngs)  # 2048 + 16
        self.head = nnx.Linear(16, 10, rngs=rngs)  # 160 + 10

    def __call__(self, x):
        x = self.bn(self.stem(x))
        x = self.body(x)
        return self.head(self.fc(x.reshape(x.shape[0], -1)))


def test_hand_count_xnor_model():
    m = Small(nnx.Rngs(0))
    quantize_model(m, method_rules("xnor"))
    s = summary(m, jnp.zeros((1, 8, 8, 1)))
    assert [r.path for r in s.rows] == ["stem", "bn", "body", "fc", "head"]  # forward order
    assert s.total_params() == {1: 288 + 2048, 32: 40 + 16 + 8 + 16 + 170}
    # MACs: stem 8*8*9*1*4 = 2304 float; body 4*4*9*4*8 = 4608 binary; fc 2048 binary; head 160 float
    assert s.total_macs() == {"binary": 4608 + 2048, "ternary": 0, "int8": 0, "float": 2304 + 160}
    assert s.xnor_macs == 4608 + 2048
    # packed: body 288/8 = 36 B + (8 bias + 8 alphas) * 4; fc 2048/8 = 256 B + (16 + 16) * 4
    packed = (36 + 64) + (256 + 128) + 4 * (40 + 16 + 170)
    assert s.packed_bytes == packed
    assert s.float32_bytes == 4 * (288 + 2048 + 40 + 16 + 8 + 16 + 170)
    assert abs(s.compression - s.float32_bytes / packed) < 1e-12
    assert "compression" in str(s)


def test_hand_count_ternary_and_int8():
    m = Small(nnx.Rngs(0))
    quantize_model(m, method_rules("ttq", first="int8", last="int8"))
    s = summary(m, jnp.zeros((3, 8, 8, 1)))
    assert s.total_params() == {2: 288 + 2048, 8: 36 + 160, 32: 4 + 16 + 10 + 8 + 16 + 2 * 2}
    assert s.total_macs() == {"binary": 0, "ternary": 4608 + 2048, "int8": 2304 + 160, "float": 0}
    # ttq kernels: ceil(2 n / 8) bytes; int8: n bytes + per-channel scales
    packed = (72 + 4 * (8 + 2)) + (512 + 4 * (16 + 2)) + (36 + 4 * (4 + 4)) + (160 + 4 * (10 + 10)) + 4 * 16
    assert s.packed_bytes == packed
