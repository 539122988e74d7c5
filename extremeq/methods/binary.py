"""Binary (1-bit) methods: BinaryConnect, stochastic BinaryConnect, BWN; sign and XNOR inputs.

Weights                                                     codes       scales
  bc             sign(W) (Courbariaux et al. 2015)           sign(W)     -
  bc_stochastic  +1 w.p. hard_sigmoid(W); eval: sign(W),     sign(W)     -
                 or E[w_b] = clip(W, -1, 1) (option eval="mean", Sec. 2.6; not a 1-bit net)
  bwn            alpha sign(W), alpha = mean|W| (XNOR-Net)   sign(W)     alpha per output channel
Inputs
  sign           BinaryNet sign(x), clipped STE by default
  xnor           XNOR-Net sign(x) with the K-map input scale
Methods: bc, bc_stochastic, bwn, xnor (bwn + xnor inputs), bnn (bc + sign inputs).
"""

from __future__ import annotations

import jax.numpy as jnp

from extremeq import quantizers as Q
from extremeq.methods.registry import (
    InputMethod,
    Method,
    QArray,
    WeightMethod,
    per_channel_scales,
    register,
)
from extremeq.ste import sign


def _bc(w, spec, *, scales, key):
    del scales, key
    return Q.binary_connect(w, spec.estimator)


def _bc_stochastic(w, spec, *, scales, key):
    del scales
    if key is not None:
        return Q.binary_connect_stochastic(w, key, spec.estimator)
    if spec.option("eval", "sign") == "mean":
        # E[w_b] = 2 hard_sigmoid(w) - 1 = clip(w, -1, 1): BinaryConnect's test-time use of the
        # real-valued weights for the stochastic variant (Courbariaux et al. 2015, Sec. 2.6).
        return jnp.clip(w, -1.0, 1.0)
    return Q.binary_connect(w, spec.estimator)  # the deployable net: deterministic sign


def _sign_encode(w, spec, scales):
    del scales
    return QArray(sign(w), {}, spec.name)


def _bwn_per_channel(spec) -> bool:
    return spec.option("per_channel", True)


def _bwn(w, spec, *, scales, key):
    del scales, key
    return Q.bwn(w, spec.estimator, per_channel=_bwn_per_channel(spec))


def _bwn_encode(w, spec, scales):
    del scales
    return QArray(sign(w), {"alpha": Q.bwn_scale(w, per_channel=_bwn_per_channel(spec))}, spec.name)


def _sign_inputs(x, spec, *, kernel_size=None, strides=1, padding="SAME"):
    del kernel_size, strides, padding
    return Q.sign_activation(x, spec.estimator), None


def _xnor_inputs(x, spec, *, kernel_size=None, strides=1, padding="SAME"):
    return Q.xnor_activation(x, spec.estimator, kernel_size, strides, padding)


register(
    WeightMethod(
        name="bc",
        bits=1,
        precision="binary",
        forward=_bc,
        encode=_sign_encode,
        clip_latent=True,
        packing="binary",
        doc="BinaryConnect, sign(W)",
    ),
    WeightMethod(
        name="bc_stochastic",
        bits=1,
        precision="binary",
        forward=_bc_stochastic,
        encode=_sign_encode,
        clip_latent=True,
        stochastic=True,
        packing="binary",
        doc="BinaryConnect, stochastic sign (needs a key)",
    ),
    WeightMethod(
        name="bwn",
        bits=1,
        precision="binary",
        forward=_bwn,
        encode=_bwn_encode,
        packing="binary",
        scale_count=per_channel_scales(True),
        doc="BWN, mean|W| * sign(W), per output channel",
    ),
    InputMethod(
        name="sign",
        bits=1,
        precision="binary",
        forward=_sign_inputs,
        default_estimator="clipped",
        doc="BinaryNet sign(x), no scale",
    ),
    InputMethod(
        name="xnor", bits=1, precision="binary", forward=_xnor_inputs, doc="XNOR-Net sign(x) with the K-map scale"
    ),
    Method(name="bc", kernel="bc", doc="BinaryConnect (deterministic)"),
    Method(name="bc_stochastic", kernel="bc_stochastic", doc="BinaryConnect (stochastic)"),
    Method(name="bwn", kernel="bwn", doc="Binary Weight Networks"),
    Method(name="xnor", kernel="bwn", input="xnor", doc="XNOR-Net: BWN weights, XNOR inputs"),
    Method(name="bnn", kernel="bc", input="sign", doc="BinaryNet: sign weights, sign inputs"),
)
