"""A tiny digits config for the training tests (seconds per run on 2 CPU cores).

Variants (``tiny_config.py:<method>``) set ``quant.method``; the MLP has hidden layers 32-32-32 so
the middle layers are quantized (first and last stay float), dropout and batch norm exercise the
RNG streams and running statistics that an exact resume must restore.
"""

from extremeq.train.config import default_config


def get_config(method="bc"):
    c = default_config()
    c.seed = 0
    c.num_epochs = 2
    c.batch_size = 128  # 1437 digits -> 11 steps per epoch
    c.eval_batch_size = 120
    c.progress_bar = False
    c.log_every_steps = 4
    c.dataset.name = "digits"
    c.dataset.augment.crop_padding = 1
    c.dataset.augment.flip = True
    c.model.hidden = (32, 32, 32)
    c.model.dropout = 0.1
    c.quant.method = method or "bc"
    c.optimizer.update(
        dict(
            name="sgd",
            learning_rate=0.3,
            momentum=0.9,
            nesterov=True,
            weight_decay=1e-4,
            schedule="cosine",
            warmup_epochs=0.5,
        )
    )
    c.checkpoint.keep = 2
    return c
