"""Backend choice, fallbacks with a warning, and clear errors for bad input."""

import os
import sys
import warnings

import jax.numpy as jnp
import numpy as np
import pytest
from kernel_testing import ON_ACCELERATOR, np_pack_signs, pm1_product, random_pm1

from extremeq import kernels
from extremeq.kernels import (
    KernelFallbackWarning,
    binary_weight_matmul,
    ternary_weight_matmul,
    xnor_matmul,
)
from extremeq.kernels.backends import resolve

cpu_only = pytest.mark.skipif(ON_ACCELERATOR, reason="checks the CPU choice")


@cpu_only
def test_auto_on_cpu_follows_the_measured_rule():
    """BENCHMARKS.md: the XLA popcount won at every M from 1 to 2048 on the CPU here."""
    for m in (1, 16, 256, 4096):
        assert resolve("t", "auto", "xnor_matmul") == "xla_popcount"


@pytest.mark.skipif(not ON_ACCELERATOR, reason="needs a GPU/TPU")
def test_auto_on_accelerator_is_pallas():
    assert resolve("t", "auto", "xnor_matmul") == "pallas"


@cpu_only
def test_pallas_on_cpu_warns_and_falls_back():
    rng = np.random.default_rng(0)
    a, b = random_pm1(rng, (3, 40)), random_pm1(rng, (4, 40))
    with pytest.warns(KernelFallbackWarning, match="interpret"):
        out = xnor_matmul(np_pack_signs(a), np_pack_signs(b), 40, backend="pallas")
    np.testing.assert_array_equal(np.asarray(out), pm1_product(a, b))
    x = rng.normal(size=(2, 40)).astype(np.float32)
    with pytest.warns(KernelFallbackWarning):
        binary_weight_matmul(x, np_pack_signs(b), np.ones(4, np.float32), backend="pallas")


