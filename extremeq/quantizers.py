"""Binary, ternary and int8 quantizers as pure functions.

Each quantizer returns the *fake-quantized* tensor (the values the forward pass
multiplies with, scale included) and takes its straight-through estimator as an
argument (``extremeq.ste.Estimator`` or a name). They know nothing of Flax and
can be called from NNX, linen or plain JAX code.

Axis convention for weights: ``channel_axis`` is the output-channel axis
(-1 for Flax ``Dense``/``Conv`` kernels, which are [in, out] and HWIO). A
``per_channel`` statistic reduces over every other axis (a 0-d array is one channel).

Non-finite values follow the rule of ``extremeq.ste``: NaN in, NaN out (a NaN or infinite
scale or threshold makes the whole output NaN), so a diverged run is never quantized into
finite numbers that a NaN guard cannot see.

Papers:
  BinaryConnect  Courbariaux, Bengio, David (2015)
  BWN / XNOR-Net Rastegari, Ordonez, Redmon, Farhadi (2016)
  TWN            Li, Zhang, Liu (2016)
  TTQ            Zhu, Han, Mao, Dally (2017)
  BitNet b1.58   Ma et al. (2024)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from extremeq.ste import Estimator, get_estimator, nan_where, sign, straight_through  # noqa: F401  (sign re-exported)

EstimatorLike = Estimator | str


def _reduce_axes(x, per_channel: bool, channel_axis: int):
    if not per_channel:
        return None
    if x.ndim == 0:
        return ()  # a scalar is its own single channel: reduce over nothing
    channel_axis = channel_axis % x.ndim
    return tuple(a for a in range(x.ndim) if a != channel_axis)


# ---------------------------------------------------------------- BinaryConnect
def binary_connect(w, estimator: EstimatorLike = "ste"):
    """Deterministic BinaryConnect: w_b = sign(w) (sign(0) = +1), no scale."""
    return get_estimator(estimator)(w)


def hard_sigmoid(x):
    """sigma(x) = clip((x + 1) / 2, 0, 1), BinaryConnect's binarization probability."""
    return jnp.clip((x + 1.0) / 2.0, 0.0, 1.0)


def _stochastic_forward(w, key):
    p = hard_sigmoid(w)
    u = jax.random.uniform(key, w.shape, dtype=jnp.float32)
    return nan_where(jnp.isnan(w), jnp.where(u < p, 1, -1).astype(w.dtype))


def binary_connect_stochastic(w, key, estimator: EstimatorLike = "ste"):
    """Stochastic BinaryConnect: w_b = +1 with probability hard_sigmoid(w), else -1.

    The backward pass uses ``estimator.grad(w)`` as for the deterministic sign.
    ``key`` is a ``jax.random`` key; it is required.
    """
    if key is None:
        raise ValueError(
            "binary_connect_stochastic needs a PRNG key: pass key=jax.random.key(seed) "
            "(in a layer: rngs=nnx.Rngs(quant=seed)), or use the deterministic 'bc'."
        )
    return straight_through(_stochastic_forward, get_estimator(estimator), w, key)


# ------------------------------------------------------------------------ BWN
def bwn_scale(w, per_channel: bool = True, channel_axis: int = -1):
    """alpha = mean|W| (per tensor, or per output channel).

    This is the L2-optimal scale of XNOR-Net eq. (4):
    argmin_alpha ||W - alpha sign(W)||^2 = sum|W| / n.
    """
    axes = _reduce_axes(w, per_channel, channel_axis)
    return jnp.mean(jnp.abs(w), axis=axes, keepdims=per_channel)


def bwn(w, estimator: EstimatorLike = "ste", per_channel: bool = True, channel_axis: int = -1):
    """Binary Weight Network: W_b = alpha * sign(W), alpha = mean|W|.

    The gradient flows through alpha by autodiff and through sign by the STE.
    """
    return bwn_scale(w, per_channel, channel_axis) * get_estimator(estimator)(w)


