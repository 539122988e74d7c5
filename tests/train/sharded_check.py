"""Run by test_train_parallel.py in a subprocess with 8 fake CPU devices (XLA_FLAGS set before jax
is imported): the same tiny run on 1 device and data-parallel on 8, printing a JSON comparison."""

import json
import os
import sys

os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402
import numpy as np  # noqa: E402
from train_testing import load_raw, read_rows, tiny_config  # noqa: E402

from extremeq.train import train_and_evaluate  # noqa: E402


def main(out_dir):
    assert jax.device_count() == 8, jax.devices()
    runs = {}
    for n in (1, 8):
        wd = os.path.join(out_dir, f"dev{n}")
        c = tiny_config("bwn", num_devices=n, sync_every_step=True, num_epochs=1)
        c.dataset.limit_train = 512  # 4 steps of 128: the check is about equality, not learning
        assert train_and_evaluate(c, wd)["num_devices"] == n
        runs[n] = (read_rows(wd), load_raw(wd)[0])
    rows1, m1 = runs[1]
    rows8, m8 = runs[8]
    max_param_diff = max(float(np.max(np.abs(m1[k] - m8[k]))) for k in m1)
    print(json.dumps({"rows1": rows1, "rows8": rows8, "max_param_diff": max_param_diff}))


if __name__ == "__main__":
    main(sys.argv[1])
