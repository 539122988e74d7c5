"""Test set-up in one place: the repository root (the package, without installing it) and the
folders of the tests' helper modules (``train_testing``, ``kernel_testing``) and of the experiment
scripts that tests import are importable, whichever test file pytest collects first."""

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for path in (
    REPO,
    os.path.join(REPO, "tests", "train"),
    os.path.join(REPO, "tests", "kernels"),
    os.path.join(REPO, "experiments"),
):
    if path not in sys.path:
        sys.path.insert(0, path)
# ... and in the subprocesses tests start (``python -m extremeq.train``, helper scripts).
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH", "")) if p)
