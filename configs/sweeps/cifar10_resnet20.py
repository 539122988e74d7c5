"""Sweep: the CIFAR-10 ResNet-20 table on the JPEG copy of CIFAR-10 (``$EXTREMEQ_CIFAR10``, else
``../shared/data/cifar10_jpeg.tar.gz``): FP, BWN, TWN, TTQ fine-tuned from this sweep's FP run (the
TTQ paper's protocol), XNOR. Recipes: configs/cifar10_resnet.py (He et al.'s FP schedule, 164
epochs; TTQ: wd 2e-4, x0.1 at 82/123/150), first conv and last dense in float.

    python -m extremeq.sweep --config configs/sweeps/cifar10_resnet20.py --workdir runs/cifar10_resnet20
    experiments/gpu_cifar.sh OUTDIR        # the same sweep, five lanes side by side on one GPU

The JPEG copy is not the original pixels: compare each row's gap to our FP with the paper's gap
(``PAPER``: quantized and FP top-1 % of the paper that reports the row, ANCHORS of the project).
Variant ``dry``: 2 epochs, batch 32, for a CPU dry run of experiments/gpu_cifar.sh on a tiny archive.
IR-Net's own 1/1 recipe (Libra-PB, EDE) is not implemented, so its row is not here (see
configs/sweeps/irnet_cifar10_resnet20.py for extremeq's nearest methods).
"""

import ml_collections

METHODS = ("resnet20:fp", "resnet20:bwn", "resnet20:twn", "resnet20:ttq", "resnet20:xnor")
# method -> (paper's quantized top-1 %, that paper's FP top-1 %, source); None: no anchored number.
PAPER = {
    "resnet20:fp": (91.77, 91.77, "TTQ paper, Table 1 (He et al.'s ResNet-20)"),
    "resnet20:ttq": (91.13, 91.77, "TTQ (Zhu et al. 2017), Table 1"),
    "resnet20:bwn": (90.8, 91.7, "IR-Net (Qin et al. 2020), W1/A32 row"),
    "resnet20:twn": None,
    "resnet20:xnor": None,
}


def get_config(arg=None):
    c = ml_collections.ConfigDict()
    c.title = "CIFAR-10 (JPEG copy), ResNet-20: FP, BWN, TWN, TTQ fine-tuned from FP, XNOR"
    c.config = "configs/cifar10_resnet.py"
    c.methods = list(METHODS)
    c.seeds = [0]
    c.overrides = ml_collections.ConfigDict({"progress_bar": False, "checkpoint": {"keep": 1}})
    c.method_overrides = ml_collections.ConfigDict({"resnet20:ttq": {"quant": {"init_from": "@resnet20:fp"}}})
    c.metric = "test_accuracy"
    if arg == "dry":
        c.overrides = ml_collections.ConfigDict(
            {
                "progress_bar": False,
                "num_epochs": 2,
                "batch_size": 32,
                "eval_batch_size": 50,
                "checkpoint": {"keep": 1, "every_epochs": 1},
                "optimizer": {"decay_epochs": [1]},
            }
        )
    elif arg:
        raise ValueError(f"variant {arg!r} unknown; use none or 'dry'")
    return c
