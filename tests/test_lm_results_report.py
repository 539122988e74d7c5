"""experiments/lm_results.py's report writer, on a copy of results/shakespeare_char.md: a rerun
rewrites only the text between the BEGIN/END markers (the table it computes) and keeps the
hand-written notes around them byte for byte; a report without the markers is refused."""

import os
import shutil

import lm_results  # experiments/ is on the path (tests/conftest.py)
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPORT = os.path.join(REPO, "results", "shakespeare_char.md")

FP_ROW = dict(variant="fp", val_loss=1.5, ppl=4.48, step_ms=10.0, wall_s=20.0, steps=2000, float_file=4096)
FP_ROW["tok_s_train_graph"] = 100.0
PACKED = dict(packed_file=512, layer_ratio=16.0, tok_s_packed=90.0, greedy_equal=500)
TABLE = [FP_ROW, {**FP_ROW, **PACKED, "variant": "bitnet", "val_loss": 1.75, "ppl": 5.75}]


def _outside(text):
    head, rest = text.split(lm_results.BEGIN)
    return head, rest.split(lm_results.END)[1]


def test_rerun_keeps_the_hand_written_text(tmp_path):
    shutil.copy(REPORT, tmp_path / "shakespeare_char.md")
    old = (tmp_path / "shakespeare_char.md").read_text()
    lm_results.write_report(tmp_path, TABLE, ["### sample\n"], {})
    new = (tmp_path / "shakespeare_char.md").read_text()
    assert _outside(new) == _outside(old)
    assert "Longer learning rate for the ternary model" in _outside(new)[1]  # a hand-written note
    generated = new.split(lm_results.BEGIN)[1].split(lm_results.END)[0]
    assert "| BitNet b1.58 (ternary) | 1.750 | 5.75 | +0.250 |" in generated
    assert "| FP (float32) | 1.786 |" not in new  # the old table is gone
    # a second rerun with the same numbers changes nothing
    lm_results.write_report(tmp_path, TABLE, ["### sample\n"], {})
    assert (tmp_path / "shakespeare_char.md").read_text() == new


def test_first_report_gets_the_markers(tmp_path):
    lm_results.write_report(tmp_path, TABLE, ["### sample\n"], {})
    text = (tmp_path / "shakespeare_char.md").read_text()
    assert text.startswith(lm_results.BEGIN + "\nMachine: ") and text.endswith(lm_results.END + "\n")


@pytest.mark.parametrize(
    "old", ["a hand-written report without markers\n", f"{lm_results.END}\nx\n{lm_results.BEGIN}\n"]
)
def test_report_without_markers_is_refused_and_left_alone(tmp_path, old):
    (tmp_path / "shakespeare_char.md").write_text(old)
    with pytest.raises(ValueError, match="BEGIN"):
        lm_results.write_report(tmp_path, TABLE, ["### sample\n"], {})
    assert (tmp_path / "shakespeare_char.md").read_text() == old
