"""experiments/repro_mnist.py's report on fabricated run directories: the table's mean, sample std,
gap to the paper and 0.3-point verdict against NumPy, and the test accuracy at the best validation
epoch read from final.json."""

import json
import os

import numpy as np
import pytest
import repro_mnist  # experiments/ is on the path (tests/conftest.py)

ACC = {"fp": [0.9870, 0.9860, 0.9859], "bc": [0.9859, 0.9853, 0.9867], "bc_stochastic": [0.9860, 0.9862, 0.9853]}
AT_BEST_VAL = {
    "fp": [0.9866, 0.9861, 0.9858],
    "bc": [0.9855, 0.9851, 0.9869],
    "bc_stochastic": [0.9861, 0.9859, 0.9850],
}


def _fake_runs(workdir):
    for method, accs in ACC.items():
        for seed, acc in enumerate(accs):
            d = repro_mnist.run_dir(workdir, "bc_gpu", method, seed)
            os.makedirs(d)
            with open(os.path.join(d, "config.json"), "w") as f:
                f.write("{}")
            rows = [
                dict(
                    epoch=e,
                    test_accuracy=a,
                    train_accuracy=a,
                    train_loss=1.0 / e,
                    test_loss=1.0 / e,
                    time_s=1.0,
                    flip_ratio=0.1 / e,
                )
                for e, a in ((1, acc - 0.01), (2, acc))
            ]
            with open(os.path.join(d, "metrics.jsonl"), "w") as f:
                f.write("\n".join(json.dumps(r) for r in rows) + "\n")
            with open(os.path.join(d, "final.json"), "w") as f:
                json.dump({"test_accuracy": acc, "test_accuracy_at_best_val": AT_BEST_VAL[method][seed]}, f)


def test_report_table_matches_numpy(tmp_path, monkeypatch):
    monkeypatch.setattr(repro_mnist, "RESULTS", str(tmp_path / "results"))
    os.makedirs(tmp_path / "results")
    _fake_runs(str(tmp_path / "runs"))
    rows = repro_mnist.report_table("bc_gpu", str(tmp_path / "runs"))
    _, paper = repro_mnist.load_sweep("bc_gpu")
    text = (tmp_path / "results" / "mnist_bc_gpu.md").read_text()
    for r in rows:
        acc = 100 * np.array(ACC[r["method"]])
        assert r["mean"] == pytest.approx(acc.mean()) and r["std"] == pytest.approx(acc.std(ddof=1))
        label = repro_mnist.LABELS[r["method"]]
        gap = acc.mean() - paper[r["method"]]
        line = next(l for l in text.splitlines() if l.startswith(f"| {label} |"))
        assert f"{acc.mean():.2f} +- {acc.std(ddof=1):.2f}" in line and f"{gap:+.2f}" in line
        assert ("| yes |" in line) == (gap >= -0.3)
        best = 100 * np.array(AT_BEST_VAL[r["method"]])
        assert f"{label} {best.mean():.2f} +- {best.std(ddof=1):.2f}" in text
    assert (tmp_path / "results" / "mnist_bc_gpu.csv").read_text().count("\n") == 1 + 9