# ------------------------------------------------------------ XNOR activations
def xnor_activation_scale(x, kernel_size=None, strides=1, padding="SAME"):
    """XNOR-Net scale of binary inputs (section 3.2).

    Dense inputs [..., C]: beta = mean over C of |x|, shape [..., 1].
    Conv inputs NHWC with ``kernel_size`` (kh, kw): A = mean_c |X| (one value
    per spatial location), then K = A * k with k a (kh x kw) box filter of
    1/(kh kw), applied with the convolution's strides and padding, so K has the
    conv output's spatial shape, [N, H', W', 1].
    """
    a = jnp.mean(jnp.abs(x), axis=-1, keepdims=True)
    if kernel_size is None:
        return a
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
    sh, sw = (strides, strides) if isinstance(strides, int) else tuple(strides)
    pads = padding if isinstance(padding, str) else ((0, 0), *(tuple(p) for p in padding), (0, 0))
    # A box filter is a windowed sum; reduce_window is cheaper than a 1-channel convolution.
    window_sum = jax.lax.reduce_window(a, 0.0, jax.lax.add, (1, kh, kw, 1), (1, sh, sw, 1), pads)
    return window_sum / (kh * kw)


def xnor_activation(x, estimator: EstimatorLike = "ste", kernel_size=None, strides=1, padding="SAME"):
    """XNOR-Net input binarization: returns (sign(x), K).

    The layer computes ``(sign(x) (*) sign(W)) * K * alpha``; the scale K is
    treated as a constant on the backward pass, as in XNOR-Net.
    """
    k = jax.lax.stop_gradient(xnor_activation_scale(x, kernel_size, strides, padding))
    return get_estimator(estimator)(x), k


def sign_activation(x, estimator: EstimatorLike = "clipped"):
    """BinaryNet activation: sign(x), no scale (default clipped STE as in the paper)."""
    return get_estimator(estimator)(x)


# ------------------------------------------------------------------------ TWN
TWN_DELTA_FACTOR = 0.7


def twn_threshold(w, per_channel: bool = False, channel_axis: int = -1):
    """Delta = 0.7 * mean|W| (TWN eq. (9), the approximation for uniform/normal W)."""
    axes = _reduce_axes(w, per_channel, channel_axis)
    return TWN_DELTA_FACTOR * jnp.mean(jnp.abs(w), axis=axes, keepdims=per_channel)


def twn_scale(w, delta, per_channel: bool = False, channel_axis: int = -1):
    """alpha = mean of |W_i| over I_Delta = {i : |W_i| > Delta} (TWN eq. (6))."""
    axes = _reduce_axes(w, per_channel, channel_axis)
    mask = (jnp.abs(w) > delta).astype(w.dtype)
    total = jnp.sum(jnp.abs(w) * mask, axis=axes, keepdims=per_channel)
    count = jnp.sum(mask, axis=axes, keepdims=per_channel)
    return total / jnp.maximum(count, 1.0)


def ternary_codes(w, delta):
    """T(W) in {-1, 0, +1}: sign(W) where |W| > Delta, else 0.

    NaN where W is NaN, and everywhere when Delta is NaN or infinite (a kernel holding a NaN or
    an Inf has such a Delta), instead of the all-zero codes the comparisons alone would give.
    """
    t = jnp.where(w > delta, 1, jnp.where(w < -delta, -1, 0)).astype(w.dtype)
    return nan_where(jnp.isnan(w) | ~jnp.isfinite(delta), t)


def _ternary_forward(w, delta):
    return ternary_codes(w, delta)


def twn(w, estimator: EstimatorLike = "ste", per_channel: bool = False, channel_axis: int = -1):
    """Ternary Weight Network: W_t = alpha * T(W) with Delta, alpha as above.

    Delta is a constant on the backward pass; alpha is differentiated by
    autodiff; T passes gradients by the estimator (identity for ``ste``).
    """
    est = get_estimator(estimator)
    delta = jax.lax.stop_gradient(twn_threshold(w, per_channel, channel_axis))
    alpha = twn_scale(w, delta, per_channel, channel_axis)
    return alpha * straight_through(_ternary_forward, est, w, delta)


# ------------------------------------------------------------------------ TTQ
TTQ_THRESHOLD_FACTOR = 0.05


def ttq_threshold(w, t: float = TTQ_THRESHOLD_FACTOR):
    """Delta_l = t * max|W_l| (TTQ eq. (6)), one threshold per layer."""
    return t * jnp.max(jnp.abs(w))


