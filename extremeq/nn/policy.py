"""Precision policy: quantize an existing NNX model by path rules.

    rules = [
        ("stem", None),                       # first conv stays float
        ("head", {"kernel": "int8", "input": "int8"}),
        (".*", {"kernel": "bwn", "input": "xnor", "ste": "clipped"}),
    ]
    quantize_model(model, rules)

Each ``nnx.Linear`` / ``nnx.Conv`` (or already-quantized layer) is matched by
its path string (attribute names joined by "/", e.g. ``"blocks/0/conv1"``)
against the rules in order; the first ``re.fullmatch`` decides. A spec of
``None`` leaves the layer exactly as it is; a layer that matches no rule is
left alone too. Replaced layers keep their kernel and bias values.

A spec ``{"bitlinear": "bitnet"}`` (or ``"bitnet_1bit"``, optional ``"ste"``) turns an
``nnx.Linear`` into BitNet's :class:`~extremeq.nn.bitlinear.BitLinear` (RMSNorm, 8-bit per-token
inputs, ternary or 1-bit weights, no bias): ``[("head", None), (".*", {"bitlinear": "bitnet"})]``
makes the linear layers of a float transformer BitNet b1.58 layers.

``method_rules(method)`` writes the rule list of a paper's method for the model
zoo's convention (first layer ``stem``, last layer ``head``); the methods are the
registered ones (``extremeq.methods.METHODS``, yours included once registered).
"""

from __future__ import annotations

import re
from typing import Iterator, Mapping, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from extremeq import methods as registry
from extremeq.methods import METHODS  # noqa: F401  (re-exported: method -> (weight, input) quantizers, live)
from extremeq.nn.bitlinear import bitlinear_from_linear
from extremeq.nn.layers import QuantConv, QuantLinear, _Quantized

EDGE_PRECISIONS = ("fp", "int8", "weights", "same")
_SPEC_KEYS = {"kernel", "input", "ste", "ste_kwargs", "pad_value", "latent_init", "bitlinear"}
LATENT_INITS = (None, "keep", "uniform")
#: What a stochastic method's layers compute after ``model.eval()`` (``method_rules(stochastic_eval=)``).
STOCHASTIC_EVALS = ("sign", "mean")


def path_string(path) -> str:
    return "/".join(str(p) for p in path)


def set_at(root, path: tuple, new) -> None:
    """Replace the sub-module of ``root`` at attribute/index ``path`` by ``new``."""
    parent = root
    for key in path[:-1]:
        parent = parent[key] if isinstance(key, int) else getattr(parent, key)
    if isinstance(path[-1], int):
        parent[path[-1]] = new
    else:
        setattr(parent, path[-1], new)


def quant_layers(model) -> Iterator[tuple[str, _Quantized]]:
    """(path string, layer) for every QuantLinear / QuantConv, in path order."""
    for path, module in nnx.iter_modules(model):
        if isinstance(module, _Quantized):
            yield path_string(path), module


def clip_latent_weights(model) -> None:
    """BinaryConnect: clip latent kernels to [-1, 1] where the spec asks for it (in place)."""
    for _, layer in quant_layers(model):
        if layer.kernel_quantizer.clip_latent:
            layer.kernel[...] = jnp.clip(layer.kernel[...], -1.0, 1.0)


def _check_rules(rules):
    if isinstance(rules, (str, bytes)) or not isinstance(rules, Sequence):
        raise TypeError("rules must be a list of (pattern, spec) pairs")
    compiled = []
    for i, rule in enumerate(rules):
        if not (isinstance(rule, (tuple, list)) and len(rule) == 2):
            raise TypeError(f"rule {i} must be a (pattern, spec) pair, got {rule!r}")
        pattern, spec = rule
        if spec is not None:
            if not isinstance(spec, Mapping):
                raise TypeError(f"rule {i} ({pattern!r}): spec must be None or a dict, got {spec!r}")
            if spec.get("latent_init") not in LATENT_INITS:
                raise ValueError(
                    f"rule {i} ({pattern!r}): latent_init={spec['latent_init']!r} unknown; choose one of {LATENT_INITS}"
                )
            unknown = set(spec) - _SPEC_KEYS
            if unknown:
                raise ValueError(
                    f"rule {i} ({pattern!r}): unknown key(s) {sorted(unknown)}; allowed: {sorted(_SPEC_KEYS)}"
                )
        compiled.append((re.compile(pattern), spec))
    return compiled


