"""experiments/notebooks/quickstart.ipynb runs top to bottom (its last cell asserts that the exported model
agrees with the training graph and that the packed arrays match the summary's size prediction)."""

import sys
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "experiments" / "notebooks" / "quickstart.ipynb"


def test_quickstart_notebook_runs(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code), "store the notebook without outputs"
    from jupyter_client.kernelspec import NATIVE_KERNEL_NAME

    client = nbclient.NotebookClient(
        nb, timeout=120, kernel_name=NATIVE_KERNEL_NAME, resources={"metadata": {"path": str(tmp_path)}}
    )
    # the kernel runs this interpreter (the venv), not whatever "python3" is first on PATH
    client.kernel_manager_class = _venv_kernel_manager()
    client.execute()  # raises CellExecutionError (with the cell and traceback) if a cell fails
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "same class as the training graph" in outputs


def _venv_kernel_manager():
    from jupyter_client.manager import KernelManager

    class VenvKernelManager(KernelManager):
        def format_kernel_cmd(self, extra_arguments=None):
            cmd = super().format_kernel_cmd(extra_arguments)
            return [sys.executable, *cmd[1:]] if cmd and "python" in Path(cmd[0]).name else cmd

    return VenvKernelManager
