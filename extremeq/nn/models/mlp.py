"""The permutation-invariant MLP of BinaryConnect and BinaryNet."""

from __future__ import annotations

from collections.abc import Sequence

import jax
from flax import nnx

from extremeq.nn.models.blocks import (
    ACTIVATIONS,
    DenseBlock,
    _batch_norm,
    _bn,
    _check_activation,
    _drop,
    _dropout,
)


class MLP(nnx.Module):
    """Permutation-invariant MLP of BinaryConnect (Courbariaux et al. 2015: 3x1024) and BinaryNet
    (Hubara et al. 2016: 3x4096).

    x -> flatten -> [dropout(input_dropout)] -> stem -> BN -> act -> [dropout]
      -> blocks[i] (dense -> BN -> act -> [dropout]) ... -> head -> [BN if head_bn].
    ``hidden`` lists the hidden widths; ``head_bn=True`` puts BatchNorm on the output layer as
    both papers' Theano code does (their L2-SVM output layer).
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        hidden: Sequence[int] = (1024, 1024, 1024),
        *,
        activation: str = "relu",
        dropout: float = 0.0,
        input_dropout: float = 0.0,
        head_bn: bool = False,
        bn_momentum: float = 0.9,
        bn_epsilon: float = 1e-5,
        rngs: nnx.Rngs,
    ):
        hidden = [int(h) for h in hidden]
        if not hidden or min(hidden) < 1:
            raise ValueError(f"MLP needs at least one positive hidden width, got hidden={hidden}")
        self.activation = _check_activation(activation)
        self.input_dropout = _dropout(input_dropout, rngs)
        self.stem = nnx.Linear(in_features, hidden[0], use_bias=False, rngs=rngs)
        self.stem_bn = _batch_norm(hidden[0], bn_momentum, bn_epsilon, rngs)
        self.dropout = _dropout(dropout, rngs)
        self.blocks = nnx.List(
            [
                DenseBlock(
                    hidden[i],
                    hidden[i + 1],
                    activation=activation,
                    dropout=dropout,
                    bn_momentum=bn_momentum,
                    bn_epsilon=bn_epsilon,
                    rngs=rngs,
                )
                for i in range(len(hidden) - 1)
            ]
        )
        self.head = nnx.Linear(hidden[-1], num_classes, use_bias=not head_bn, rngs=rngs)
        self.head_bn = _batch_norm(num_classes, bn_momentum, bn_epsilon, rngs) if head_bn else None

    def __call__(self, x: jax.Array, *, train: bool | None = None) -> jax.Array:
        x = x.reshape(x.shape[0], -1)
        x = _drop(self.input_dropout, x, train)
        x = ACTIVATIONS[self.activation](_bn(self.stem_bn, self.stem(x), train))
        x = _drop(self.dropout, x, train)
        for block in self.blocks:
            x = block(x, train=train)
        x = self.head(x)
        if self.head_bn is not None:
            x = _bn(self.head_bn, x, train)
        return x
