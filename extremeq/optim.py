"""Optimizers for extreme quantization, as optax ``GradientTransformation``s.

* :func:`bop` -- the Binary optimizer of Helwegen et al., "Latent Weights Do Not
  Exist: Rethinking Binarized Neural Network Optimization" (NeurIPS 2019).
* :func:`learning_rate_schedule` -- constant / step / cosine with linear warm-up.
* :func:`weight_decay_mask`, :func:`clip_latent` -- pure functions on parameter
  pytrees (nested dicts keyed by attribute name, as ``nnx.State.to_pure_dict``).
* :func:`create_optimizer` -- SGD (momentum, Nesterov) or Adam with L2 weight
  decay, or Bop for the binary kernels with SGD/Adam for everything else
  (``optax.multi_transform``).

Parameter paths are "/"-joined keys, e.g. ``"blocks/0/conv1/kernel"``, the same
strings ``extremeq.nn.quant_layers`` yields for layers (plus the leaf name).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import optax

from extremeq.ste import sign

# Leaf names that are never weight-decayed: biases, batch-norm scale/bias (and running statistics,
# which are not parameters anyway). A method's learned scales (TTQ's) are scalars, below ndim 2.
NO_DECAY_NAMES = ("bias", "scale", "mean", "var")


# ------------------------------------------------------------------ paths
def _key_name(k) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def path_string(path) -> str:
    """'/'-joined names of a ``jax.tree_util`` key path (a trailing ``.value`` dropped)."""
    names = [_key_name(k) for k in path]
    if names and names[-1] == "value" and isinstance(path[-1], jax.tree_util.GetAttrKey):
        names = names[:-1]
    return "/".join(names)


def tree_paths(tree):
    """A pytree like ``tree`` whose leaves are their own path strings."""
    return jax.tree_util.tree_map_with_path(lambda p, _: path_string(p), tree)


# ------------------------------------------------------------------- Bop
class BopState(NamedTuple):
    """m: exponential moving average of the gradient, one per binary weight."""

    m: Any


def bop(threshold: float = 1e-8, gamma: float = 1e-4) -> optax.GradientTransformation:
    """Bop (Helwegen et al. 2019, Algorithm 1) on weights that are exactly +-1.

        m_t = (1 - gamma) m_{t-1} + gamma g_t
        w_t = -w_{t-1}  if |m_t| > tau and sign(m_t) == sign(w_{t-1}),  else w_{t-1}

    with tau = ``threshold`` and gamma the adaptivity rate. There are no latent
    weights: the parameters must already be +-1 (``binarize_for_bop``), and the
    returned update is ``-2 w`` on flipped entries, ``0`` elsewhere, so
    ``optax.apply_updates`` keeps them +-1 exactly.
    """
    if threshold < 0:
        raise ValueError(f"bop threshold (tau) must be >= 0, got {threshold}")
    if not 0.0 < gamma <= 1.0:
        raise ValueError(f"bop gamma must be in (0, 1], got {gamma}")

    def init_fn(params):
        return BopState(m=jax.tree_util.tree_map(jnp.zeros_like, params))

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("bop needs the current weights: call tx.update(grads, state, params)")
        m = jax.tree_util.tree_map(lambda m, g: (1.0 - gamma) * m + gamma * g, state.m, updates)

        def flip_update(m, w):
            flip = (jnp.abs(m) > threshold) & (jnp.sign(m) == jnp.sign(w))
            return jnp.where(flip, -2.0 * w, jnp.zeros_like(w)).astype(w.dtype)

        new_updates = jax.tree_util.tree_map(flip_update, m, params)
        return new_updates, BopState(m=m)

    return optax.GradientTransformation(init_fn, update_fn)


def binarize_for_bop(params, labels):
    """Sets the weights labelled ``"bop"`` to sign(w) in {-1, +1} (sign(0) = +1)."""
    return jax.tree_util.tree_map(
        lambda w, l: sign(w) if l == "bop" else w,
        params,
        labels,
    )


# ------------------------------------------------------------- schedules
def learning_rate_schedule(
    learning_rate: float,
    steps_per_epoch: int,
    num_epochs: int,
    schedule: str = "constant",
    decay_epochs: Sequence[float] = (),
    decay_factor: float = 0.1,
    warmup_epochs: float = 0.0,
) -> Callable[[Any], Any]:
    """eta(t) for step t (0-based).

    warm-up (t < W):  eta(t) = eta0 (t + 1) / W, with W = warmup_epochs * steps_per_epoch
    constant:         eta(t) = eta0
    step:             eta(t) = eta0 * decay_factor ** #{e in decay_epochs : t >= e * steps_per_epoch}
                      (decay epochs are absolute, warm-up does not shift them)
    cosine:           eta(t) = eta0 * (1 + cos(pi * (t - W) / (T - W))) / 2, T = num_epochs * steps_per_epoch
    """
    warmup = int(round(warmup_epochs * steps_per_epoch))
    total = max(int(num_epochs * steps_per_epoch), 1)
    boundaries = jnp.asarray(sorted(int(round(e * steps_per_epoch)) for e in decay_epochs), jnp.int32)
    if schedule not in ("constant", "step", "cosine"):
        raise ValueError(f"optimizer.schedule '{schedule}' unknown; choose constant, step or cosine")

    def eta(step):
        t = jnp.asarray(step, jnp.int32)
        if schedule == "constant":
            lr = jnp.asarray(learning_rate, jnp.float32)
        elif schedule == "step":
            n = jnp.sum(t >= boundaries) if boundaries.size else 0
            lr = learning_rate * jnp.asarray(decay_factor, jnp.float32) ** n
        else:
            frac = jnp.clip((t - warmup) / max(total - warmup, 1), 0.0, 1.0)
            lr = learning_rate * 0.5 * (1.0 + jnp.cos(jnp.pi * frac))
        if warmup > 0:
            lr = jnp.where(t < warmup, learning_rate * (t + 1) / warmup, lr)
        return jnp.asarray(lr, jnp.float32)

    return eta


# ----------------------------------------------------------- param masks
def weight_decay_mask(params):
    """True where L2 weight decay applies: kernels (ndim >= 2), never a bias or batch-norm
    scale/bias (``NO_DECAY_NAMES``), nor a method's learned scales (TTQ's W_p, W_n: scalars)."""

    def decays(path, x):
        name = path_string(path).rsplit("/", 1)[-1]
        return name not in NO_DECAY_NAMES and jnp.ndim(x) >= 2

    return jax.tree_util.tree_map_with_path(decays, params)


def clip_latent(params, mask, bound: float = 1.0):
    """w <- clip(w, -bound, bound) where ``mask`` is True (BinaryConnect's latent-weight clip)."""
    return jax.tree_util.tree_map(lambda w, m: jnp.clip(w, -bound, bound) if m else w, params, mask)


def glorot_lr_scale(shape) -> float:
    """BinaryConnect's per-layer learning-rate scale 1/H for a kernel of ``shape`` (..., in, out):

        H = sqrt(1.5 / (fan_in + fan_out)),  fan_in = in * r,  fan_out = out * r,

    r the receptive field (product of the spatial dims; 1 for a dense kernel). H is the bound of
    Glorot's uniform init; with binary weights +-1 and latent weights in [-1, 1] the scale lets
    Adam's steps (~lr) move the latent weights as far as the float net's would relative to its
    weights' size (Courbariaux et al. 2015/2016, released code: ``W_LR_scale``)."""
    if len(shape) < 2:
        raise ValueError(f"glorot_lr_scale needs a kernel (ndim >= 2), got shape {tuple(shape)}")
    r = 1
    for d in shape[:-2]:
        r *= int(d)
    fan_in, fan_out = int(shape[-2]) * r, int(shape[-1]) * r
    return float((1.5 / (fan_in + fan_out)) ** -0.5)


def scale_leaves(scales) -> optax.GradientTransformation:
    """updates <- updates * scales, leaf by leaf (``scales`` a pytree of floats like the params)."""

    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        del params
        return jax.tree_util.tree_map(lambda u, s: u if s == 1.0 else u * s, updates, scales), state

    return optax.GradientTransformation(init_fn, update_fn)


def path_mask(params, paths: Iterable[str]):
    """True at the leaves whose path string is in ``paths``."""
    wanted = set(paths)
    return jax.tree_util.tree_map(lambda p: p in wanted, tree_paths(params))


# -------------------------------------------------------------- factory
def _base_optimizer(name, lr, momentum, nesterov, weight_decay, decay_mask):
    if name == "sgd":
        tx = optax.sgd(lr, momentum=momentum if momentum else None, nesterov=bool(nesterov))
    elif name == "adam":
        tx = optax.adam(lr, b1=momentum)  # optimizer.momentum is Adam's beta1 (default 0.9)
    else:
        raise ValueError(f"optimizer '{name}' unknown; choose sgd, adam or bop")
    if weight_decay:
        # Coupled L2 (g <- g + wd * w) as in the papers' PyTorch recipes.
        tx = optax.chain(optax.add_decayed_weights(weight_decay, mask=decay_mask), tx)
    return tx


def create_optimizer(
    opt,
    steps_per_epoch: int,
    num_epochs: int,
    params,
    bop_paths: Iterable[str] = (),
    binary_paths: Iterable[str] = (),
) -> tuple[optax.GradientTransformation, Any]:
    """Builds the optax transformation from ``config.optimizer``.

    Returns ``(tx, labels)``: ``labels`` is the pytree of "bop"/"base" labels
    (all "base" unless ``opt.name == "bop"``). For Adam, ``opt.momentum`` is beta1. Bop applies to the leaves in
    ``bop_paths`` (binary kernels); the rest use ``opt.bop_base`` (adam or sgd)
    with the learning-rate schedule and weight decay.
    """
    lr = learning_rate_schedule(
        opt.learning_rate,
        steps_per_epoch,
        num_epochs,
        opt.schedule,
        tuple(opt.decay_epochs),
        opt.decay_factor,
        opt.warmup_epochs,
    )
    # A callable mask: inside multi_transform the base optimizer sees the
    # Bop-labelled leaves as empty ``MaskedNode``s, so the mask is computed on
    # whatever tree it is given.
    decay_mask = weight_decay_mask
    if opt.name != "bop":
        tx = _base_optimizer(opt.name, lr, opt.momentum, opt.nesterov, opt.weight_decay, decay_mask)
        lr_scale = opt.get("binary_lr_scale", "none")
        if lr_scale == "glorot":
            wanted = set(binary_paths)
            if not wanted:
                raise ValueError(
                    "optimizer.binary_lr_scale='glorot' but the model has no binary kernels; "
                    "use a binary quant.method (bc, bc_stochastic, bwn, xnor, bnn) or 'none'"
                )
            scales = jax.tree_util.tree_map(
                lambda p, x: glorot_lr_scale(jnp.shape(x)) if p in wanted else 1.0, tree_paths(params), params
            )
            tx = optax.chain(tx, scale_leaves(scales))
        elif lr_scale != "none":
            raise ValueError(f"optimizer.binary_lr_scale {lr_scale!r} unknown; choose 'none' or 'glorot'")
        return tx, jax.tree_util.tree_map(lambda _: "base", params)
    bop_set = set(bop_paths)
    if not bop_set:
        raise ValueError(
            "optimizer.name='bop' but the model has no binary kernels; use a binary "
            "quant.method (bc, bwn, xnor, bnn) or another optimizer"
        )
    labels = jax.tree_util.tree_map(lambda p: "bop" if p in bop_set else "base", tree_paths(params))
    base = _base_optimizer(opt.bop_base, lr, opt.momentum, opt.nesterov, opt.weight_decay, decay_mask)
    tx = optax.multi_transform({"bop": bop(opt.bop_threshold, opt.bop_gamma), "base": base}, labels)
    return tx, labels
