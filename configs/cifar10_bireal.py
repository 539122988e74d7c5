"""CIFAR-10, Bi-Real Net and ReActNet blocks on ResNet-20 and ResNet-18 (``extremeq.nn.models.reactnet``).

Variant ``model:method``: models ``bireal_resnet20`` (default), ``bireal_resnet18``,
``reactnet_resnet20``, ``reactnet_resnet18``; methods as everywhere (``bnn``, sign weights and sign activations, is the
papers' setting; ``fp``, the default as in every config, gives the real-valued twin of the
architecture), e.g. ``reactnet_resnet18:bnn`` or ``bireal_resnet20:xnor``.

Architecture: every 3x3 conv is binary with its own real-valued shortcut (Bi-Real Net, Liu et al.
2018); ReActNet (Liu et al. 2020) adds RSign (learnable per-channel threshold before the sign) and
RPReLU after each shortcut addition. Stem, head and the 1x1 downsampling convs stay float, as in
both papers (``quant.keep_fp``). Weights: sign without a scale (method ``bnn``): the BatchNorm after
each conv absorbs a per-channel weight scale, so Bi-Real's magnitude-aware scale changes only the
gradients. Activations: Bi-Real's ApproxSign estimator (``ste = "approx_sign"``, 2 - 2|x| on
|x| <= 1).

Paper numbers (ImageNet top-1, ResNet-18 based; as recalled, not checked against the papers'
text): Bi-Real Net-18 56.4% (Liu et al. 2018); ReActNet-18 65.5% in Liu et al. 2020 (later tables
also list 65.9% for it). No CIFAR-10 number of either paper is cited here: none was checked, so
these configs' CIFAR-10 rows stand against this project's own FP twin (variant ``fp``), not a paper.
Run: ``python -m extremeq.train --config configs/cifar10_bireal.py:reactnet_resnet20:bnn --workdir D``.

Recipe (chosen here for CIFAR-10, not a paper's): Adam lr 1e-3 with cosine decay over 200 epochs,
batch 128, no weight decay (binary latent weights), pad-4 crop + flip. ReActNet's own ImageNet recipe
(as recalled: Adam 5e-4 with linear decay, two steps - binary activations first, then binary weights
- and distillation from a real-valued teacher) is reachable with ``init_from`` and ``distill.*``.
"""

from extremeq.train.config import default_config
from extremeq.train.variants import apply_method, parse_variant

MODELS = ("bireal_resnet20", "bireal_resnet18", "reactnet_resnet20", "reactnet_resnet18")


def get_config(arg=None):
    model, method, options = parse_variant(arg, models=MODELS, default_model="bireal_resnet20")
    c = default_config()
    c.dataset.name = "cifar10"
    c.dataset.augment.crop_padding = 4
    c.dataset.augment.flip = True
    c.model.name = model
    c.num_epochs = 200
    c.batch_size = 128
    c.eval_batch_size = 512
    c.optimizer.name = "adam"
    c.optimizer.learning_rate = 1e-3
    c.optimizer.weight_decay = 0.0
    c.optimizer.schedule = "cosine"
    c.checkpoint.every_epochs = 10
    c.quant.keep_fp = (r".*/downsample",)
    c = apply_method(c, method, options, first="fp", last="fp", binary_input_ste="approx_sign")
    c.model.activation = "identity"  # the sign is the non-linearity (and RPReLU for ReActNet)
    return c
