"""Prototype: faster ResNet train-step convolution formulations on XLA:CPU (issue 18, item 2).

XLA:CPU computes a convolution's filter gradient as a dot of two *transposed copies* (activations
to [C, H, W, N]), and it fuses the BatchNorm + ReLU + residual chain that produced the activation
into that transpose, recomputing it; ``experiments/profile_train.py`` measured these transposes at
about half of the step. The formulations here replace ``jax.lax.conv_general_dilated`` (3x3 and
1x1 NHWC/HWIO convolutions, no dilation, one group) by a ``jax.custom_vjp`` whose

* ``barrier``: XLA's convolution of ``jax.lax.optimization_barrier(x)``: the input is materialized
  once, so the filter gradient's transpose reads it instead of recomputing the chain behind it
  (XLA:CPU removes the barrier before fusion: no effect),
* ``cond``: the same with an identity ``lax.cond`` on a runtime predicate, which fusion cannot cross,
* ``lax``: forward = backward-input = XLA's convolution (the current step, for reference),
* ``dw_patches``: forward and backward-input by XLA's convolution; filter gradient
  dW[(kh, kw, c), o] = sum_{n, h, w} P[(n, h, w), (kh, kw, c)] dy[(n, h, w), o] with P the
  im2col patches of the (padded) input: one dot over the rows, no transposed activation copies,
* ``dw_taps``: the same sum as nine dots, one per tap (kh, kw), of strided slices (no patch matrix),
* ``patches``: forward y = P W and filter gradient as ``dw_patches``; input gradient
  dx = col2im(dy W^T) (the nine taps of dy W^T added back at their shifted positions),

all exact up to float summation order. The script checks each against ``lax`` on one step (loss,
gradients) and times the full train step (``bench_train.build_step``) round-robin.

    python experiments/proto_conv_train.py --steps 10 --variants lax,dw_patches,dw_taps,patches
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

_LAX_CONV = jax.lax.conv_general_dilated
MATERIALIZE = True  # variants keep extremeq.nn.conv.materialize on the conv input (as the production step)
_NHWC = ("NHWC", "HWIO", "NHWC")


def _pads(shape_hw, k, s, padding):
    if isinstance(padding, str):
        return jax.lax.padtype_to_pads(shape_hw, k, s, padding)
    return [tuple(p) for p in padding]


def _taps(xp, k, s, out_hw):
    """The kh*kw strided slices of the padded input, each [N, Ho, Wo, C], in (kh, kw) order."""
    (kh, kw), (sh, sw), (ho, wo) = k, s, out_hw
    n, _, _, c = xp.shape
    return [
        jax.lax.slice(xp, (0, i, j, 0), (n, i + sh * (ho - 1) + 1, j + sw * (wo - 1) + 1, c), (1, sh, sw, 1))
        for i in range(kh)
        for j in range(kw)
    ]


def _dw(variant, x, dy, k, s, pads):
    xp = jnp.pad(x, [(0, 0), *pads, (0, 0)])
    taps = _taps(xp, k, s, dy.shape[1:3])
    c, o = x.shape[-1], dy.shape[-1]
    if variant == "dw_taps":
        parts = [jax.lax.dot_general(t, dy, (((0, 1, 2), (0, 1, 2)), ((), ()))) for t in taps]
        return jnp.stack(parts).reshape(*k, c, o)
    p = jnp.concatenate(taps, axis=-1)
    return jax.lax.dot_general(p, dy, (((0, 1, 2), (0, 1, 2)), ((), ()))).reshape(*k, c, o)


def make_conv(variant):
    @functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
    def conv(x, w, strides, pads):
        if variant == "patches":
            k = w.shape[:2]
            taps = _taps(jnp.pad(x, [(0, 0), *pads, (0, 0)]), k, strides, _out_hw(x, k, strides, pads))
            p = jnp.concatenate(taps, axis=-1)
            return jnp.dot(p, w.reshape(-1, w.shape[-1]))
        return _LAX_CONV(x, w, strides, pads, dimension_numbers=_NHWC)

    def fwd(x, w, strides, pads):
        return conv(x, w, strides, pads), (x, w)

    def bwd(strides, pads, res, dy):
        x, w = res
        k = w.shape[:2]
        if variant == "patches":
            dp = jnp.dot(dy, w.reshape(-1, w.shape[-1]).T)  # [N, Ho, Wo, kh*kw*C]
            c = x.shape[-1]
            xp_shape = (x.shape[0], x.shape[1] + sum(pads[0]), x.shape[2] + sum(pads[1]), c)
            dxp = jnp.zeros(xp_shape, dy.dtype)
            (sh, sw), (ho, wo) = strides, dy.shape[1:3]
            for t, (i, j) in enumerate((i, j) for i in range(k[0]) for j in range(k[1])):
                part = dp[..., t * c : (t + 1) * c]
                cfg = [
                    (0, 0, 0),
                    (i, xp_shape[1] - i - sh * (ho - 1) - 1, sh - 1),
                    (j, xp_shape[2] - j - sw * (wo - 1) - 1, sw - 1),
                    (0, 0, 0),
                ]
                dxp = dxp + jax.lax.pad(part, jnp.zeros((), dy.dtype), cfg)
            dx = dxp[:, pads[0][0] : pads[0][0] + x.shape[1], pads[1][0] : pads[1][0] + x.shape[2], :]
        else:
            _, vjp_x = jax.vjp(lambda xx: _LAX_CONV(xx, w, strides, pads, dimension_numbers=_NHWC), x)
            (dx,) = vjp_x(dy)
        if variant == "lax":
            _, vjp_w = jax.vjp(lambda ww: _LAX_CONV(x, ww, strides, pads, dimension_numbers=_NHWC), w)
            (dw,) = vjp_w(dy)
        else:
            dw = _dw(variant if variant == "dw_taps" else "dw_patches", x, dy, k, strides, pads)
        return dx, dw

    conv.defvjp(fwd, bwd)
    return conv


def _out_hw(x, k, s, pads):
    return tuple((x.shape[1 + a] + sum(pads[a]) - k[a]) // s[a] + 1 for a in range(2))


def install(variant):
    """Replaces jax.lax.conv_general_dilated for plain NHWC/HWIO convolutions by ``variant``."""
    if variant == "xla":
        jax.lax.conv_general_dilated = _LAX_CONV
        return
    if variant == "nn":  # the production wrapper: extremeq.nn.conv.materialize
        from extremeq.nn.conv import materialize

        jax.lax.conv_general_dilated = lambda lhs, rhs, *a, **kw: _LAX_CONV(materialize(lhs), rhs, *a, **kw)
        return
    if variant in ("barrier", "cond"):

        def dispatch(lhs, rhs, *a, **kw):
            if variant == "barrier":
                lhs = jax.lax.optimization_barrier(lhs)
            else:
                probe = lhs.reshape(-1)[0]
                lhs = jax.lax.cond(probe == probe, lambda v: v, lambda v: v + 0.0, lhs)
            return _LAX_CONV(lhs, rhs, *a, **kw)

        jax.lax.conv_general_dilated = dispatch
        return
    conv = make_conv(variant)

    def dispatch(
        lhs,
        rhs,
        window_strides,
        padding,
        lhs_dilation=None,
        rhs_dilation=None,
        dimension_numbers=None,
        feature_group_count=1,
        batch_group_count=1,
        **kw,
    ):
        nhwc = jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC)
        dn = dimension_numbers
        if dn is not None and not isinstance(dn, jax.lax.ConvDimensionNumbers):
            dn = jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, dn)
        plain = (
            dn == nhwc
            and not any(d != 1 for d in lhs_dilation or ())
            and not any(d != 1 for d in rhs_dilation or ())
            and feature_group_count == 1
            and batch_group_count == 1
            and lhs.ndim == 4
            and rhs.shape[2] > 1
            and not kw.get("preferred_element_type")
        )
        if not plain:
            return _LAX_CONV(
                lhs,
                rhs,
                window_strides,
                padding,
                lhs_dilation,
                rhs_dilation,
                dimension_numbers,
                feature_group_count,
                batch_group_count,
                **kw,
            )
        s = tuple(window_strides)
        pads = tuple(tuple(p) for p in _pads(lhs.shape[1:3], rhs.shape[:2], s, padding))
        return conv(lhs, rhs, s, pads)

    jax.lax.conv_general_dilated = dispatch


def build(variant, method, batch):
    """bench_train.build_step with every model convolution routed through ``variant``."""
    from bench_train import build_step
    from flax import nnx

    import extremeq.train.model as T

    orig = T.build_quantized_model

    def patched(*a, **k):  # the zoo's convs call extremeq.nn.conv, which materializes their input
        net = orig(*a, **k)  # and then calls jax.lax.conv_general_dilated (replaced by install)
        for _, m in nnx.iter_modules(net):
            if isinstance(m, nnx.Conv) and not MATERIALIZE:
                m.conv_general_dilated = lambda *aa, **kk: jax.lax.conv_general_dilated(*aa, **kk)
        return net

    options = {}
    if variant.startswith("opt:"):  # the production step compiled with XLA options "opt:key=value,..."
        for kv in variant[4:].split("+"):
            key, value = kv.split("=")
            options[key] = {"true": True, "false": False}.get(value, int(value) if value.isdigit() else value)
        variant = "production"
    jit = jax.jit
    if options:
        jax.jit = lambda f, **kw: jit(f, compiler_options=options, **kw)
    if variant != "production":
        T.build_quantized_model = patched
        install(variant)
    try:
        run, check = build_step(method, "resnet20", batch)
        run()  # trace + compile with this variant installed
    finally:
        install("xla")
        T.build_quantized_model = orig
        jax.jit = jit
    return run, check


def check_exact(variants, method="fp", batch=16):
    """One conv layer's forward + both gradients per variant against XLA's, on random data."""
    rng = np.random.default_rng(0)
    worst = {}
    for cin, cout, s in ((16, 16, 1), (16, 32, 2), (3, 16, 1)):
        x = jnp.asarray(rng.standard_normal((batch, 16, 16, cin)), jnp.float32)
        w = jnp.asarray(rng.standard_normal((3, 3, cin, cout)), jnp.float32)
        pads = ((1, 1), (1, 1))

        def loss(conv, x, w):
            y = conv(x, w, (s, s), pads)
            return jnp.sum(jnp.sin(y))

        ref = jax.grad(lambda x, w: loss(lambda *a: _LAX_CONV(*a, dimension_numbers=_NHWC), x, w), (0, 1))(x, w)
        for v in variants:
            got = jax.grad(functools.partial(loss, make_conv(v)), (0, 1))(x, w)
            err = max(float(jnp.max(jnp.abs(g - r)) / jnp.max(jnp.abs(r))) for g, r in zip(got, ref))
            worst[v] = max(worst.get(v, 0.0), err)
    return worst


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", default="lax,dw_patches,dw_taps,patches")
    p.add_argument("--method", default="fp")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    args = p.parse_args(argv)
    variants = args.variants.split(",")
    print(
        "relative max error of (dx, dW) vs XLA's conv gradient:",
        check_exact([v for v in variants if v not in ("barrier", "cond", "nn") and not v.startswith("opt:")]),
        flush=True,
    )
    runners = {"xla (current)": build("production", args.method, args.batch)[0]}
    for v in variants:
        runners[v] = build(v, args.method, args.batch)[0]
    for r in runners.values():
        for _ in range(args.warmup):
            r()
    times = {k: [] for k in runners}
    for _ in range(args.steps):
        for k, r in runners.items():
            t0 = time.perf_counter()
            r()
            times[k].append(time.perf_counter() - t0)
    base = statistics.median(times["xla (current)"])
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"\nResNet-20 {args.method} train step, batch {args.batch}, median of {args.steps} round-robin steps; "
        f"jax {jax.__version__}; load average {load}\n"
    )
    print("| conv formulation | ms / step | vs current |\n| --- | ---: | ---: |")
    for k, t in times.items():
        m = statistics.median(t)
        print(f"| {k} | {m * 1e3:.1f} | {m / base:.2f}x |")


if __name__ == "__main__":
    main()
