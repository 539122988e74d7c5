"""Sweep (recipe, needs a GPU; data: the CIFAR-10 JPEG archive or TFDS): IR-Net's CIFAR-10 ResNet-20 rows (Qin et al.
2020): FP 91.7, W1/A32 90.8, W1/A1 86.5.

    python -m extremeq.sweep --config configs/sweeps/irnet_cifar10_resnet20.py --workdir runs/irnet_cifar10_resnet20

What is and is not IR-Net here: the rows use extremeq's methods closest to IR-Net's bit widths,
1/32 = "bwn" (alpha * sign(W) per output channel) and 1/1 = "bnn" (sign weights, sign inputs,
hardtanh, clipped STE; BatchNorm absorbs the weight scale), first conv and last dense in float as
in IR-Net. IR-Net's own pieces (Libra-PB: weights balanced and standardized before sign, with a
power-of-two scale; EDE: the tanh-shaped estimator annealed over training) are not implemented, so
expect these rows below the paper. Schedule (IR-Net's released code, as recalled, not verified):
SGD momentum 0.9, lr 0.1 cosine, weight decay 1e-4, 400 epochs.
"""

import ml_collections

PAPER = {"resnet20:fp": 91.7, "resnet20:bwn": 90.8, "resnet20:bnn": 86.5}


def get_config():
    c = ml_collections.ConfigDict()
    c.title = "CIFAR-10, ResNet-20: FP, W1/A32, W1/A1 (IR-Net rows, extremeq's bwn / bnn)"
    c.config = "configs/cifar10_resnet.py"
    c.methods = ["resnet20:fp", "resnet20:bwn", "resnet20:bnn"]
    c.seeds = [0]
    c.overrides = ml_collections.ConfigDict(
        {
            "num_epochs": 400,
            "progress_bar": False,
            "optimizer": {"schedule": "cosine", "decay_epochs": (), "weight_decay": 1e-4},
        }
    )
    c.metric = "test_accuracy"
    return c
