"""MNIST, LeNet-5 (32C5-MP2-64C5-MP2-512FC-classifier): the TWN paper (Li, Zhang, Liu 2016,
"Ternary Weight Networks", Table 2: FP 99.41, BWN 99.05, TWN 99.35; as recalled).

Recipe (TWN paper, Table 1, as recalled, not verified): SGD momentum 0.9, weight decay 1e-4,
batch 50, lr 0.01 divided by 10 at epochs 15 and 25; BatchNorm after every weight layer; no data
augmentation. The maximum epoch count was not verified: 40 here. The authors' later PyTorch port
(Thinklab-SJTU/twns cls/main_mnist.py, read for this file) differs: Adam lr 1e-3, weight decay
1e-5, batch 50, lr x0.1 every 15 epochs, 100 epochs; its LeNet-5 ternarizes the first conv and
keeps the last layer in float (first = "same", last = "fp" here), unpadded 5x5 convs (4*4*64 = 1024
flatten), BN after the 512-wide dense layer.

Variants: fp, bwn, twn (the paper's rows); any other method also loads.
"""

from extremeq.train.config import default_config, mnist_path
from extremeq.train.variants import apply_method, parse_variant


def get_config(arg=None):
    _, method, options = parse_variant(arg)
    c = default_config()
    c.dataset.name = "mnist"
    c.dataset.source = "npz"
    c.dataset.path = mnist_path()
    c.model.name = "lenet5"
    c.model.activation = "relu"
    c.num_epochs = 40
    c.batch_size = 50
    c.eval_batch_size = 1024
    c.optimizer.name = "sgd"
    c.optimizer.learning_rate = 0.01
    c.optimizer.momentum = 0.9
    c.optimizer.weight_decay = 1e-4
    c.optimizer.schedule = "step"
    c.optimizer.decay_epochs = (15, 25)
    c.optimizer.decay_factor = 0.1
    c.checkpoint.every_epochs = 5
    return apply_method(c, method, options, first="same", last="fp")
