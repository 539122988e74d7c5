"""The quickstart's goals on real handwritten digits (a shortened run): FP >= 96%, XNOR >= 85%."""

import importlib.util
from pathlib import Path

QUICKSTART = Path(__file__).resolve().parents[1] / "experiments" / "quickstart.py"


def test_quickstart_meets_its_accuracy_goals(tmp_path):
    spec = importlib.util.spec_from_file_location("quickstart", QUICKSTART)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "table.md"
    rows = mod.main(["--epochs", "15", "--methods", "fp,bwn,xnor", "--out", str(out)])
    acc = {method: a for method, a, *_ in rows}
    assert acc["fp"] >= 0.96
    assert acc["bwn"] >= acc["fp"] - 0.04
    assert acc["xnor"] >= 0.85
    packed = {method: p for method, _, p, *_ in rows}
    assert packed["bwn"] < packed["fp"] / 3  # the hidden 256x256 layer packs 32x
    assert "| xnor |" in out.read_text()
