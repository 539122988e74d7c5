"""MNIST, permutation-invariant MLP 784-1024-1024-1024-10: BinaryConnect (Courbariaux, Bengio,
David, NeurIPS 2015, Sec. 3.1 and Table 2).

Paper (its Sec. 3.1 as quoted in third-party code; the paper itself not re-read): "3 hidden layers of 1024 Rectifier Linear Units
(ReLU) and a L2-SVM output layer ... The square hinge loss is minimized with SGD without momentum.
We use an exponentially decaying learning rate. We use Batch Normalization with a minibatch of
size 200", no data augmentation, no dropout for the BinaryConnect rows; the last 10000 training
images are the validation set (limit_train = 50000). Table 2 test error: no regularizer 1.30%,
BinaryConnect det. 1.29%, stoch. 1.18% (accuracy 98.71 / 98.82).

Optimizer: the authors' released Theano code (MatthieuCourbariaux/BinaryConnect mnist.py, read
for this file): Adam, lr 1e-3 decayed exponentially per epoch to 3e-6 over 250 epochs, every dense
layer binary (first and last too: first/last = "same"), BatchNorm on every layer including the
output (alpha 0.15 -> Flax momentum 0.85, epsilon 1e-4), inputs centred. That released code used
2048 units and batch 100; an earlier version used 1024 units, batch 200, BN alpha 0.33, 1000 epochs
of SGD (lr 3 -> 0.1). Here: the paper's 1024 units and batch 200 with the released Adam schedule,
the squared hinge loss (``loss = "squared_hinge"``, every variant) and, for the binary variants,
the code's per-layer learning-rate scale 1/H_Glorot of the binary weights
(``optimizer.binary_lr_scale = "glorot"``; W_LR_scale = "Glorot", H = 1).

Variants: fp (the "no regularizer" baseline), bc, bc_stochastic; any other method also loads.
"""

from extremeq.train.config import default_config, mnist_path
from extremeq.train.variants import apply_method, exponential_decay, parse_variant


def get_config(arg=None):
    _, method, options = parse_variant(arg)
    c = default_config()
    c.dataset.name = "mnist"
    c.dataset.source = "npz"
    c.dataset.path = mnist_path()
    c.dataset.limit_train = 50000  # paper: last 10000 training images held out for validation
    c.dataset.validation = True  # the last 10000: val_accuracy per epoch, test at best val in final.json
    c.model.name = "mlp"
    c.model.hidden = (1024, 1024, 1024)
    c.model.activation = "relu"
    c.model.head_bn = True
    c.model.bn_momentum = 0.85
    c.model.bn_epsilon = 1e-4
    c.num_epochs = 250
    c.batch_size = 200
    c.eval_batch_size = 1024
    c.optimizer.name = "adam"
    c.optimizer.learning_rate = 1e-3
    c.optimizer.schedule = "step"
    c.optimizer.decay_epochs, c.optimizer.decay_factor = exponential_decay(1e-3, 3e-6, c.num_epochs)
    c.optimizer.weight_decay = 0.0
    c.checkpoint.every_epochs = 10
    c.loss = "squared_hinge"
    c = apply_method(c, method, options, first="same", last="same")
    if c.quant.method in ("bc", "bc_stochastic"):
        c.optimizer.binary_lr_scale = "glorot"  # 1/H_Glorot = 26-37 for these layers
        # BinaryConnect's code starts the latent weights U(-H, H) with H = 1; from a small lecun init
        # the stochastic sign is a coin flip (P(+1) = hard_sigmoid(w) ~ 1/2) and nothing trains.
        c.quant.latent_init = "uniform"
    if c.quant.method == "bc_stochastic":
        # The paper tests its stochastic rows with the real-valued weights (Sec. 2.6): E[w_b] = clip(W).
        c.quant.stochastic_eval = "mean"
    return c
