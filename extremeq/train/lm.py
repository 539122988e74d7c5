"""Language-model training: a token source, a GPT, per-token cross-entropy, whole-split validation.

``train_lm(config, workdir)`` is what ``python -m extremeq.train`` runs for a config with
``task = "lm"`` (``configs/shakespeare_char.py``). Per step: a batch of ``batch_size`` windows of
``block_size`` characters at random offsets drawn from ``fold_in(key(seed), step)`` (on device),
the loss

    L = -1/(B T) sum_{b, t} log softmax(f(x_b)_t)[y_{b, t}]     (nats per character)

and an AdamW update (warm-up, cosine decay, global-norm clipping; decay on matrices only). Every
``eval_every`` steps and at the end: the validation loss over the whole validation split in
non-overlapping windows, its perplexity exp(L), one ``metrics.jsonl`` row (step, train_loss = mean
over the steps since the last row, val_loss, val_perplexity, learning_rate, median step time) and
an orbax checkpoint. Rerunning the same command resumes from the latest checkpoint and gives the same
result (each step's batch depends only on the seed and the step).

Data parallelism: the batch (and each validation batch) is split over a 1-D mesh of
``config.num_devices`` devices (-1: all), parameters and optimizer state replicated, gradients
all-reduced inside the step. On a CPU host ``config.cpu_devices`` (set by the CLI before JAX starts,
:func:`extremeq.train.distributed.split_cpu`) makes those devices: XLA:CPU runs each of this model's
small matrix products on one thread, so one device per core is how a step uses all cores. The
result depends on the number of devices only through the order of float sums.
"""

from __future__ import annotations

import json
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from extremeq.data.text import eval_windows, load_text, sample_windows
from extremeq.nn.gpt import GPT
from extremeq.train import distributed
from extremeq.train.checkpoint import Checkpointer
from extremeq.train.config import ConfigError
from extremeq.train.metrics import MetricWriter, read_metrics
from extremeq.train.steps import make_mesh

_MODEL_KEYS = ("block_size", "num_layers", "num_heads", "width", "mlp_ratio", "positions", "linear", "tie_embeddings")


def token_cross_entropy(logits, targets):
    """Per-token cross-entropy [..., T] in nats: -log softmax(logits)[target]."""
    return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets)


def build_gpt(model_config, vocab_size: int, seed: int) -> GPT:
    kwargs = {k: model_config[k] for k in _MODEL_KEYS}
    return GPT(vocab_size, **kwargs, rngs=nnx.Rngs(seed))


def make_optimizer(opt, max_steps: int):
    """(AdamW after global-norm clipping, its learning-rate schedule): linear warm-up to
    ``learning_rate``, cosine decay to ``min_learning_rate`` at ``max_steps``; weight decay on
    ndim >= 2 parameters (kernels, embeddings) only, as nanoGPT."""
    if opt.name != "adamw":
        raise ValueError(f"config.optimizer.name={opt.name!r}: the language-model loop supports 'adamw'")
    warmup = min(int(opt.warmup_steps), max_steps - 1)  # a short (test) run still decays
    sched = optax.warmup_cosine_decay_schedule(
        0.0, opt.learning_rate, warmup, max_steps, end_value=opt.min_learning_rate
    )
    decay_mask = lambda params: jax.tree_util.tree_map(lambda p: p.ndim >= 2, params)
    adamw = optax.adamw(sched, b1=opt.b1, b2=opt.b2, weight_decay=opt.weight_decay, mask=decay_mask)
    return optax.chain(optax.clip_by_global_norm(opt.grad_clip), adamw) if opt.grad_clip else adamw, sched


def make_train_step(config, vocab_size: int, train_tokens, donate: bool = True, mesh=None):
    """(graphdef, params, opt_state, train_step, schedule) of a config's model.

    ``train_step(params, opt_state, step) -> (params, opt_state, loss)`` is one jitted XLA program:
    the batch of ``config.batch_size`` windows drawn from ``fold_in(key(seed), step)`` out of
    ``train_tokens`` (on device), forward, per-token cross-entropy, backward, clipping and AdamW.
    ``donate``: params and optimizer state are donated (updated in place, no copy per step).
    ``mesh`` (default: one device): the batch is split along its ``"data"`` axis, params, optimizer
    state and tokens are replicated over it."""
    block, batch = config.model.block_size, config.batch_size
    mesh = mesh or make_mesh(1)
    if batch % mesh.size:
        raise ConfigError(
            f"config.batch_size={batch} is not divisible by the {mesh.size} devices; use a multiple of "
            f"{mesh.size} or set config.num_devices"
        )
    model = build_gpt(config.model, vocab_size, config.seed)
    graphdef, params = nnx.split(model, nnx.Param)
    tx, sched = make_optimizer(config.optimizer, config.max_steps)
    opt_state = tx.init(params)
    params, opt_state, train_tokens = distributed.replicate((params, opt_state, train_tokens), mesh)
    base_key = jax.random.key(config.seed)
    rows = NamedSharding(mesh, P("data"))

    def loss_fn(p, x, y):
        return jnp.mean(token_cross_entropy(nnx.merge(graphdef, p)(x), y))

    def train_step(p, o, step):
        x, y = sample_windows(jax.random.fold_in(base_key, step), train_tokens, batch, block)
        x, y = jax.lax.with_sharding_constraint((x, y), rows)
        loss, grads = jax.value_and_grad(loss_fn)(p, x, y)
        updates, o = tx.update(grads, o, p)
        return optax.apply_updates(p, updates), o, loss

    step_fn = jax.jit(train_step, donate_argnums=(0, 1) if donate else (), compiler_options=cpu_compile_options())
    return graphdef, params, opt_state, step_fn, sched


