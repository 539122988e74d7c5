"""Per-epoch metrics: ``workdir/metrics.jsonl`` (one JSON object per epoch), TensorBoard when
``tensorboardX`` is installed, and the quantization statistics of a model.

Quantization statistics (Helwegen et al. 2019 for the flip ratio; Li et al. 2016 / Zhu et al. 2017
for ternary sparsity and the TTQ scales):

* ``flip_ratio``  = #{binary weights w : sign(w_end) != sign(w_start)} / #{binary weights}, over
  one epoch, sign(0) = +1, over the latent kernels of the layers whose weight quantizer is 1-bit;
* ``ternary_sparsity`` = #{Q(w) == 0} / #{ternary weights}, over the quantized kernels of the
  layers whose method's precision is "ternary" (twn, ttq, bitnet);
* ``<scale>_mean`` for each learned scale of a method (TTQ: ``ttq_wp_mean``, ``ttq_wn_mean``) =
  mean over the layers that learn it of their (mean) value.
"""

from __future__ import annotations

import json
import math
import os


def metrics_path(workdir: str) -> str:
    return os.path.join(workdir, "metrics.jsonl")


def read_metrics(workdir: str) -> list[dict]:
    path = metrics_path(workdir)
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def truncate_metrics(workdir: str, num_epochs_done: int) -> None:
    """Drops lines of epochs past ``num_epochs_done`` (written before a crash, redone on resume)."""
    rows = [r for r in read_metrics(workdir) if r.get("epoch", 0) <= num_epochs_done]
    with open(metrics_path(workdir), "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def _clean(v):
    v = float(v)
    return v if math.isfinite(v) else None


class MetricWriter:
    """Appends one JSON line per epoch; mirrors scalars to TensorBoard if tensorboardX is present."""

    def __init__(self, workdir: str, enabled: bool = True):
        self.workdir = workdir
        self.enabled = enabled
        self._tb = None
        if enabled:
            try:
                from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top

                self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))
            except ImportError:
                self._tb = None

    def write(self, row: dict) -> None:
        if not self.enabled:
            return
        row = {k: (_clean(v) if isinstance(v, float) else v) for k, v in row.items()}
        with open(metrics_path(self.workdir), "a") as f:
            f.write(json.dumps(row) + "\n")
        if self._tb is not None:
            step = row.get("step", 0)
            for k, v in row.items():
                if isinstance(v, (int, float)) and v is not None and k not in ("step",):
                    self._tb.add_scalar(k, v, step)
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
