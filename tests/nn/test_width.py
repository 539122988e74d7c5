"""Wider networks: ``width_multiplier`` scales the zoo's channel plans; a 2x-wide binary ResNet-20
is still many times smaller than the 1x float one (packed bytes by hand)."""

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from extremeq.nn import method_rules, quantize_model
from extremeq.nn.models import build_model
from extremeq.summary import summary


def n_params(model) -> int:
    return int(sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param))))


@pytest.mark.parametrize(
    "name,base,shape",
    [
        ("resnet20", 16, (32, 32, 3)),
        ("vgg7", 128, (32, 32, 3)),
        ("resnet18", 64, (64, 64, 3)),
        ("bireal_resnet20", 16, (32, 32, 3)),
    ],
)
def test_multiplier_equals_the_scaled_width(name, base, shape):
    def build(**kw):
        return nnx.eval_shape(lambda: build_model({"name": name, **kw}, 10, shape, nnx.Rngs(0)))

    assert n_params(build(width_multiplier=2)) == n_params(build(width=2 * base))
    assert n_params(build(width_multiplier=1.5)) == n_params(build(width=round(1.5 * base)))


def test_2x_wide_xnor_resnet20_is_still_6x_smaller_than_float():
    def packed(mult, method):
        m = build_model({"name": "resnet20", "width_multiplier": mult}, 10, (32, 32, 3), nnx.Rngs(0))
        quantize_model(m, method_rules(method))
        return summary(m, jnp.zeros((1, 32, 32, 3))).packed_bytes

    # by hand, width w: 3x3 convs (w,w)x6, (w,2w), (2w,2w)x5, (2w,4w), (4w,4w)x5; BN keeps 4 floats
    # per channel (scale, bias, running mean, var); stem 3x3x3xw, head 4w x 10 + 10.
    def fp_bytes(w):
        convs = [(w, w)] * 6 + [(w, 2 * w)] + [(2 * w, 2 * w)] * 5 + [(2 * w, 4 * w)] + [(4 * w, 4 * w)] * 5
        k = sum(9 * a * b for a, b in convs)
        bn = 4 * (w + sum(b for _, b in convs))
        return 4 * (k + bn + 27 * w + 40 * w + 10), convs, bn

    fp1, _, _ = fp_bytes(16)
    _, convs, bn = fp_bytes(32)
    xnor2 = sum(9 * a * b for a, b in convs) // 8 + 4 * sum(b for _, b in convs)  # bits + BWN scales
    xnor2 += 4 * (bn + 27 * 32 + 40 * 32 + 10)  # float stem, head, BN
    assert packed(1, "fp") == fp1
    assert packed(2, "xnor") == xnor2
    assert fp1 / xnor2 > 6  # 4x the weights at 1/32 of the bits each


def test_bad_multiplier():
    with pytest.raises(ValueError, match="no channel width"):
        build_model({"name": "mlp", "width_multiplier": 2}, 10, (8, 8), nnx.Rngs(0))
    with pytest.raises(ValueError, match="positive number"):
        build_model({"name": "resnet20", "width_multiplier": 0}, 10, (32, 32, 3), nnx.Rngs(0))