def cpu_compile_options() -> dict | None:
    """XLA:CPU options of the training step: YNNPACK for the matrix products only. By default XLA:CPU
    also hands reductions to YNNPACK, which needs its operands written out: every BitLinear's RMSNorm
    scale was broadcast to a full [tokens, features] array for the per-token absmax (1 ms each at this
    model's size); without it the ternary step is ~10% faster, the float step unchanged
    (``experiments/bench_lm_step.py``). None off the CPU."""
    if jax.default_backend() != "cpu":
        return None
    return {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}


def _check(config):
    if config.dataset.name != "shakespeare_char":
        raise ValueError(
            f"config.dataset.name={config.dataset.name!r}: the language-model loop reads "
            "'shakespeare_char' (any UTF-8 text via config.dataset.path)"
        )
    for key in ("max_steps", "batch_size", "eval_every", "eval_batch_size"):
        if int(config[key]) < 1:
            raise ValueError(f"config.{key} must be >= 1, got {config[key]}")


def train_lm(config, workdir: str) -> dict:
    """Train, validate, checkpoint, resume; returns the final row (also written to final.json)."""
    _check(config)
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(config.to_json_best_effort(indent=2, sort_keys=True))
    ds = load_text(config.dataset.path or None)
    block = config.model.block_size
    mesh = make_mesh(int(config.get("num_devices", -1)))
    graphdef, params, opt_state, train_step, sched = make_train_step(config, ds.vocab_size, ds.train, mesh=mesh)
    vx, vy = eval_windows(ds.val, block)
    n_val = vx.shape[0]
    eb = -(-min(config.eval_batch_size, n_val) // mesh.size) * mesh.size  # a multiple of the devices
    nb = -(-n_val // eb)
    pad = nb * eb - n_val
    mask = np.concatenate([np.ones(n_val, np.float32), np.zeros(pad, np.float32)]).reshape(nb, eb)
    vx = np.concatenate([vx, np.zeros((pad, block), vx.dtype)]).reshape(nb, eb, block)
    vy = np.concatenate([vy, np.zeros((pad, block), vy.dtype)]).reshape(nb, eb, block)
    vx, vy, mask = jax.device_put((vx, vy, mask), NamedSharding(mesh, P(None, "data")))

    @jax.jit
    def validate(p):
        def body(total, inp):
            x, y, m = inp
            nll = token_cross_entropy(nnx.merge(graphdef, p)(x), y)
            return total + jnp.sum(nll * m[:, None]), None

        total, _ = jax.lax.scan(body, jnp.zeros((), jnp.float32), (vx, vy, mask))
        return total / (n_val * block)

    ckpt = Checkpointer(workdir, keep=config.keep_checkpoints)
    start = 0
    if ckpt.latest_step() is not None:
        params, opt_state, meta = ckpt.restore(params, opt_state)
        params, opt_state = distributed.replicate((params, opt_state), mesh)
        start = int(meta["step"])
        _truncate_rows(workdir, start)
    writer = MetricWriter(workdir)
    losses, times, t_run = [], [], time.time()
    step = start
    row = None
    while step < config.max_steps:
        t0 = time.perf_counter()
        params, opt_state, loss = train_step(params, opt_state, step)
        losses.append(float(loss))  # waits for the step, as nanoGPT's loss.item()
        times.append(time.perf_counter() - t0)
        step += 1
        if not math.isfinite(losses[-1]):
            raise FloatingPointError(f"non-finite loss {losses[-1]} at step {step}; lower the learning rate")
        if step % config.eval_every == 0 or step == config.max_steps:
            val = float(validate(params))
            row = {
                "step": step,
                "train_loss": float(np.mean(losses)),
                "val_loss": val,
                "val_perplexity": math.exp(val),
                "learning_rate": float(sched(step - 1)),
                "step_time_ms": 1000 * float(np.median(times[1:] if len(times) > 1 else times)),
                "elapsed_s": time.time() - t_run,
            }
            writer.write(row)
            ckpt.save(step, params, opt_state, {"step": step})
            losses, times = [], []
    ckpt.close()
    writer.close()
    rows = read_metrics(workdir)
    final = dict(rows[-1]) if rows else {}
    all_times = [r["step_time_ms"] for r in rows if r.get("step_time_ms")]
    final["median_step_time_ms"] = float(np.median(all_times)) if all_times else None
    final["num_params"] = int(sum(np.size(v) for v in jax.tree_util.tree_leaves(params)))
    final["num_devices"] = mesh.size
    with open(os.path.join(workdir, "final.json"), "w") as f:
        json.dump(final, f, indent=2)
    return final


def _truncate_rows(workdir: str, step: int) -> None:
    """Drop metrics rows past the resumed checkpoint's step (they are recomputed)."""
    rows = [r for r in read_metrics(workdir) if r.get("step", 0) <= step]
    with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)


def load_trained_gpt(workdir: str) -> tuple[GPT, object]:
    """(model with the latest checkpoint's parameters, dataset) of a finished or running LM run."""
    import ml_collections

    with open(os.path.join(workdir, "config.json")) as f:
        config = ml_collections.ConfigDict(json.load(f))
    ds = load_text(config.dataset.path or None)
    model = build_gpt(config.model, ds.vocab_size, config.seed)
    graphdef, params = nnx.split(model, nnx.Param)
    ckpt = Checkpointer(workdir, keep=config.keep_checkpoints)
    params, _, _ = ckpt.restore(params)
    ckpt.close()
    return nnx.merge(graphdef, params), ds