def _converted(layer, spec: Mapping, rngs: nnx.Rngs, where: str = ""):
    if spec.get("bitlinear") is not None:
        if set(spec) - {"bitlinear", "ste"}:
            raise ValueError(
                f"{where}: a 'bitlinear' rule takes only 'ste' besides the method (BitLinear fixes "
                f"its weight and 8-bit input quantizers), got {sorted(spec)}"
            )
        return bitlinear_from_linear(layer, spec["bitlinear"], spec.get("ste") or "ste", rngs, where)
    kwargs = dict(
        kernel_quantizer=spec.get("kernel", "fp"),
        input_quantizer=spec.get("input", "fp"),
        ste=spec.get("ste"),
        ste_kwargs=spec.get("ste_kwargs"),
        use_bias=layer.bias is not None,
        rngs=rngs,
    )
    if isinstance(layer, (nnx.Linear, QuantLinear)):
        new = QuantLinear(layer.in_features, layer.out_features, **kwargs)
    else:
        if isinstance(layer, nnx.Conv):
            unsupported = {
                "input_dilation": layer.input_dilation,
                "kernel_dilation": layer.kernel_dilation,
            }
            for name, value in unsupported.items():
                if value not in (None, 1) and tuple(_as_tuple(value)) != (1,) * len(_as_tuple(value)):
                    raise ValueError(f"quantize_model: Conv with {name}={value} is not supported")
            if len(layer.kernel_size) != 2:
                raise ValueError(f"quantize_model: only 2-D convolutions are supported, got {layer.kernel_size}")
        new = QuantConv(
            layer.in_features,
            layer.out_features,
            layer.kernel_size,
            layer.strides or 1,
            padding=layer.padding,
            feature_group_count=layer.feature_group_count,
            pad_value=spec.get("pad_value", 1.0),
            **kwargs,
        )
    new.kernel[...] = layer.kernel[...]
    if spec.get("latent_init") == "uniform":
        # BinaryConnect (H = 1): latent weights start U(-1, 1), so that the stochastic sign's
        # P(+1) = hard_sigmoid(w) spans [0, 1] instead of sitting at 1/2 for a small lecun init.
        new.kernel[...] = jax.random.uniform(rngs.params(), new.kernel.shape, jnp.float32, -1.0, 1.0)
    if layer.bias is not None:
        new.bias[...] = layer.bias[...]
    new.init_learned_scales()  # TTQ: scales from the kept weights, not the fresh init
    return new


def _as_tuple(v):
    return (v,) if isinstance(v, int) else tuple(v)


def quantize_model(model, rules, rngs: nnx.Rngs | None = None) -> list[str]:
    """Swap Linear/Conv layers of ``model`` (in place) for quantized ones by rules.

    Returns the list of paths that were replaced. ``rngs`` feeds stochastic
    quantizers (stream ``quant``); default ``nnx.Rngs(0, quant=0)``.
    """
    compiled = _check_rules(rules)
    rngs = rngs or nnx.Rngs(0, quant=0)
    targets = []
    for path, module in nnx.iter_modules(model):
        if isinstance(module, (nnx.Linear, nnx.Conv, _Quantized)) and path:
            p = path_string(path)
            for pattern, spec in compiled:
                if pattern.fullmatch(p):
                    if spec is not None:
                        targets.append((path, module, spec))
                    break
    for path, module, spec in targets:
        set_at(model, path, _converted(module, spec, rngs, path_string(path)))
    return [path_string(p) for p, _, _ in targets]


def method_rules(
    method: str, first: str = "fp", last: str = "fp", ste=None, ste_kwargs=None, stochastic_eval: str = "sign", **extra
):
    """The rule list of a paper's method, first layer ``stem`` and last ``head``.

    ``stochastic_eval`` (``bc_stochastic`` only): what the layers compute after ``model.eval()``:
    "sign", the deterministic sign (the 1-bit net that export packs), or "mean", the expected
    binary weight E[w_b] = clip(w, -1, 1), i.e. the real-valued weights BinaryConnect's paper
    tests its stochastic rows with (Sec. 2.6).

    ``first``/``last`` in {"fp", "int8", "weights", "same"}: keep float; int8
    weights and inputs; the method's weight quantizer with float inputs
    (BinaryNet's first layer: binary weights, real-valued pixels); or quantize
    like the rest. ``method`` in ``METHODS``.
    """
    entry = registry.method(method)  # an unknown name raises, listing the registered ones
    for name, value in (("first", first), ("last", last)):
        if value not in EDGE_PRECISIONS:
            raise ValueError(f"{name}={value!r} unknown; choose one of {', '.join(EDGE_PRECISIONS)}")
    kernel, inp = entry.kernel, entry.input
    if stochastic_eval not in STOCHASTIC_EVALS:
        raise ValueError(f"stochastic_eval={stochastic_eval!r} unknown; choose one of {STOCHASTIC_EVALS}")
    if registry.weight_method(kernel).stochastic and stochastic_eval != "sign":
        kernel = {"name": kernel, "eval": stochastic_eval}
    body = (
        None
        if (kernel, inp) == ("fp", "fp")
        else dict(kernel=kernel, input=inp, ste=ste, ste_kwargs=ste_kwargs, **extra)
    )
    int8 = dict(kernel="int8", input="int8")
    rules = []
    for pattern, value in (("stem", first), ("head", last)):
        if value == "fp":
            rules.append((pattern, None))
        elif value == "int8":
            rules.append((pattern, int8))
        elif value == "weights" and body is not None:
            rules.append((pattern, {**body, "input": "fp"}))
    if body is not None:
        rules.append((".*", body))
    return rules