def test_explicit_backends_do_not_warn():
    rng = np.random.default_rng(1)
    a = np_pack_signs(random_pm1(rng, (2, 10)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # JAX's own notices (jax 0.11.2 on a GPU: "The Pallas Triton backend is deprecated") are not
        # extremeq's fallback warnings.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        for backend in ("auto", "xla_popcount", "dot"):
            xnor_matmul(a, a, 10, backend=backend)


def test_unknown_backend_and_misplaced_options():
    a = np.zeros((2, 1), np.uint32)
    with pytest.raises(ValueError, match="backend 'cuda' unknown"):
        xnor_matmul(a, a, 10, backend="cuda")
    with pytest.raises(ValueError, match="unknown"):
        binary_weight_matmul(np.ones((2, 10), np.float32), a, 1.0, backend="xla_popcount")
    with pytest.raises(ValueError, match="only to Pallas"):
        xnor_matmul(a, a, 10, backend="dot", block_m=64)


def test_bad_xnor_inputs():
    a = np.zeros((2, 2), np.uint32)
    with pytest.raises(TypeError, match="uint32"):
        xnor_matmul(a.astype(np.int32), a, 40)
    with pytest.raises(TypeError, match="uint32"):
        xnor_matmul(np.zeros((2, 40), np.float32), a, 40)
    with pytest.raises(ValueError, match="words per row"):
        xnor_matmul(a, np.zeros((3, 1), np.uint32), 40)
    with pytest.raises(ValueError, match=r"ceil\(k/32\) = 1"):
        xnor_matmul(a, a, 20)  # 2 words but k = 20 needs 1
    with pytest.raises(ValueError, match="k must be >= 1"):
        xnor_matmul(a[:, :0], a[:, :0], 0)
    with pytest.raises(ValueError, match="2-D"):
        xnor_matmul(a[0], a, 40)
    with pytest.raises(ValueError, match=r"alpha_x must have shape \(2,\)"):
        xnor_matmul(a, a, 40, alpha_x=np.ones(3, np.float32))
    with pytest.raises(TypeError, match="float"):
        xnor_matmul(a, a, 40, alpha_w=np.ones(2, np.int32))


def test_bad_weight_only_inputs():
    x = np.ones((2, 40), np.float32)
    w = np.zeros((3, 2), np.uint32)
    with pytest.raises(TypeError, match="x must be float"):
        binary_weight_matmul(x.astype(np.int32), w, 1.0)
    with pytest.raises(ValueError, match="ceil\\(K/32\\) = 3"):
        binary_weight_matmul(x[:, :70].repeat(2, 1), w, 1.0)
    with pytest.raises(ValueError, match="ceil\\(K/16\\) = 3"):
        ternary_weight_matmul(x, w, 1.0)  # 40 ternary codes need 3 words
    with pytest.raises(TypeError, match="uint32"):
        ternary_weight_matmul(x, np.zeros((3, 3), np.int64), 1.0)
    with pytest.raises(ValueError, match=r"alpha must have shape \(3,\)"):
        binary_weight_matmul(x, w, np.ones(2, np.float32))


def test_gpu_tile_rules():
    """Tile options the GPU kernel refuses (the anchors' silent-wrong int8 K = 16 case first)."""
    from extremeq.kernels.gpu.xnor_matmul import xnor_matmul_gpu
    from extremeq.kernels.tpu.xnor_matmul import xnor_matmul_tpu

    a = jnp.zeros((4, 1), jnp.uint32)
    with pytest.raises(ValueError, match="K = 16"):
        xnor_matmul_gpu(a, a, k=10, block_words=16)
    with pytest.raises(ValueError, match="powers of two"):
        xnor_matmul_gpu(a, a, k=10, block_m=48)
    with pytest.raises(ValueError, match="TPU tiles"):
        xnor_matmul_tpu(a, a, k=10, block_words=32)


def test_public_api_is_documented():
    for name in kernels.__all__:
        obj = getattr(kernels, name)
        if callable(obj) and not isinstance(obj, type):
            assert obj.__doc__ and len(obj.__doc__) > 40, name
        assert (
            name in kernels.__doc__
            or name in ("BACKENDS", "KernelFallbackWarning")
            or name.endswith(("_reference", "kmap"))
        ), name


def test_kernels_import_without_training_stack():
    """The GPU box has no ml_collections / tfds / grain: extremeq.kernels must not need them."""
    import subprocess

    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('ml_collections', 'tensorflow_datasets', 'grain'):\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import extremeq.kernels, extremeq.packing\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    res = subprocess.run(
        [sys.executable, "-c", code],
        cwd=root,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": root, "JAX_PLATFORMS": "cpu"},
    )
    assert res.returncode == 0, res.stderr[-2000:]


def test_gpu_selection_table_picks_per_shape(monkeypatch):
    """backend="auto" on a GPU follows the measured table row by row (first match), with its tiles;
    shapes no row covers fall back to the platform default."""
    from extremeq.kernels import backends
    from extremeq.kernels.tiles import BlockSizes

    small = BlockSizes(block_m=16, block_n=128, block_words=64, num_warps=4, num_stages=3)
    rows = (
        backends.Selection(family="weight_only_matmul", backend="pallas", max_m=16, tiles=small),
        backends.Selection(family="weight_only_matmul", backend="dot", min_k=1),
        backends.Selection(family="xnor_matmul", backend="dot", min_n=4096),
    )
    monkeypatch.setattr(backends, "platform", lambda: "gpu")
    monkeypatch.setattr(backends, "GPU_SELECTION", rows)
    assert backends.select("weight_only_matmul", "gpu", (1, 8192, 8192)) == ("pallas", small)
    assert backends.resolve("t", "auto", "weight_only_matmul", shape=(64, 8192, 8192)) == "dot"
    assert backends.resolve("t", "auto", "xnor_matmul", shape=(64, 4096, 4096)) == "dot"
    assert backends.resolve("t", "auto", "xnor_matmul", shape=(64, 1024, 4096)) == "pallas"  # no row
    assert backends.auto_tiles("weight_only_matmul", "auto", {}, (4, 512, 512)) == small.kwargs()
    assert backends.auto_tiles("weight_only_matmul", "auto", {"block_m": 32}, (4, 512, 512)) == {"block_m": 32}
    assert backends.auto_tiles("weight_only_matmul", "pallas", {}, (4, 512, 512)) == {}
    assert backends.select("weight_only_matmul", "cpu", (1, 8192, 8192)) == ("dot", None)  # CPU: no table
