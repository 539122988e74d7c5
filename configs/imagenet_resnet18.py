"""ImageNet, ResNet-18 (He et al. 2016; projection shortcuts: TWN/TTQ's "ResNet-18B").
Targets: FP 69.3, BWN 60.8, XNOR 51.2, TWN 61.8 (FP 65.4 in that paper), TTQ 66.6.

FP recipe (He et al. 2016, as recalled): SGD momentum 0.9, weight decay 1e-4, batch 256, lr 0.1
divided by 10 at epochs 30 and 60, 90 epochs; random-resized 224 crops + flip.
TWN (paper Table 1, as recalled, not verified): batch 64 per GPU x 4, lr 0.1, weight decay 1e-4,
decay at epochs 30 and 40, 50 epochs. TTQ (as recalled): fine-tuned from the FP model (set
``--config.quant.init_from``). XNOR/BWN: the AlexNet regime (see imagenet_alexnet.py).
All methods keep the first conv and the last dense in float.

Variants: fp, bwn, xnor, twn, ttq; any other method also loads.
"""

from extremeq.train.config import default_config
from extremeq.train.variants import apply_method, parse_variant


def get_config(arg=None):
    _, method, options = parse_variant(arg)
    c = default_config()
    c.dataset.name = "imagenet2012"
    c.dataset.source = "tfds"
    c.dataset.image_size = 224
    c.dataset.augment.crop_padding = 0  # ImageNet uses random-resized crops (data pipeline)
    c.dataset.augment.flip = True
    c.model.name = "resnet18"
    c.model.shortcut = "B"
    c.model.activation = "relu"
    c.num_epochs = 90
    c.batch_size = 256
    c.eval_batch_size = 512
    c.optimizer.name = "sgd"
    c.optimizer.learning_rate = 0.1
    c.optimizer.momentum = 0.9
    c.optimizer.weight_decay = 1e-4
    c.optimizer.schedule = "step"
    c.optimizer.decay_epochs = (30, 60)
    c.optimizer.decay_factor = 0.1
    c.checkpoint.every_epochs = 1
    if method == "twn":
        c.num_epochs = 50
        c.optimizer.decay_epochs = (30, 40)
    elif method in ("bwn", "xnor"):
        c.num_epochs = 55
        c.batch_size = 128
        c.optimizer.name = "adam"
        c.optimizer.learning_rate = 1e-3
        c.optimizer.weight_decay = 0.0
        c.optimizer.decay_epochs = (30, 45)
    return apply_method(c, method, options, first="fp", last="fp")
