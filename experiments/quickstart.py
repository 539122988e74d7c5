"""Quickstart: FP vs BWN, TWN, TTQ and XNOR on scikit-learn's handwritten digits, on the CPU.

    python experiments/quickstart.py [--epochs 40] [--seed 0] [--out quickstart.md]

Trains the same small MLP (64 -> 256 -> 256 -> 10, BatchNorm, hardtanh) in five precisions with the
precision policy (first and last layer full precision, the hidden layer quantized), and prints one
table: test accuracy, packed model size (from ``extremeq.summary``), wall time. Everything it uses is
library code: ``extremeq.data`` (digits, offline), ``extremeq.nn.models.MLP``,
``extremeq.nn.quantize_model`` / ``method_rules`` and ``extremeq.summary``.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from extremeq.data.sources import load_digits
from extremeq.nn import clip_latent_weights, method_rules, quantize_model
from extremeq.nn.models import MLP
from extremeq.summary import summary

METHODS = ("fp", "bwn", "twn", "ttq", "xnor")


def make_model(method: str, seed: int) -> nnx.Module:
    model = MLP(64, 10, hidden=(256, 256), activation="hardtanh", rngs=nnx.Rngs(seed))
    quantize_model(model, method_rules(method, first="fp", last="fp"))
    return model


def train_and_evaluate(
    method: str, x_train, y_train, x_test, y_test, *, epochs: int, batch_size: int, lr: float, seed: int
):
    model = make_model(method, seed)
    schedule = optax.cosine_decay_schedule(lr, epochs * (len(x_train) // batch_size))
    optimizer = nnx.Optimizer(model, optax.adam(schedule), wrt=nnx.Param)

    @nnx.jit
    def train_epoch(model, optimizer, perm):
        def step(carry, idx):
            model, optimizer = carry

            def loss_fn(m):
                logits = m(x_train[idx])
                return optax.softmax_cross_entropy_with_integer_labels(logits, y_train[idx]).mean()

            loss, grads = nnx.value_and_grad(loss_fn)(model)
            optimizer.update(model, grads)
            clip_latent_weights(model)
            return (model, optimizer), loss

        (model, optimizer), losses = nnx.scan(step)((model, optimizer), perm)
        return losses.mean()

    @nnx.jit
    def accuracy(model, x, y):
        return jnp.mean(jnp.argmax(model(x), -1) == y)

    key = jax.random.key(seed)
    steps = len(x_train) // batch_size
    start = time.perf_counter()
    for epoch in range(epochs):
        perm = jax.random.permutation(jax.random.fold_in(key, epoch), len(x_train))[: steps * batch_size]
        model.train()
        train_epoch(model, optimizer, perm.reshape(steps, batch_size))
    model.eval()
    acc = float(accuracy(model, x_test, y_test))
    seconds = time.perf_counter() - start
    return model, acc, seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--out", default=None, help="also write the table (markdown) to this file")
    args = parser.parse_args(argv)

    data = load_digits()
    mean, std = np.asarray(data.mean), np.asarray(data.std)
    prep = lambda x: jnp.asarray((x.astype(np.float32) / 255.0 - mean) / std)  # noqa: E731
    x_train, x_test = prep(data.x_train), prep(data.x_test)
    y_train, y_test = jnp.asarray(data.y_train), jnp.asarray(data.y_test)

    rows = []
    for method in args.methods.split(","):
        model, acc, seconds = train_and_evaluate(
            method,
            x_train,
            y_train,
            x_test,
            y_test,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            seed=args.seed,
        )
        s = summary(model, x_test[:1])
        rows.append((method, acc, s.packed_bytes, s.float32_bytes, s.compression, seconds))
        print(
            f"{method:5s} test acc {100 * acc:6.2f}%  packed {s.packed_bytes / 1024:7.1f} KiB  "
            f"({s.compression:4.1f}x smaller than float32)  {seconds:5.1f} s",
            flush=True,
        )

    table = [
        f"digits (scikit-learn, 1437 train / 360 test), MLP 64-256-256-10, {args.epochs} epochs, seed {args.seed}, "
        f"first/last layer FP; jax {jax.__version__} on {jax.devices()[0].platform}",
        "",
        "| method | test accuracy | packed size | float32 size | compression | train time |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for method, acc, packed, f32, ratio, seconds in rows:
        table.append(
            f"| {method} | {100 * acc:.2f}% | {packed / 1024:.1f} KiB | {f32 / 1024:.1f} KiB | "
            f"{ratio:.1f}x | {seconds:.1f} s |"
        )
    text = "\n".join(table)
    print("\n" + text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return rows


if __name__ == "__main__":
    main()