def ttq(w, w_p, w_n, t: float = TTQ_THRESHOLD_FACTOR, estimator: EstimatorLike = "ste"):
    """Trained Ternary Quantization: W_t = W_p on I_p, -W_n on I_n, 0 elsewhere.

    I_p = {i : w_i > Delta}, I_n = {i : w_i < -Delta}, Delta = t * max|w|;
    W_p, W_n > 0 are learned (scalars per layer). Gradients (TTQ eq. (7), (8)):

      dL/dW_p = sum_{i in I_p} dL/dW_t(i)
      dL/dW_n = -sum_{i in I_n} dL/dW_t(i)   (the value there is -W_n; the
                                               paper writes the magnitude)
      dL/dw_i = W_p * dL/dW_t(i)   on I_p
                1   * dL/dW_t(i)   on I_z = {|w_i| <= Delta}
                W_n * dL/dW_t(i)   on I_n

    (times ``estimator.grad(w)``, which is 1 for the default ``ste``).
    """
    return _ttq(get_estimator(estimator), float(t), w, w_p, w_n)


def ttq_codes(w, t: float = TTQ_THRESHOLD_FACTOR):
    """T(W) in {-1, 0, +1} with TTQ's threshold Delta = t max|W| (the codes export packs)."""
    return ternary_codes(w, ttq_threshold(w, t))


def ttq_decode(codes, w_p, w_n):
    """W_t = W_p where T = +1, -W_n where T = -1, 0 where T = 0 (NaN where T is NaN)."""
    out = jnp.where(codes > 0, w_p, jnp.where(codes < 0, -w_n, 0)).astype(jnp.result_type(codes, w_p, w_n))
    return nan_where(jnp.isnan(codes), out)


@jax.custom_vjp
def _ttq_core(w, w_p, w_n, t, grad_w_factor):
    return ttq_decode(ttq_codes(w, t), w_p, w_n)


def _ttq(estimator, t, w, w_p, w_n):
    return _ttq_core(w, w_p, w_n, jnp.asarray(t, w.dtype), estimator.grad(jax.lax.stop_gradient(w)))


def _ttq_fwd(w, w_p, w_n, t, grad_w_factor):
    codes = ttq_codes(w, t)
    pos = (codes > 0).astype(w.dtype)
    neg = (codes < 0).astype(w.dtype)
    return ttq_decode(codes, w_p, w_n), (pos, neg, w_p, w_n, t, grad_w_factor)


def _ttq_bwd(residuals, g):
    pos, neg, w_p, w_n, t, factor = residuals
    zero = 1.0 - pos - neg
    g_w = g * (w_p * pos + w_n * neg + zero) * factor
    g_wp = _unbroadcast(g * pos, jnp.shape(w_p))
    g_wn = -_unbroadcast(g * neg, jnp.shape(w_n))
    return g_w, g_wp, g_wn, jnp.zeros_like(t), jnp.zeros_like(factor)


def _unbroadcast(x, shape):
    """Sum x down to ``shape`` (the reverse of broadcasting a scale of that shape)."""
    lead = x.ndim - len(shape)
    x = jnp.sum(x, axis=tuple(range(lead))) if lead else x
    axes = tuple(a for a, n in enumerate(shape) if n == 1 and x.shape[a] != 1)
    return jnp.sum(x, axis=axes, keepdims=True).reshape(shape)


_ttq_core.defvjp(_ttq_fwd, _ttq_bwd)


def ttq_init_scales(w, t: float = TTQ_THRESHOLD_FACTOR):
    """Initial (W_p, W_n): mean of w over I_p and of |w| over I_n (TTQ fine-tuning start).

    (NaN, NaN) when w holds a NaN or an Inf.
    """
    codes = ttq_codes(w, t)
    pos, neg = codes > 0, codes < 0
    w_p = jnp.sum(jnp.where(pos, w, 0)) / jnp.maximum(jnp.sum(pos), 1)
    w_n = jnp.sum(jnp.where(neg, -w, 0)) / jnp.maximum(jnp.sum(neg), 1)
    bad = ~jnp.isfinite(ttq_threshold(w, t))
    return nan_where(bad, w_p), nan_where(bad, w_n)


# ---------------------------------------------------------------- BitNet b1.58
def bitnet_scale(w, eps: float = 1e-5):
    """gamma = mean|W| (BitNet b1.58 absmean)."""
    return jnp.mean(jnp.abs(w)) + eps


def round_clip(x, lo, hi):
    """RoundClip(x, lo, hi) = min(max(round(x), lo), hi) (BitNet b1.58 eq. (1)); NaN stays NaN."""
    return jnp.clip(jnp.round(x), lo, hi)


