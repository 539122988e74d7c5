"""Sweep (recipe, needs ImageNet 2012 prepared for TFDS and GPUs): XNOR-Net / BWN on AlexNet
(Rastegari et al. 2016, ImageNet top-1): FP 56.6, BWN 56.8, XNOR-Net 44.2.
Recipe: configs/imagenet_alexnet.py.

    python -m extremeq.sweep --config configs/sweeps/xnor_imagenet_alexnet.py --workdir runs/xnor_imagenet_alexnet
"""

import ml_collections

PAPER = {"fp": 56.6, "bwn": 56.8, "xnor": 44.2}


def get_config():
    c = ml_collections.ConfigDict()
    c.title = "ImageNet, AlexNet: FP, BWN, XNOR-Net (XNOR-Net paper)"
    c.config = "configs/imagenet_alexnet.py"
    c.methods = ["fp", "bwn", "xnor"]
    c.seeds = [0]
    c.overrides = ml_collections.ConfigDict({"progress_bar": False})
    c.metric = "test_accuracy"
    return c
