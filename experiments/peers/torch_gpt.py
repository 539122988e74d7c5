"""PyTorch peer of ``experiments/bench_lm_step.py``: a character-level GPT training step with
nanoGPT's CPU configuration, one request at a time.

Runs inside its own virtualenv (PyTorch is a benchmark peer, never a dependency of extremeq):

    python3 -m venv .peers/torch && .peers/torch/bin/pip install torch==2.13.0 numpy

The model of nanoGPT's CPU example (Karpathy, nanoGPT README): 4 pre-norm blocks, 4 heads, width 128,
context 64, learned positions, LayerNorm without bias, no biases, exact GELU, MLP 4x, tied
embeddings, N(0, 0.02) init (residual projections 0.02 / sqrt(2 * layers)); the step: a batch of 12
random windows of 64 tokens from a token array in memory, forward, cross-entropy, backward,
gradient clipping at global norm 1.0, AdamW (lr 1e-3, betas 0.9 / 0.99, weight decay 0.1 on
matrices), float32, eager (nanoGPT's ``--compile=False``). Written for this benchmark from the
architecture's description; no code is copied from nanoGPT.

Protocol (stdin/stdout, one line each): ``steps N`` runs N steps and answers their seconds as a JSON
list (``time.perf_counter`` around each step; ``loss.item()`` waits for it); ``versions`` answers
the versions; ``quit`` ends.
"""

from __future__ import annotations

import json
import math
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

VOCAB, BLOCK, LAYERS, HEADS, WIDTH, BATCH = 65, 64, 4, 4, 128, 12


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(WIDTH, 3 * WIDTH, bias=False)
        self.proj = nn.Linear(WIDTH, WIDTH, bias=False)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.qkv(x).split(c, dim=2)
        q, k, v = (a.view(b, t, HEADS, c // HEADS).transpose(1, 2) for a in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(b, t, c))


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln_1 = nn.LayerNorm(WIDTH, bias=False)
        self.attn = Attention()
        self.ln_2 = nn.LayerNorm(WIDTH, bias=False)
        self.fc = nn.Linear(WIDTH, 4 * WIDTH, bias=False)
        self.fc_proj = nn.Linear(4 * WIDTH, WIDTH, bias=False)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.fc_proj(F.gelu(self.fc(self.ln_2(x))))


class GPT(nn.Module):
    def __init__(self):
        super().__init__()
        self.wte = nn.Embedding(VOCAB, WIDTH)
        self.wpe = nn.Embedding(BLOCK, WIDTH)
        self.blocks = nn.ModuleList(Block() for _ in range(LAYERS))
        self.ln_f = nn.LayerNorm(WIDTH, bias=False)
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                std = 0.02 / math.sqrt(2 * LAYERS) if name.endswith(("proj.weight",)) else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(self, idx, targets):
        pos = torch.arange(idx.shape[1])
        x = self.wte(idx) + self.wpe(pos)
        for block in self.blocks:
            x = block(x)
        logits = self.ln_f(x) @ self.wte.weight.T
        return F.cross_entropy(logits.view(-1, VOCAB), targets.view(-1))


def main():
    torch.manual_seed(0)
    data = torch.randint(0, VOCAB, (1_000_000,))
    model = GPT()
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}], lr=1e-3, betas=(0.9, 0.99)
    )

    def step():
        ix = torch.randint(len(data) - BLOCK - 1, (BATCH,))
        x = torch.stack([data[i : i + BLOCK] for i in ix])
        y = torch.stack([data[i + 1 : i + 1 + BLOCK] for i in ix])
        loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] == "quit":
            break
        if cmd[0] == "versions":
            print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads()}), flush=True)
        elif cmd[0] == "steps":
            times = []
            for _ in range(int(cmd[1])):
                t0 = time.perf_counter()
                step()
                times.append(time.perf_counter() - t0)
            print(json.dumps(times), flush=True)


if __name__ == "__main__":
    main()
