"""Checkpoint verification across device counts: a checkpoint written by a run sharded over 2
(fake CPU) devices is verified (read whole, checksummed) and restored by a 1-device process, never
mistaken for damage."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np

from extremeq.train.checkpoint import Checkpointer

SAVE_ON_TWO_DEVICES = textwrap.dedent("""
    import sys
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from extremeq.train.checkpoint import Checkpointer

    assert jax.device_count() == 2
    r = NamedSharding(Mesh(np.asarray(jax.devices()), ("data",)), P())
    model = {"w": jnp.arange(48, dtype=jnp.float32).reshape(6, 8) / 8, "rng": jax.random.key(3)}
    train = {"step": jnp.int32(5)}
    ckpt = Checkpointer(sys.argv[1])
    ckpt.save(5, jax.device_put(model, r), jax.device_put(train, r), {"step": 5})
    ckpt.close()
""")


def test_checkpoint_of_two_devices_verifies_and_restores_on_one(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=2")
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join([repo, env.get("PYTHONPATH", "")])
    r = subprocess.run(
        [sys.executable, "-c", SAVE_ON_TWO_DEVICES, str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    ckpt = Checkpointer(str(tmp_path))
    assert ckpt.damage(5) is None
    assert ckpt.latest_step() == 5
    template = {"w": jnp.zeros((6, 8)), "rng": jax.random.key(0)}
    model_vars, train_vars, meta = ckpt.restore(template, {"step": jnp.int32(0)})
    ckpt.close()
    np.testing.assert_array_equal(model_vars["w"], np.arange(48, dtype=np.float32).reshape(6, 8) / 8)
    np.testing.assert_array_equal(jax.random.key_data(model_vars["rng"]), jax.random.key_data(jax.random.key(3)))
    assert int(train_vars["step"]) == 5 and meta["step"] == 5
    assert os.listdir(tmp_path / "checkpoints") == ["5"]
