"""ImageNet, AlexNet with BatchNorm: XNOR-Net / BWN (Rastegari, Ordonez, Redmon, Farhadi 2016).
Targets (Rastegari et al. 2016, top-1): FP 56.6, BWN 56.8, XNOR-Net 44.2 top-1.

Network (the authors' Torch code, allenai/XNOR-Net models/alexnetxnor.lua, read for this file):
96C11/4 pad 2 -> BN -> ReLU -> MP3/2, then binary blocks 256C5-MP, 384C3, 384C3, 256C3-MP,
4096 (6x6 conv) and 4096 (1x1 conv), each as BN -> sign -> conv [-> max-pool], then BN -> ReLU ->
the float classifier; first and last layer in float; no dropout in the XNOR model. Ours keeps the
same layers and the order conv -> pool -> BN -> activation (see extremeq/nn/models.py).
Training (allenai/XNOR-Net opts.lua, read): 224 crops of 256-resized images, batch 128,
55 epochs, momentum 0.9, weight decay 0. The optimizer and learning-rate regime used for the
paper's numbers were not verified: Adam, lr 1e-3, x0.1 at epochs 30 and 45 here (assumption).

Variants: fp, bwn, xnor (the paper's rows); any other method also loads.
"""

from extremeq.train.config import BINARY_INPUT_METHODS, default_config
from extremeq.train.variants import apply_method, parse_variant


def get_config(arg=None):
    _, method, options = parse_variant(arg)
    c = default_config()
    c.dataset.name = "imagenet2012"
    c.dataset.source = "tfds"
    c.dataset.image_size = 224
    c.dataset.augment.crop_padding = 0  # ImageNet uses random-resized crops (data pipeline)
    c.dataset.augment.flip = True
    c.model.name = "alexnet"
    c.model.activation = "relu"
    c.model.dropout = 0.0 if method in BINARY_INPUT_METHODS else 0.5
    c.num_epochs = 55
    c.batch_size = 128
    c.eval_batch_size = 512
    c.optimizer.name = "adam"
    c.optimizer.learning_rate = 1e-3
    c.optimizer.weight_decay = 0.0
    c.optimizer.schedule = "step"
    c.optimizer.decay_epochs = (30, 45)
    c.optimizer.decay_factor = 0.1
    c.checkpoint.every_epochs = 1
    return apply_method(c, method, options, first="fp", last="fp")
