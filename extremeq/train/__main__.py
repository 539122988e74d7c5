"""``python -m extremeq.train``: see extremeq/train/main.py."""

from extremeq.train.main import run

run()
