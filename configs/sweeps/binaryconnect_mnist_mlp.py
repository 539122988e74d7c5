"""Sweep: BinaryConnect, Table 2, MNIST permutation-invariant MLP 784-1024-1024-1024-10: no
regularizer (FP) 98.70, BinaryConnect det. 98.71, stoch. 98.82 (Courbariaux, Bengio, David 2015;
ANCHORS.md section 2), three seeds, on real MNIST (first 50000 training images, as the paper).

    python -m extremeq.sweep --config configs/sweeps/binaryconnect_mnist_mlp.py --workdir runs/binaryconnect_mnist_mlp

CPU budget version of configs/mnist_mlp.py's recipe (Adam, batch 200, BN on every layer, every
dense layer binary, latent weights clipped to [-1, 1]): 6 epochs instead of 250, cosine decay of
lr 1e-3 instead of the per-epoch exponential 1e-3 -> 3e-6 over 250 epochs; softmax cross-entropy
instead of the paper's squared hinge loss.
"""

import ml_collections

PAPER = {"fp": 98.70, "bc": 98.71, "bc_stochastic": 98.82}
# Printed under the table by experiments/repro_mnist.py.
NOTES = """BC stoch. does not train here: 9.80% (chance) after 3 epochs (seed 0; train accuracy 11.5%,
flip ratio 12% in epoch 1), so it was not rerun for the 6-epoch table. Likely cause: the zoo's
latent weights start lecun-normal (std ~0.03 for 1024 inputs), so hard_sigmoid(w) ~ 0.5 and every
step samples nearly random +-1 weights; BinaryConnect's released code initialises the latent weights
U(-H, H) (H = 1 or Glorot's bound) and scales the learning rate per layer by 1/H. Not proven: on
the claims' MLP 3x256 (10000 images, 3 epochs) bc_stochastic is also at chance from scratch (9.80)
and when started (quant.init_from) from a trained det. run (12.55; det. itself 95.04), whose latent
weights are still small after 3 epochs; a bug in the stochastic path is not ruled out. Open."""


def get_config():
    c = ml_collections.ConfigDict()
    c.title = "MNIST, MLP 3x1024 (BinaryConnect, Table 2): 6 epochs"
    c.config = "configs/mnist_mlp.py"
    c.methods = ["fp", "bc", "bc_stochastic"]
    c.seeds = [0, 1, 2]
    c.overrides = ml_collections.ConfigDict({
        "num_epochs": 6,
        "progress_bar": False,
        "optimizer": {"schedule": "cosine", "decay_epochs": []},
        "checkpoint": {"every_epochs": 6},
    })
    c.metric = "test_accuracy"
    return c
