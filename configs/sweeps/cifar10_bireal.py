"""Sweep: Bi-Real Net and ReActNet rows for the CIFAR-10 table (JPEG copy of CIFAR-10,
``$EXTREMEQ_CIFAR10``, else ``../shared/data/cifar10_jpeg.tar.gz``), recipe configs/cifar10_bireal.py
(Adam 1e-3, cosine over 200 epochs, batch 128; stem, head and 1x1 downsampling convs float).

    python -m extremeq.sweep --config configs/sweeps/cifar10_bireal.py --workdir runs/cifar10_bireal

Rows: each architecture's real-valued twin (``fp``, the same blocks without binarization) and its
1-bit weights + 1-bit activations network (``bnn``, sign without scale; Bi-Real's ApproxSign
estimator), for ResNet-20 and the CIFAR ResNet-18. Neither paper's CIFAR-10 number was checked,
so ``PAPER`` anchors none: a row stands against its own ``fp`` twin. Variant ``dry``: 2 epochs,
batch 32 (a CPU dry run of the sweep on a tiny archive).
"""

import ml_collections

METHODS = (
    "bireal_resnet20:fp",
    "bireal_resnet20:bnn",
    "reactnet_resnet20:fp",
    "reactnet_resnet20:bnn",
    "bireal_resnet18:bnn",
    "reactnet_resnet18:fp",
    "reactnet_resnet18:bnn",
)
# method -> (paper's quantized top-1 %, that paper's FP top-1 %, source); None: no checked CIFAR-10 number.
PAPER = {m: None for m in METHODS}


def get_config(arg=None):
    c = ml_collections.ConfigDict()
    c.title = "CIFAR-10 (JPEG copy): Bi-Real Net and ReActNet ResNet-20 / ResNet-18, FP twin and 1-bit (bnn)"
    c.config = "configs/cifar10_bireal.py"
    c.methods = list(METHODS)
    c.seeds = [0]
    c.overrides = ml_collections.ConfigDict({"progress_bar": False, "checkpoint": {"keep": 1}})
    c.metric = "test_accuracy"
    if arg == "dry":
        c.overrides = ml_collections.ConfigDict(
            {
                "progress_bar": False,
                "num_epochs": 2,
                "batch_size": 32,
                "eval_batch_size": 50,
                "checkpoint": {"keep": 1, "every_epochs": 1},
            }
        )
    elif arg:
        raise ValueError(f"variant {arg!r} unknown; use none or 'dry'")
    return c
