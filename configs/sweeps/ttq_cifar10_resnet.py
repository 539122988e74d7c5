"""Sweep (recipe, needs a GPU; data: the CIFAR-10 JPEG archive, see configs/cifar10_resnet.py): the TTQ paper's CIFAR-10 table (Zhu, Han,
Mao, Dally 2017, Table 1): ResNet-20/32/44/56, FP 91.77/92.33/92.82/93.20, TTQ 91.13/92.37/92.98/
93.56; TWN (Li et al. 2016) on the same networks as the third column (no paper number).
Recipe: configs/cifar10_resnet.py (He et al.'s FP schedule; TTQ: wd 2e-4, x0.1 at 82/123/150).

    python -m extremeq.sweep --config configs/sweeps/ttq_cifar10_resnet.py --workdir runs/ttq_cifar10_resnet

The TTQ paper fine-tunes TTQ from the trained FP model: each ``<model>:ttq`` row starts from this
sweep's ``<model>:fp`` run of the same seed (``method_overrides`` with ``"@<model>:fp"``), which
therefore runs first.
"""

import ml_collections

MODELS = ("resnet20", "resnet32", "resnet44", "resnet56")
# Top-1 % from the papers' tables; None: the paper has no number for this row.
PAPER = {}
for _m, _fp, _ttq in zip(MODELS, (91.77, 92.33, 92.82, 93.20), (91.13, 92.37, 92.98, 93.56)):
    PAPER[f"{_m}:fp"], PAPER[f"{_m}:twn"], PAPER[f"{_m}:ttq"] = _fp, None, _ttq


def get_config():
    c = ml_collections.ConfigDict()
    c.title = "CIFAR-10, ResNet-20/32/44/56: FP, TWN, TTQ (TTQ paper, Table 1)"
    c.config = "configs/cifar10_resnet.py"
    c.methods = [f"{m}:{q}" for m in MODELS for q in ("fp", "twn", "ttq")]
    c.seeds = [0]
    c.overrides = ml_collections.ConfigDict({"progress_bar": False})
    c.method_overrides = ml_collections.ConfigDict({f"{m}:ttq": {"quant": {"init_from": f"@{m}:fp"}} for m in MODELS})
    c.metric = "test_accuracy"
    return c
