"""scikit-learn digits (8x8, 1437 train / 360 test), MLP 64-256-256-10: the seconds-long smoke run.

Not a paper recipe: the same setting as experiments/quickstart.py (Adam 3e-3, cosine, batch 64,
40 epochs; hidden layers quantized, first and last layer kept in float). Variants: any method,
e.g. ``configs/digits_mlp.py:twn``. hardtanh activation for every method, as the quickstart uses,
so that FP and binary-input rows differ only in the quantizers.
"""

from extremeq.train.config import default_config
from extremeq.train.variants import apply_method, parse_variant


def get_config(arg=None):
    _, method, options = parse_variant(arg)
    c = default_config()
    c.dataset.name = "digits"
    c.dataset.source = "digits"
    c.model.name = "mlp"
    c.model.hidden = (256, 256)
    c.model.activation = "hardtanh"
    c.num_epochs = 40
    c.batch_size = 64
    c.eval_batch_size = 360
    c.optimizer.name = "adam"
    c.optimizer.learning_rate = 3e-3
    c.optimizer.schedule = "cosine"
    return apply_method(c, method, options)
