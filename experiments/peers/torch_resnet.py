"""PyTorch peer of ``experiments/bench_train_peers.py``: CIFAR ResNet-20 train steps, one per request.

Runs inside its own virtualenv (PyTorch is a benchmark peer, never a dependency of extremeq):

    python3 -m venv .peers/torch && .peers/torch/bin/pip install torch==2.13.0 numpy

The same network as extremeq's ``resnet20`` (He et al. 2016: 3x3 stem 16 -> BN -> ReLU, three
stages of three basic blocks with 16/32/64 channels, option-A zero-pad shortcuts, global average
pool, dense head), the same step (pad-4 random crop + horizontal flip of a batch gathered from
uint8 images held in memory, normalize, forward, cross-entropy, backward, SGD momentum 0.9 with
weight decay 1e-4), float32, eager. Variants: ``fp_nchw``, ``fp_cl`` (channels_last) and
``bwn_cl`` (BWN: alpha * sign(W) per output channel with the identity straight-through estimator,
first conv and head float, channels_last).

Protocol (stdin/stdout, one line each): the parent sends a variant name, the worker runs one step
of it and answers the step's seconds (``time.perf_counter`` around the step; eager PyTorch on the
CPU has finished when ``loss.item()`` returns). ``versions`` answers the versions, ``quit`` ends.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class BWNConv(nn.Conv2d):
    """Conv with W_b = alpha sign(W), alpha = mean |W| per output channel; identity STE."""

    def forward(self, x):
        w = self.weight
        alpha = w.abs().mean(dim=(1, 2, 3), keepdim=True)
        wq = w + (alpha * torch.where(w >= 0, 1.0, -1.0) - w).detach()
        return F.conv2d(x, wq, None, self.stride, self.padding)


class Block(nn.Module):
    def __init__(self, cin, cout, stride, conv):
        super().__init__()
        self.conv1 = conv(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout, momentum=0.1, eps=1e-5)
        self.conv2 = conv(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout, momentum=0.1, eps=1e-5)
        self.stride, self.pad = stride, (cout - cin) // 2

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        s = x[:, :, :: self.stride, :: self.stride] if self.stride != 1 else x
        if self.pad:
            s = F.pad(s, (0, 0, 0, 0, self.pad, self.pad))
        return F.relu(y + s)


class ResNet20(nn.Module):
    def __init__(self, conv=nn.Conv2d, num_classes=10):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.stem_bn = nn.BatchNorm2d(16)
        blocks, cin = [], 16
        for stage, cout in enumerate((16, 32, 64)):
            for i in range(3):
                blocks.append(Block(cin, cout, 2 if stage > 0 and i == 0 else 1, conv))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(64, num_classes)

    def forward(self, x):
        x = F.relu(self.stem_bn(self.stem(x)))
        x = self.blocks(x)
        return self.head(x.mean(dim=(2, 3)))


def make_step(variant, batch, images, labels, seed=0):
    torch.manual_seed(seed)
    model = ResNet20(BWNConv if variant.startswith("bwn") else nn.Conv2d)
    cl = variant.endswith("_cl")
    fmt = torch.channels_last if cl else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    mean = torch.tensor([0.49, 0.48, 0.45]).view(1, 3, 1, 1) * 255
    std = torch.tensor([0.25, 0.24, 0.26]).view(1, 3, 1, 1) * 255
    gen = torch.Generator().manual_seed(seed)
    n = images.shape[0]
    ar = torch.arange(32)

    def step():
        idx = torch.randint(0, n, (batch,), generator=gen)
        x = F.pad(images[idx].float(), (4, 4, 4, 4))  # [B, 3, 40, 40]
        oy = torch.randint(0, 9, (batch,), generator=gen)
        ox = torch.randint(0, 9, (batch,), generator=gen)
        rows = (oy[:, None] + ar)[:, None, :, None].expand(batch, 3, 32, 40)
        x = torch.gather(x, 2, rows)
        cols = (ox[:, None] + ar)[:, None, None, :].expand(batch, 3, 32, 32)
        x = torch.gather(x, 3, cols)
        flip = torch.rand(batch, generator=gen) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
        x = ((x - mean) / std).contiguous(memory_format=fmt)
        loss = F.cross_entropy(model(x), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    return step


def main():
    batch = int(sys.argv[1]) if len(sys.argv) > 1 else 128
    variants = sys.argv[2].split(",") if len(sys.argv) > 2 else ["fp_nchw", "fp_cl", "bwn_cl"]
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, (batch * 4, 3, 32, 32), dtype=np.uint8))
    labels = torch.from_numpy(rng.integers(0, 10, (batch * 4,), dtype=np.int64))
    steps = {v: make_step(v, batch, images, labels) for v in variants}
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "quit":
            break
        if cmd == "versions":
            out = {
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "mkldnn": torch.backends.mkldnn.is_available(),
            }
            print(json.dumps(out), flush=True)
            continue
        t0 = time.perf_counter()
        loss = steps[cmd]()
        dt = time.perf_counter() - t0
        if not np.isfinite(loss):
            print(json.dumps({"error": f"{cmd}: non-finite loss"}), flush=True)
            continue
        print(json.dumps({"seconds": dt}), flush=True)


if __name__ == "__main__":
    main()
