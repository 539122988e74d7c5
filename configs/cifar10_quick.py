"""CIFAR-10 on a laptop CPU: the quick recipe (extremeq's own, not a paper's). A narrow VGG-7
("VGG-small": 2x(16C3)-MP2-2x(32C3)-MP2-2x(64C3)-MP2-128FC-10, BatchNorm after every weight
layer; 1/64 of VGG-7's convolution work), pad-4 crop + flip, SGD Nesterov momentum 0.9, lr 0.1 with
half an epoch of linear warm-up then cosine to 0, weight decay 5e-4, batch 128, 12 epochs.

Picked with ``python experiments/cifar.py probe``: of the candidates timed on the 2-core CPU
(ResNet-20 at widths 16 and 8, VGG-7 at widths 32 and 16), this one trains 4x faster than
ResNet-20 (161 against 38 images/s, both under the same heavy load), so it sees ~4x the images in
the same minutes. 12 epochs is an estimate of 30 minutes of the unloaded 2-core CPU (ResNet-20 runs
there at 100-120 images/s, ~3x what the probe saw, so this network at ~480 images/s: ~110 s per
epoch with its evaluation), not a measurement; results/cifar10_cpu.md has the runs made here, with
fewer epochs (``--config.num_epochs=2``) because the CPU was shared.
Variants: fp (default), bwn, xnor, twn, ...; first conv and last dense stay float.

    python -m extremeq.train --config configs/cifar10_quick.py:bwn --workdir runs/quick_bwn
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
    c.model.width = 16
    c.model.fc_features = 128
    c.model.activation = "relu"
    c.num_epochs = 12
    c.batch_size = 128
    c.eval_batch_size = 500
    c.optimizer.name = "sgd"
    c.optimizer.learning_rate = 0.1
    c.optimizer.momentum = 0.9
    c.optimizer.nesterov = True
    c.optimizer.weight_decay = 5e-4
    c.optimizer.schedule = "cosine"
    c.optimizer.warmup_epochs = 0.5
    c.checkpoint.every_epochs = 1
    c.progress_bar = False
    return apply_method(c, method, options, first="fp", last="fp")
