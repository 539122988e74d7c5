"""MNIST, MLP 784-4096-4096-4096-10 with binary weights and activations: BinaryNet / BNN
(Courbariaux, Hubara, Soudry, El-Yaniv, Bengio 2016), test error 0.96% (accuracy 99.04).

Recipe from the authors' released Theano code (MatthieuCourbariaux/BinaryNet Train-time/mnist.py,
read for this file): 3 hidden layers of 4096 units; dense -> BatchNorm (alpha 0.1 -> Flax momentum
0.9, epsilon 1e-4) -> binary htanh -> dropout 0.5; dropout 0.2 on the input; output dense ->
BatchNorm; every dense layer has binary weights (first and last too); deterministic sign; Adam,
lr 3e-3 decayed exponentially per epoch to 3e-7 over 1000 epochs; batch 100; first 50000
training images (the last 10000 are validation); inputs scaled to [-1, 1], not binarized.
The first layer has binary weights and keeps real-valued inputs (quant.first = "weights").
The code's squared hinge loss (L2-SVM output, ``loss = "squared_hinge"``) and its per-layer
learning-rate scale 1/H_Glorot on the binary weights (``optimizer.binary_lr_scale = "glorot"``,
W_LR_scale = "Glorot", H = 1) and its U(-1, 1) start of the binary layers' latent weights
(``quant.latent_init = "uniform"``) are set too. The fp variant keeps the hinge loss, without the scale.

Variants: bnn (the paper), fp (same network in float, ReLU), any other method.
"""

from extremeq.train.config import BINARY_METHODS, default_config, mnist_path
from extremeq.train.variants import apply_method, exponential_decay, parse_variant


def get_config(arg=None):
    _, method, options = parse_variant(arg)
    c = default_config()
    c.dataset.name = "mnist"
    c.dataset.source = "npz"
    c.dataset.path = mnist_path()
    c.dataset.limit_train = 50000
    c.dataset.validation = True  # the last 10000: val_accuracy per epoch, test at best val in final.json
    c.model.name = "mlp"
    c.model.hidden = (4096, 4096, 4096)
    c.model.activation = "relu"  # "hardtanh" for bnn/xnor (apply_method)
    c.model.input_dropout = 0.2
    c.model.dropout = 0.5
    c.model.head_bn = True
    c.model.bn_momentum = 0.9
    c.model.bn_epsilon = 1e-4
    c.num_epochs = 1000
    c.batch_size = 100
    c.eval_batch_size = 1024
    c.optimizer.name = "adam"
    c.optimizer.learning_rate = 3e-3
    c.optimizer.schedule = "step"
    c.optimizer.decay_epochs, c.optimizer.decay_factor = exponential_decay(3e-3, 3e-7, c.num_epochs)
    c.optimizer.weight_decay = 0.0
    c.checkpoint.every_epochs = 25
    c.loss = "squared_hinge"
    c = apply_method(c, method, options, first="weights", last="same")
    if c.quant.method in BINARY_METHODS:
        c.optimizer.binary_lr_scale = "glorot"
        c.quant.latent_init = "uniform"  # the code's binary layers start U(-H, H), H = 1
    return c
