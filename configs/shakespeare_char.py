"""Character-level GPT on tiny Shakespeare: float, BitNet b1.58 and 1-bit BitNet at nanoGPT's CPU budget.

    python -m extremeq.train --config configs/shakespeare_char.py:bitnet --workdir runs/shakespeare_bitnet

Variants: ``fp`` (float linear layers), ``bitnet`` (BitNet b1.58: absmean ternary weights, 8-bit
per-token activations, Ma et al., 2024), ``bitnet_1bit`` (the original BitNet's sign weights, Wang
et al., 2023). Embeddings, norms and the (tied) head stay float32 in every variant.

Recipe: nanoGPT's CPU example (Karpathy, nanoGPT README, "I only have a macbook"):
``--block_size=64 --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128 --max_iters=2000
--lr_decay_iters=2000 --dropout=0.0`` on top of ``config/train_shakespeare_char.py`` (AdamW, lr 1e-3
with 100 warm-up iterations and cosine decay to 1e-4, beta2 0.99, weight decay 0.1 on matrices and
embeddings, gradient clipping at 1.0, no biases, tied embeddings). Its README reports a validation
loss of 1.88 after 2000 iterations (its estimate: 20 random batches). Here validation is the whole
validation split in non-overlapping windows of ``block_size`` characters. Differences from nanoGPT:
rotary positions (``model.positions``, as BitNet's LLaMA-style models; "learned" gives GPT-2's) and
GELU in its tanh form.

Learning rate: ``bitnet`` defaults to 2e-3 (cosine to 2e-4), twice the float recipe's. BitNet b1.58
trains its ternary models with larger learning rates than float models of the same size (Ma et
al., 2024, "The Era of 1-bit LLMs: Training Tips, Code and FAQ"): a latent weight's code changes
only once the weight crosses a rounding threshold, so small updates are mostly lost. Measured
here (2,000 steps, seed 0, one CPU device): validation loss 1.910 at 1e-3, 1.868 at 2e-3 (FP: 1.786
at 1e-3); with this file's defaults (2 CPU devices) 1.854 (FP 1.786).
``bitnet_1bit`` keeps 1e-3 (not measured at 2e-3); ``--config.optimizer.learning_rate=...`` overrides.
"""

import ml_collections

VARIANTS = ("fp", "bitnet", "bitnet_1bit")


def get_config(arg: str = "fp") -> ml_collections.ConfigDict:
    variant = arg or "fp"
    if variant not in VARIANTS:
        raise ValueError(f"variant {variant!r} unknown; choose one of {', '.join(VARIANTS)}")
    c = ml_collections.ConfigDict()
    c.task = "lm"  # the language-model loop (per-token cross-entropy on a token source)
    c.seed = 0
    c.max_steps = 2000  # nanoGPT max_iters
    c.batch_size = 12  # sequences per step
    c.eval_every = 250  # steps between validation passes and checkpoints (nanoGPT eval_interval)
    c.eval_batch_size = 256  # validation windows per forward pass
    c.keep_checkpoints = 2
    c.num_devices = -1  # data-parallel over the first N devices (-1: all)
    # On a CPU host, the CLI splits the CPU into this many XLA devices before JAX starts (one per core
    # here: XLA:CPU runs each of this model's small matmuls on one thread; extremeq.train.distributed.split_cpu).
    c.cpu_devices = 2

    c.dataset = ml_collections.ConfigDict()
    c.dataset.name = "shakespeare_char"
    c.dataset.path = ""  # "" = $EXTREMEQ_SHAKESPEARE or ../shared/data/tinyshakespeare.txt

    c.model = ml_collections.ConfigDict()
    c.model.name = "gpt"
    c.model.linear = variant  # fp | bitnet | bitnet_1bit
    c.model.block_size = 64  # context length (characters)
    c.model.num_layers = 4
    c.model.num_heads = 4
    c.model.width = 128
    c.model.mlp_ratio = 4
    c.model.positions = "rope"  # rope | learned
    c.model.tie_embeddings = True

    c.optimizer = ml_collections.ConfigDict()
    c.optimizer.name = "adamw"
    c.optimizer.learning_rate = 1e-3
    c.optimizer.min_learning_rate = 1e-4  # cosine decay ends here, at max_steps
    c.optimizer.warmup_steps = 100
    c.optimizer.b1 = 0.9
    c.optimizer.b2 = 0.99
    c.optimizer.weight_decay = 0.1  # on kernels and embeddings (ndim >= 2), not on norm scales
    c.optimizer.grad_clip = 1.0  # global norm; 0 = off
    if variant == "bitnet":  # ternary latent weights need larger steps (module docstring)
        c.optimizer.learning_rate = 2e-3
        c.optimizer.min_learning_rate = 2e-4
    return c
