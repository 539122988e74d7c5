"""CIFAR-10, ResNet-20/32/44/56 (He et al. 2016, Sec. 4.2): FP, TTQ (Zhu et al. 2017), and the
other methods. Variant: ``model:method`` in any order, e.g. ``resnet20:ttq``, ``resnet56,fp``,
``ttq`` (ResNet-20), ``resnet32:bwn,ste=clipped``.

FP recipe (He et al. 2016, as recalled): SGD momentum 0.9, weight decay 1e-4, batch 128, lr 0.1
divided by 10 at 32k and 48k iterations and stopped at 64k (= epochs 82, 123, 164 at 391
iterations per epoch); 4-pixel padding + random 32x32 crop + horizontal flip; option-A (zero-pad)
shortcuts. Targets (ANCHORS.md): 91.77 / 92.33 / 92.82 / 93.20 FP as reported in TTQ.

TTQ recipe (the authors' code, czhu95/ternarynet examples/Ternary-Net/tw-cifar10-resnet.py, read
for this file): SGD momentum 0.9, lr 0.1 x0.1 at epochs 82, 123, 150, batch 128, weight decay
2e-4, pad-4 crop + flip, threshold t = 0.05, first conv and last dense in float, fine-tuned from
a trained FP model (set ``--config.quant.init_from=<workdir of the FP run>``). Their code runs
up to 400 epochs (``max_epoch``); here 164, past the last decay. Their ResNet is the
pre-activation variant with avg-pool + zero-pad shortcuts; ours is He et al.'s post-activation
ResNet with option-A shortcuts (the TTQ paper's FP baselines are these numbers).

All methods: first conv and last dense stay float (first = last = "fp"), as in TTQ, TWN, XNOR-Net.
"""

from extremeq.train.config import default_config
from extremeq.train.variants import apply_method, parse_variant

MODELS = ("resnet20", "resnet32", "resnet44", "resnet56")
DATASET = "cifar10"


def get_config(arg=None):
    model, method, options = parse_variant(arg, models=MODELS, default_model="resnet20")
    c = default_config()
    c.dataset.name = DATASET
    c.dataset.source = ""  # "": the JPEG archive ($EXTREMEQ_CIFAR10), else TFDS
    c.dataset.augment.crop_padding = 4
    c.dataset.augment.flip = True
    c.model.name = model
    c.model.shortcut = "A"
    c.model.activation = "relu"
    c.num_epochs = 164
    c.batch_size = 128
    c.eval_batch_size = 512
    c.optimizer.name = "sgd"
    c.optimizer.learning_rate = 0.1
    c.optimizer.momentum = 0.9
    c.optimizer.weight_decay = 1e-4
    c.optimizer.schedule = "step"
    c.optimizer.decay_epochs = (82, 123)
    c.optimizer.decay_factor = 0.1
    c.checkpoint.every_epochs = 10
    if method == "ttq":
        c.optimizer.weight_decay = 2e-4
        c.optimizer.decay_epochs = (82, 123, 150)
        c.quant.init_from = ""  # TTQ fine-tunes: point at a finished FP run of the same model
    return apply_method(c, method, options, first="fp", last="fp")
