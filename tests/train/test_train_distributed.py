"""config.cluster -> jax.distributed.initialize's arguments, and its validation (the 2-process runs
themselves: test_train_multiprocess.py)."""

import pytest
from train_testing import tiny_config

from extremeq.train import distributed
from extremeq.train.config import ConfigError, default_config, validate_config
from extremeq.train.workdir import changed_keys, plain


def test_cluster_kwargs_pass_only_what_is_set():
    c = default_config()
    assert distributed.cluster_kwargs(c.cluster) == {}  # all detected by JAX (TPU, SLURM, MPI, k8s)
    c.cluster.coordinator_address = "10.0.0.1:1234"
    c.cluster.num_processes = 4
    c.cluster.process_id = 0
    assert distributed.cluster_kwargs(c.cluster) == {
        "coordinator_address": "10.0.0.1:1234",
        "num_processes": 4,
        "process_id": 0,
    }


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("process_id", 2, "not below cluster.num_processes = 2"),
        ("num_processes", -1, "cluster.num_processes"),
        ("process_id", -2, "cluster.process_id"),
    ],
)
def test_bad_cluster_settings_are_named(key, value, match):
    c = tiny_config("bwn")
    c.cluster.num_processes = 2
    c.cluster[key] = value
    with pytest.raises(ConfigError, match=match):
        validate_config(c, num_devices=1)


def test_a_run_resumes_with_other_cluster_settings():
    """The process layout is how a run executes, not what it computes: a run saved by 2 processes
    (or before config.cluster existed) resumes under another layout."""
    old = plain(validate_config(tiny_config("bwn"), num_devices=1))
    new_config = tiny_config("bwn", distributed=True)
    new_config.cluster.update(coordinator_address="h0:1234", num_processes=2, process_id=1)
    new = plain(validate_config(new_config, num_devices=1))
    assert changed_keys(old, new) == {}
    del old["cluster"]
    assert changed_keys(old, new) == {}