def _bitnet_round(u, aux=None):
    del aux
    return round_clip(u, -1, 1)


def bitnet(w, estimator: EstimatorLike = "ste", eps: float = 1e-5):
    """BitNet b1.58 absmean ternary: W_q = gamma * RoundClip(W / gamma, -1, 1).

    gamma = mean|W| + eps. Rounding passes the gradient straight through.
    """
    codes, gamma = bitnet_codes(w, eps, estimator)
    return gamma * codes


def bitnet_codes(w, eps: float = 1e-5, estimator: EstimatorLike | None = None):
    """The integer codes RoundClip(W / gamma, -1, 1) in {-1, 0, 1} and gamma.

    With an ``estimator`` the rounding passes the gradient through it and gamma is a constant on
    the backward pass (dc/dW = 1 / gamma inside the clip range for the STE), as in :func:`bitnet`.
    """
    if estimator is None:
        gamma = bitnet_scale(w, eps)
        return _bitnet_round(w / gamma), gamma
    gamma = jax.lax.stop_gradient(bitnet_scale(w, eps))
    return straight_through(_bitnet_round, get_estimator(estimator), w / gamma, None), gamma


def bitnet_1bit_codes(w, estimator: EstimatorLike | None = None):
    """The original BitNet's 1-bit weights (Wang et al., 2023, Eq. 1-3): codes sign(W - mean(W))
    in {-1, +1} (sign(0) = +1) and beta = mean|W| (one scale per tensor), W_q = beta * codes.

    With an ``estimator`` the codes are ``estimator((W - mean W) / beta)`` with mean(W) and beta
    constants on the backward pass (sign is scale-free; dividing by beta makes d(beta c)/dW = 1
    for the STE, as for the ternary codes)."""
    if estimator is None:
        return sign(w - jnp.mean(w)), bwn_scale(w, per_channel=False)
    centre = jax.lax.stop_gradient(jnp.mean(w))
    beta = jax.lax.stop_gradient(bwn_scale(w, per_channel=False))
    return get_estimator(estimator)((w - centre) / beta), beta


# ------------------------------------------------------------------------ int8
INT8_MAX = 127


def int8_scale(x, axes=None, keepdims=False):
    """s = max|x| / 127 over ``axes`` (symmetric), never zero (an empty x gives the floor)."""
    amax = jnp.max(jnp.abs(x), axis=axes, keepdims=keepdims, initial=0.0)
    return jnp.maximum(amax, 1e-8) / INT8_MAX


def int8_weight_scale(w, per_channel: bool = True, channel_axis: int = -1):
    """s of int8 weights: per output channel (kept dims, broadcasts against w) or per tensor."""
    return int8_scale(w, _reduce_axes(w, per_channel, channel_axis), keepdims=per_channel)


def _int8_round(u, aux=None):
    del aux
    return round_clip(u, -INT8_MAX, INT8_MAX)


def int8_codes(x, s, estimator: EstimatorLike | None = None):
    """q = clip(round(x / s), -127, 127): the integers an int8 tensor stores (as floats).

    With an ``estimator`` the rounding passes the gradient through it (s is then a constant)."""
    if estimator is None:
        return _int8_round(x / s)
    return straight_through(_int8_round, get_estimator(estimator), x / s, None)


def _int8_fake_quant(x, s, estimator):
    s = jax.lax.stop_gradient(s)
    return s * straight_through(_int8_round, get_estimator(estimator), x / s, None)


def int8(x, estimator: EstimatorLike = "ste", per_channel: bool = True, channel_axis: int = -1):
    """Symmetric int8 fake-quant of weights: s * clip(round(x / s), -127, 127).

    s = max|x| / 127 per output channel (or per tensor). Rounding uses the STE.
    """
    return _int8_fake_quant(x, int8_weight_scale(x, per_channel, channel_axis), estimator)


def int8_activation(x, estimator: EstimatorLike = "ste"):
    """Symmetric int8 fake-quant of activations, one absmax scale per example.

    The scale is taken over every axis but the first (batch) axis, so an
    example's result does not depend on the rest of the batch.
    """
    axes = tuple(range(1, x.ndim)) if x.ndim > 1 else None
    return _int8_fake_quant(x, int8_scale(x, axes, keepdims=True), estimator)
