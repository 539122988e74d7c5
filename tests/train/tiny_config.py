"""A tiny digits config for the training tests (seconds per run on 2 CPU cores).

Variants (``tiny_config.py:<method>``) set ``quant.method``; the MLP has hidden layers 32-32-32 so
the middle layers are quantized (first and last stay float), dropout and batch norm exercise the
RNG streams and running statistics that an exact resume must restore.
"""

import ml_collections


def get_config(method="bc"):
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.num_epochs = 2
    c.batch_size = 128  # 1437 digits -> 11 steps per epoch
    c.eval_batch_size = 120
    c.progress_bar = False
    c.log_every_steps = 4
    c.dataset = ml_collections.ConfigDict(dict(name="digits", augment=dict(crop_padding=1, flip=True)))
    c.model = ml_collections.ConfigDict(dict(name="mlp", hidden=[32, 32, 32], dropout=0.1))
    c.quant = ml_collections.ConfigDict(dict(method=method or "bc"))
    c.optimizer = ml_collections.ConfigDict(dict(name="sgd", learning_rate=0.3, momentum=0.9,
                                                 nesterov=True, weight_decay=1e-4, schedule="cosine",
                                                 warmup_epochs=0.5))
    c.checkpoint = ml_collections.ConfigDict(dict(keep=2))
    return c
