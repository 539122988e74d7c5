"""The export file is verified on load (issue 10, point 12): the format version must be the integer
it is, and every array and the metadata carry a SHA-256 checksum, so a file edited and saved again
(a layer's inputs changed from xnor to fp) or an array changed after saving is refused, naming what
differs."""

import json

import numpy as np
import pytest
from flax import nnx

import extremeq
from extremeq.inference import META_KEY, ExportFormatError, load
from extremeq.nn import method_rules, quantize_model
from extremeq.nn.models import build_model

RECIPE = {
    "model": {"name": "mlp", "hidden": [32, 32], "activation": "hardtanh"},
    "num_classes": 10,
    "input_shape": [8, 8, 1],
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model = build_model(RECIPE["model"], 10, (8, 8, 1), nnx.Rngs(0))
    quantize_model(model, method_rules("xnor"))
    model.eval()
    path = tmp_path_factory.mktemp("export") / "m.npz"
    extremeq.export(model, recipe=RECIPE).save(path)
    return path


def _resave(src, dst, edit_meta=None, edit_arrays=None):
    """What a user editing the file does: load the npz, change it, np.savez it again."""
    with np.load(src) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(bytes(arrays.pop(META_KEY)).decode())
    if edit_meta:
        edit_meta(meta)
    if edit_arrays:
        edit_arrays(arrays)
    np.savez(dst, **{META_KEY: np.frombuffer(json.dumps(meta).encode(), np.uint8)}, **arrays)
    return dst


def test_saved_file_loads_and_carries_checksums(saved):
    with np.load(saved) as z:
        meta = json.loads(bytes(z[META_KEY]).decode())
    assert len(meta["checksums"]["arrays"]) == len(meta["arrays"])
    assert "layers/blocks/0/dense" in meta["checksums"]["metadata"]
    x = np.random.default_rng(0).normal(size=(4, 8, 8, 1)).astype(np.float32)
    assert load(saved)(x).shape == (4, 10)
    # an untouched resave (same metadata, same arrays) still loads: the checksums are of content
    load(_resave(saved, saved.parent / "same.npz"))


def test_version_stored_as_a_string_is_named_as_such(saved, tmp_path):
    bad = _resave(saved, tmp_path / "v.npz", edit_meta=lambda m: m.update(version="1"))
    with pytest.raises(ExportFormatError, match=r"format version is '1' \(str\), not an integer") as e:
        load(bad)
    assert "has extremeq export format version 1, this extremeq reads version 1" not in str(e.value)


def test_inputs_edited_from_xnor_to_fp_are_refused(saved, tmp_path):
    def edit(meta):
        conf = meta["layers"]["blocks/0/dense"]["config"]
        assert conf["inputs"] == "xnor"
        conf["inputs"] = "fp"

    bad = _resave(saved, tmp_path / "fp.npz", edit_meta=edit)
    with pytest.raises(ExportFormatError, match=r"metadata entries \['layers/blocks/0/dense'\] differ"):
        load(bad)


def test_array_changed_after_saving_is_refused(saved, tmp_path):
    def edit(arrays):
        w = arrays["blocks/0/dense/w"].copy()
        w[0, 0] ^= np.uint32(1 << 7)  # one flipped bit
        arrays["blocks/0/dense/w"] = w

    bad = _resave(saved, tmp_path / "flip.npz", edit_arrays=edit)
    with pytest.raises(ExportFormatError, match=r"array\(s\) \['blocks/0/dense/w'\] differ from their checksums"):
        load(bad)


def test_file_without_checksums_is_refused(saved, tmp_path):
    bad = _resave(saved, tmp_path / "nosum.npz", edit_meta=lambda m: m.pop("checksums"))
    with pytest.raises(ExportFormatError, match="has no checksums"):
        load(bad)
