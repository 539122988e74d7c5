"""scikit-learn digits (8x8), MLP 64-256-256-10 on the schema's defaults: a smoke-size run for any
method (``configs/base.py:twn``).

The schema itself (every knob, its default and meaning) is ``extremeq.train.config.default_config``;
every file in this folder starts from it with a normal import and overrides only what its paper's
recipe changes. The variant tokens (method, model, ``ste=``/``first=``/``last=``) are described in
``extremeq.train.variants``.
"""

from extremeq.train.config import default_config
from extremeq.train.variants import apply_method, exponential_decay, parse_variant  # noqa: F401


def get_config(arg=None):
    """Digits, MLP 64-256-256-10, Adam 1e-3 with cosine decay over 30 epochs."""
    _, method, options = parse_variant(arg)
    c = default_config()
    c.num_epochs = 30
    c.dataset.name = "digits"
    c.dataset.source = "digits"
    c.model.hidden = (256, 256)
    c.optimizer.name = "adam"
    c.optimizer.learning_rate = 1e-3
    c.optimizer.schedule = "cosine"
    return apply_method(c, method, options)
