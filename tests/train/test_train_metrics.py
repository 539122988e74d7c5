"""MetricWriter: JSON lines, non-finite values as null, TensorBoard scalars when tensorboardX exists,
and truncation of the lines of epochs a resumed run redoes."""

import json
import math
import sys
import types

from extremeq.train import metrics as metrics_lib


def test_jsonl_tensorboard_and_truncate(tmp_path, monkeypatch):
    logged = []

    class FakeWriter:
        def __init__(self, logdir):
            self.logdir = logdir

        def add_scalar(self, tag, value, step):
            logged.append((tag, value, step))

        def flush(self):
            pass

        def close(self):
            pass

    monkeypatch.setitem(sys.modules, "tensorboardX", types.SimpleNamespace(SummaryWriter=FakeWriter))
    w = metrics_lib.MetricWriter(str(tmp_path))
    w.write({"epoch": 1, "step": 10, "train_loss": 0.5, "test_accuracy": 0.75})
    w.write({"epoch": 2, "step": 20, "train_loss": math.nan, "test_accuracy": 0.8})
    w.close()
    rows = [json.loads(l) for l in open(tmp_path / "metrics.jsonl")]
    assert rows[0] == {"epoch": 1, "step": 10, "train_loss": 0.5, "test_accuracy": 0.75}
    assert rows[1]["train_loss"] is None  # NaN is not valid JSON
    assert ("train_loss", 0.5, 10) in logged and ("test_accuracy", 0.8, 20) in logged
    assert not any(tag == "train_loss" and step == 20 for tag, _, step in logged)
    metrics_lib.truncate_metrics(str(tmp_path), 1)
    assert [r["epoch"] for r in metrics_lib.read_metrics(str(tmp_path))] == [1]
