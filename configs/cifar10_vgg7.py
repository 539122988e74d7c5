"""CIFAR-10, VGG-7 (2x(128C3)-MP2-2x(256C3)-MP2-2x(512C3)-MP2-1024FC-classifier): the TWN paper
(Li, Zhang, Liu 2016). Targets (ANCHORS.md, checked against a transcription of its table):
FP 92.88, TWN 92.56, BWN 90.18.

Recipe (TWN paper, Table 1 and text, as recalled, not verified): SGD momentum 0.9, weight decay
1e-4, batch 100, lr 0.1 divided by 10 at epochs 80 and 120, 150 epochs; random crop + flip
augmentation (pad 4 assumed). BatchNorm after every weight layer. Which layers stay float: the
authors' PyTorch port (Thinklab-SJTU/twns litenet.py, read for this file) quantizes the first
conv and keeps the last layer in float (first = "same", last = "fp").

Variants: fp, twn, bwn (the paper's rows); any other method also loads.
"""

from extremeq.train.config import default_config
from extremeq.train.variants import apply_method, parse_variant


def get_config(arg=None):
    _, method, options = parse_variant(arg)
    c = default_config()
    c.dataset.name = "cifar10"
    c.dataset.source = ""  # "": the JPEG archive ($EXTREMEQ_CIFAR10), else TFDS
    c.dataset.augment.crop_padding = 4
    c.dataset.augment.flip = True
    c.model.name = "vgg7"
    c.model.activation = "relu"
    c.num_epochs = 150
    c.batch_size = 100
    c.eval_batch_size = 512
    c.optimizer.name = "sgd"
    c.optimizer.learning_rate = 0.1
    c.optimizer.momentum = 0.9
    c.optimizer.weight_decay = 1e-4
    c.optimizer.schedule = "step"
    c.optimizer.decay_epochs = (80, 120)
    c.optimizer.decay_factor = 0.1
    c.checkpoint.every_epochs = 10
    return apply_method(c, method, options, first="same", last="fp")
