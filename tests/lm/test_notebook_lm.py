"""experiments/notebooks/bitnet_shakespeare.ipynb runs top to bottom with a tiny budget (its last cell
asserts that the packed file decodes the same greedy tokens as the training graph)."""

import sys
from pathlib import Path

import pytest

from extremeq.data.text import default_shakespeare_path

NOTEBOOK = Path(__file__).resolve().parents[2] / "experiments" / "notebooks" / "bitnet_shakespeare.ipynb"


def test_bitnet_notebook_runs(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    if not default_shakespeare_path().is_file():
        pytest.skip("tiny Shakespeare not present (set $EXTREMEQ_SHAKESPEARE)")
    monkeypatch.setenv("EXTREMEQ_LM_NOTEBOOK_STEPS", "8")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code), "store the notebook without outputs"
    from jupyter_client.kernelspec import NATIVE_KERNEL_NAME
    from jupyter_client.manager import KernelManager

    class VenvKernelManager(KernelManager):  # the kernel runs this interpreter (the venv)
        def format_kernel_cmd(self, extra_arguments=None):
            cmd = super().format_kernel_cmd(extra_arguments)
            return [sys.executable, *cmd[1:]] if cmd and "python" in Path(cmd[0]).name else cmd

    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name=NATIVE_KERNEL_NAME, resources={"metadata": {"path": str(tmp_path)}}
    )
    client.kernel_manager_class = VenvKernelManager
    client.execute()
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "same tokens as the training graph" in outputs
