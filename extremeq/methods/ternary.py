"""Ternary (2-bit) methods: TWN, TTQ, BitNet b1.58.

Weights                                                         codes T in {-1,0,1}   scales
  twn     alpha T(W), Delta = 0.7 mean|W| (Li et al. 2016)       T(W)                  alpha (per tensor)
  ttq     W_p / 0 / -W_n, Delta = t max|W|, learned W_p, W_n     T(W)                  w_p, w_n (parameters)
          (Zhu et al. 2017)
  bitnet  gamma RoundClip(W / gamma, -1, 1), gamma = mean|W|     RoundClip(W/gamma)    alpha = gamma
          (Ma et al. 2024)
"""

from __future__ import annotations

from extremeq import quantizers as Q
from extremeq.methods.registry import (
    Method,
    QArray,
    WeightMethod,
    no_scales,
    per_channel_scales,
    register,
)


def _twn_per_channel(spec) -> bool:
    return spec.option("per_channel", False)


def _twn(w, spec, *, scales, key):
    del scales, key
    return Q.twn(w, spec.estimator, per_channel=_twn_per_channel(spec))


def _twn_encode(w, spec, scales):
    del scales
    pc = _twn_per_channel(spec)
    delta = Q.twn_threshold(w, pc)
    return QArray(Q.ternary_codes(w, delta), {"alpha": Q.twn_scale(w, delta, pc)}, spec.name)


def _ttq_t(spec) -> float:
    return spec.option("t", Q.TTQ_THRESHOLD_FACTOR)


def _ttq(w, spec, *, scales, key):
    del key
    return Q.ttq(w, scales["ttq_wp"], scales["ttq_wn"], t=_ttq_t(spec), estimator=spec.estimator)


def _ttq_encode(w, spec, scales):
    return QArray(Q.ttq_codes(w, _ttq_t(spec)), {"w_p": scales["ttq_wp"], "w_n": scales["ttq_wn"]}, spec.name)


def _ttq_decode(q: QArray):
    return Q.ttq_decode(q.codes, q.scales["w_p"], q.scales["w_n"])


def _ttq_init(w, spec):
    w_p, w_n = Q.ttq_init_scales(w, _ttq_t(spec))
    return {"ttq_wp": w_p, "ttq_wn": w_n}


def _bitnet(w, spec, *, scales, key):
    del scales, key
    return Q.bitnet(w, spec.estimator)


def _bitnet_encode(w, spec, scales):
    del scales
    codes, gamma = Q.bitnet_codes(w)
    return QArray(codes, {"alpha": gamma}, spec.name)


register(
    WeightMethod(
        name="twn",
        bits=2,
        precision="ternary",
        forward=_twn,
        encode=_twn_encode,
        packing="ternary",
        scale_count=per_channel_scales(False),
        doc="TWN, alpha * T(W), Delta = 0.7 mean|W|",
    ),
    WeightMethod(
        name="ttq",
        bits=2,
        precision="ternary",
        forward=_ttq,
        encode=_ttq_encode,
        decode=_ttq_decode,
        packing="ttq",
        scale_count=no_scales,
        learned_scales=("ttq_wp", "ttq_wn"),
        init_scales=_ttq_init,
        doc="TTQ, W_p / 0 / -W_n with learned scales",
    ),
    WeightMethod(
        name="bitnet",
        bits=2,
        precision="ternary",
        forward=_bitnet,
        encode=_bitnet_encode,
        packing="ternary",
        scale_count=lambda spec, out_features: 1,
        doc="BitNet b1.58 absmean ternary",
    ),
    Method(name="twn", kernel="twn", doc="Ternary Weight Networks"),
    Method(name="ttq", kernel="ttq", doc="Trained Ternary Quantization"),
    Method(name="bitnet", kernel="bitnet", doc="BitNet b1.58"),
)
