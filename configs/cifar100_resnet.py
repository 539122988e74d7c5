"""CIFAR-100, ResNet-20/32/44/56: the CIFAR-10 recipe of ``cifar10_resnet.py`` (He et al. 2016;
TTQ's for ``ttq``) on 100 classes. None of the papers cited here reports these networks on CIFAR-100,
so there is no published number to match; the recipe is carried over unchanged (an assumption).
Variant: ``resnet32:twn`` etc.
"""

import pathlib
import runpy

# The sibling recipe file, loaded by path (config files are not a package).
_cifar10 = runpy.run_path(str(pathlib.Path(__file__).with_name("cifar10_resnet.py")))
MODELS = _cifar10["MODELS"]


def get_config(arg=None):
    c = _cifar10["get_config"](arg)
    c.dataset.name = "cifar100"
    return c
