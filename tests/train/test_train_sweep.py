"""The sweep runner: every (method, seed) run, finished runs skipped, mean/std from the metrics."""

import csv
import os

import ml_collections
import numpy as np
import pytest

from extremeq import sweep as sweep_lib
from extremeq.train.config import load_config_file

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _small_sweep():
    s = load_config_file(os.path.join(REPO, "configs/sweeps/digits_mlp.py"))
    s.methods = ["fp", "twn"]
    s.seeds = [0, 1]
    s.overrides = ml_collections.ConfigDict({"num_epochs": 1, "progress_bar": False, "model": {"hidden": [32, 32]}})
    return s


def test_sweep_runs_summarizes_and_skips(tmp_path):
    wd = str(tmp_path)
    s = _small_sweep()
    calls = []
    from extremeq.train import train_and_evaluate

    def counting(config, workdir):
        calls.append((config.quant.method, config.seed))
        return train_and_evaluate(config, workdir)

    results = sweep_lib.run_sweep(s, wd, train_fn=counting)
    assert calls == [("fp", 0), ("fp", 1), ("twn", 0), ("twn", 1)]
    from extremeq.train.metrics import read_metrics

    with open(os.path.join(wd, "results.csv")) as f:
        table = {row["method"]: row for row in csv.DictReader(f)}
    for r in results:
        accs = [read_metrics(os.path.join(wd, r["method"], f"seed{seed}"))[-1]["test_accuracy"] for seed in s.seeds]
        assert accs[0] != accs[1]  # seeds differ
        row = table[r["method"]]
        assert int(row["n"]) == 2
        assert float(row["test_accuracy_mean"]) == pytest.approx(np.mean(accs), abs=1e-12)
        assert float(row["test_accuracy_std"]) == pytest.approx(np.std(accs, ddof=1), abs=1e-12)
    md = open(os.path.join(wd, "results.md")).read()
    assert f"{100 * np.mean(results[0]['values']):.2f} +- {100 * results[0]['std']:.2f}" in md
    for png in ("accuracy.png", "curves.png"):
        with open(os.path.join(wd, png), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    # a second invocation finds every run finished and trains nothing
    calls.clear()
    again = sweep_lib.run_sweep(s, wd, train_fn=counting)
    assert calls == [] and [r["mean"] for r in again] == [r["mean"] for r in results]


def test_summarize_and_bad_sweep_config():
    assert sweep_lib.summarize([0.5]) == (1, 0.5, 0.0)
    n, mean, std = sweep_lib.summarize([0.1, 0.2, 0.6, None])
    assert n == 3 and mean == pytest.approx(0.3) and std == pytest.approx(np.std([0.1, 0.2, 0.6], ddof=1))
    s = _small_sweep()
    s.seed = [0]
    with pytest.raises(ValueError, match="unknown key"):
        sweep_lib.check_sweep_config(s)
    assert sweep_lib.run_dir_name("resnet20:ttq,ste=clipped") == "resnet20_ttq_ste-clipped"


def test_method_overrides_reference_other_rows(tmp_path):
    s = _small_sweep()
    s.methods = ["ttq", "fp", "twn"]
    s.method_overrides = ml_collections.ConfigDict(
        {"ttq": {"quant": {"init_from": "@fp"}, "distill": {"teacher_workdir": "@twn"}}}
    )
    assert sweep_lib.run_order(s) == ["fp", "twn", "ttq"]
    c = sweep_lib.run_config(s, "ttq", 1, str(tmp_path))
    assert c.quant.init_from == os.path.join(str(tmp_path), "fp", "seed1")
    assert c.distill.teacher_workdir == os.path.join(str(tmp_path), "twn", "seed1")
    assert c.quant.method == "ttq" and c.seed == 1 and c.num_epochs == 1
    s.method_overrides = ml_collections.ConfigDict({"ttq": {"quant": {"init_from": "@bwn"}}})
    with pytest.raises(ValueError, match="names no method"):
        sweep_lib.check_sweep_config(s)
    s.method_overrides = ml_collections.ConfigDict(
        {"ttq": {"quant": {"init_from": "@fp"}}, "fp": {"quant": {"init_from": "@ttq"}}}
    )
    with pytest.raises(ValueError, match="cycle"):
        sweep_lib.check_sweep_config(s)


def test_select_restricts_seeds_and_methods():
    s = sweep_lib.select(_small_sweep(), ["1"], ["twn"])
    assert list(s.seeds) == [1] and list(s.methods) == ["twn"]
    with pytest.raises(ValueError, match="integers"):
        sweep_lib.select(_small_sweep(), ["one"])
    with pytest.raises(ValueError, match=r"\['bnn'\] not in this sweep"):
        sweep_lib.select(_small_sweep(), None, ["bnn"])


def test_select_trims_method_overrides_and_keeps_references():
    s = _small_sweep()
    s.method_overrides = ml_collections.ConfigDict({"twn": {"quant": {"init_from": "@fp"}}})
    only_fp = sweep_lib.select(s, None, ["fp"])
    sweep_lib.check_sweep_config(only_fp)  # the dropped method's overrides are gone
    assert list(only_fp.methods) == ["fp"] and not dict(only_fp.method_overrides)
    s = _small_sweep()
    s.method_overrides = ml_collections.ConfigDict({"twn": {"quant": {"init_from": "@fp"}}})
    with pytest.raises(ValueError, match=r"drops \['fp'\]"):
        sweep_lib.select(s, None, ["twn"])
