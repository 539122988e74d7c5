"""A model file is data: loading it never imports or calls what the file names (issue 10, security)."""

import json
import os
import sys

import numpy as np
import pytest

from extremeq.inference import META_KEY, ExportFormatError, build_from_recipe, load, register_factory


def _write_export_file(path, recipe):
    meta = {
        "format": "extremeq.export",
        "version": 1,
        "recipe": recipe,
        "model_class": "X",
        "layers": {},
        "arrays": {},
        "summary": None,
    }
    with open(path, "wb") as f:
        np.savez(f, **{META_KEY: np.frombuffer(json.dumps(meta).encode(), np.uint8)})


def test_factory_naming_subprocess_is_refused_before_any_import(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sys.modules.pop("subprocess_probe_never_imported", None)
    path = tmp_path / "evil.npz"
    _write_export_file(path, {"factory": "subprocess:run", "kwargs": {"args": ["touch", "PWNED"]}})
    with pytest.raises(ExportFormatError, match="not a registered model builder"):
        load(path)
    assert not os.path.exists(tmp_path / "PWNED")
    # a module the file names is not imported either
    _write_export_file(path, {"factory": "subprocess_probe_never_imported:run", "kwargs": {}})
    with pytest.raises(ExportFormatError, match="register_factory"):
        load(path)
    assert "subprocess_probe_never_imported" not in sys.modules


def test_registered_factory_is_allowed_and_unregistered_export_refused():
    calls = []

    def builder(**kw):
        calls.append(kw)
        from flax import nnx

        from extremeq.nn.models import MLP

        return MLP(in_features=4, hidden=(8,), num_classes=3, rngs=nnx.Rngs(0))

    with pytest.raises(ValueError, match="not a registered model builder"):
        build_from_recipe({"factory": "my_lab:tiny_mlp", "kwargs": {}})
    assert calls == []
    register_factory("my_lab:tiny_mlp", builder)
    build_from_recipe({"factory": "my_lab:tiny_mlp", "kwargs": {}})
    assert calls == [{}]
