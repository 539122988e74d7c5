"""Sweep (recipe, needs ImageNet 2012 prepared for TFDS and GPUs): ResNet-18 on ImageNet, top-1:
FP 69.3 (He et al.), BWN 60.8 and XNOR-Net 51.2 (Rastegari et al. 2016), TWN 61.8 (Li et al. 2016,
whose own FP baseline is 65.4), TTQ 66.6 (Zhu et al. 2017).
Recipe: configs/imagenet_resnet18.py (per-method schedules in that file).

    python -m extremeq.sweep --config configs/sweeps/imagenet_resnet18.py --workdir runs/imagenet_resnet18

TTQ fine-tunes from FP in the paper: run the FP row first, then
    python -m extremeq.train --config configs/imagenet_resnet18.py:ttq --workdir runs/resnet18_ttq_ft \
        --config.quant.init_from=runs/imagenet_resnet18/fp/seed0
"""

import ml_collections

PAPER = {"fp": 69.3, "bwn": 60.8, "xnor": 51.2, "twn": 61.8, "ttq": 66.6}


def get_config():
    c = ml_collections.ConfigDict()
    c.title = "ImageNet, ResNet-18: FP, BWN, XNOR-Net, TWN, TTQ"
    c.config = "configs/imagenet_resnet18.py"
    c.methods = ["fp", "bwn", "xnor", "twn", "ttq"]
    c.seeds = [0]
    c.overrides = ml_collections.ConfigDict({"progress_bar": False})
    c.metric = "test_accuracy"
    return c
