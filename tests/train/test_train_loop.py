"""The training loop on digits with a tiny MLP: exact resume, determinism, metrics against
independent computations from the checkpoints, non-finite loss, init_from + distillation."""

import os
import re

import ml_collections
import numpy as np
import pytest
from train_testing import leaves_by_path, load_raw, read_rows, tiny_config

from extremeq.train import train_and_evaluate


@pytest.fixture(scope="module")
def run_a(tmp_path_factory):
    """The uninterrupted reference run: BinaryConnect (clipped latent), dropout, BN, flip+crop."""
    wd = str(tmp_path_factory.mktemp("run_a"))
    result = train_and_evaluate(tiny_config("bc"), wd)
    return wd, result


def _assert_same_checkpoint(wd1, wd2):
    m1, t1, meta1 = load_raw(wd1)
    m2, t2, meta2 = load_raw(wd2)
    assert meta1["step"] == meta2["step"]
    assert meta1["model_paths"] == meta2["model_paths"] and meta1["train_paths"] == meta2["train_paths"]
    for k in m1:
        np.testing.assert_array_equal(m1[k], m2[k], err_msg=meta1["model_paths"][int(k)])
    for k in t1:
        np.testing.assert_array_equal(t1[k], t2[k], err_msg=meta1["train_paths"][int(k)])


def test_run_finishes_and_learns(run_a):
    wd, result = run_a
    rows = read_rows(wd)
    assert [r["epoch"] for r in rows] == [1, 2] and result["finished"] and result["step"] == 22
    assert rows[-1]["test_accuracy"] > 0.35  # 10 classes: chance is 0.1; 22 steps only
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert os.path.isfile(os.path.join(wd, "config.json")) and os.path.isfile(os.path.join(wd, "final.json"))


def test_resume_is_bit_exact(run_a, tmp_path):
    """Stopped mid-epoch (step 7), at the epoch boundary (step 11), then run to the end: the final
    parameters, optimizer state, BN statistics, RNG state and all metrics equal the uninterrupted run."""
    wd_a, _ = run_a
    wd = str(tmp_path / "b")
    r = train_and_evaluate(tiny_config("bc", max_steps=7), wd)
    assert r["step"] == 7 and load_raw(wd)[2]["step"] == 7
    r = train_and_evaluate(tiny_config("bc", max_steps=11), wd)
    assert r["step"] == 11
    r = train_and_evaluate(tiny_config("bc"), wd)
    assert r["step"] == 22 and r["finished"]
    _assert_same_checkpoint(wd_a, wd)
    assert read_rows(wd) == read_rows(wd_a)


def test_same_config_and_seed_same_metrics(run_a, tmp_path):
    wd_a, _ = run_a
    wd = str(tmp_path / "again")
    train_and_evaluate(tiny_config("bc"), wd)
    assert read_rows(wd) == read_rows(wd_a)
    _assert_same_checkpoint(wd_a, wd)
    # and another seed gives another run
    wd_s = str(tmp_path / "seed1")
    train_and_evaluate(tiny_config("bc", seed=1, max_steps=11), wd_s)
    assert read_rows(wd_s)[0]["train_loss"] != read_rows(wd_a)[0]["train_loss"]


def test_flip_ratio_matches_checkpoints(run_a):
    """flip_ratio of epoch 2 = share of binary latent weights whose sign (w >= 0) differs between the
    checkpoints at the ends of epochs 1 and 2 (kept: keep=2)."""
    wd, _ = run_a
    m1, _, meta1 = load_raw(wd, step=11)
    m2, _, meta2 = load_raw(wd, step=22)
    k1, k2 = leaves_by_path(m1, meta1["model_paths"]), leaves_by_path(m2, meta2["model_paths"])
    # method bc, first/last fp: the binary kernels are the hidden dense layers
    binary = [p for p in k1 if "['blocks']" in p and p.endswith("['kernel']")]
    assert len(binary) == 2
    flips = sum(np.sum((k1[p] >= 0) != (k2[p] >= 0)) for p in binary)
    total = sum(k1[p].size for p in binary)
    row = read_rows(wd)[1]
    assert row["flip_ratio"] == pytest.approx(flips / total, abs=1e-7)
    assert 0 < row["flip_ratio"] < 0.5
    # BinaryConnect clips the latent weights to [-1, 1]; the float layers are not clipped
    assert all(np.abs(k2[p]).max() <= 1.0 for p in binary)


def test_nonfinite_loss_stops_naming_the_step(tmp_path):
    c = tiny_config("fp")
    c.optimizer.learning_rate = 1e30
    with pytest.raises(FloatingPointError, match=r"non-finite loss at step \d+") as e:
        train_and_evaluate(c, str(tmp_path / "nan"))
    step = int(re.search(r"step (\d+)", str(e.value)).group(1))
    assert 0 <= step < 4  # found at the first check (log_every_steps=4), naming the first bad step


def test_init_from_and_distillation(run_a, tmp_path):
    """TWN student initialised from run A's weights, distilled from run A as the teacher."""
    from extremeq.train.config import validate_config
    from extremeq.train.model import create_model, split_model

    wd_a, _ = run_a
    c = tiny_config("twn", num_epochs=1)
    c.quant.init_from = wd_a
    c.distill = ml_collections.ConfigDict(dict(teacher_workdir=wd_a, alpha=0.5, temperature=2.0))
    model = create_model(validate_config(c), 10, (8, 8, 1))
    _, params, _ = split_model(model)
    m_a, _, meta_a = load_raw(wd_a)
    saved = leaves_by_path(m_a, meta_a["model_paths"])
    np.testing.assert_array_equal(
        params["blocks"][0]["dense"]["kernel"], saved["['params']['blocks'][0]['dense']['kernel']"]
    )
    wd = str(tmp_path / "student")
    result = train_and_evaluate(c, wd)
    assert result["finished"] and np.isfinite(result["train_loss"])
    # ternary sparsity = share of TWN zeros, |w| <= 0.7 mean|w| (Li et al. 2016), per layer
    m, _, meta = load_raw(wd)
    k = leaves_by_path(m, meta["model_paths"])
    ws = [k[p] for p in k if "['blocks']" in p and p.endswith("['kernel']")]
    zeros = sum(np.sum(np.abs(w) <= 0.7 * np.mean(np.abs(w))) for w in ws)
    assert result["ternary_sparsity"] == pytest.approx(zeros / sum(w.size for w in ws), abs=2e-3)


def test_bop_run_keeps_binary_kernels_pm1(tmp_path):
    """Bop on the binary kernels (no latent weights: exactly +-1 after every step), Adam on the rest."""
    c = tiny_config("bnn", num_epochs=1)
    c.optimizer = ml_collections.ConfigDict(
        dict(name="bop", bop_threshold=1e-6, bop_gamma=1e-3, bop_base="adam", learning_rate=3e-3)
    )
    c.model.activation = "hardtanh"
    wd = str(tmp_path / "bop")
    result = train_and_evaluate(c, wd)
    assert result["finished"] and 0 < result["flip_ratio"] < 1
    m, _, meta = load_raw(wd)
    k = leaves_by_path(m, meta["model_paths"])
    binary = [p for p in k if "['blocks']" in p and p.endswith("['kernel']")]
    assert binary and all(set(np.unique(k[p])) <= {-1.0, 1.0} for p in binary)
    assert not set(np.unique(k["['params']['stem']['kernel']"])) <= {-1.0, 1.0}


def test_squared_hinge_with_glorot_lr_scale_learns(tmp_path):
    """BinaryConnect's recipe (L2-SVM loss, Adam, per-layer 1/H learning rates, binary kernels) on
    digits (no augmentation, no dropout) reaches 94.2% test accuracy in 3 epochs here; chance is 10%."""
    c = tiny_config("bc", num_epochs=3)
    c.loss = "squared_hinge"
    c.dataset.augment = dict(crop_padding=0, flip=False)
    c.model.dropout = 0.0
    c.optimizer = ml_collections.ConfigDict(dict(name="adam", learning_rate=1e-2, binary_lr_scale="glorot"))
    wd = str(tmp_path / "hinge")
    result = train_and_evaluate(c, wd)
    assert result["finished"] and result["test_accuracy"] > 0.85, result
    # test_loss is the run's loss: the squared hinge of the final model on the test split, recomputed.
    import jax.numpy as jnp

    from extremeq.data import load_from_config, normalize
    from extremeq.train.losses import squared_hinge
    from extremeq.train.model import load_model_vars, restore_model_vars

    config, model, model_vars = restore_model_vars(wd, 10, (8, 8, 1))
    load_model_vars(model, model_vars)
    model.eval()
    ds = load_from_config(config.dataset)
    z = model(normalize(jnp.asarray(ds.x_test), ds.mean, ds.std), train=False)
    assert result["test_loss"] == pytest.approx(float(squared_hinge(z, jnp.asarray(ds.y_test))), rel=1e-4)


def test_glorot_lr_scale_reaches_the_train_step():
    """One real train step with binary_lr_scale='glorot' moves each binary kernel 1/H times as far as
    the same step without it (same init, same batch), and every other parameter exactly as far."""
    import jax
    import jax.numpy as jnp

    from extremeq.optim import glorot_lr_scale, tree_paths
    from extremeq.train.config import validate_config
    from extremeq.train.model import build_quantized_model, model_spec
    from extremeq.train.state import OptimizerSpec, create_train_state
    from extremeq.train.steps import Inputs, Objective, in_memory_train_step, make_mesh

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.integers(0, 17, (256, 8, 8, 1)), jnp.uint8)
    y = jnp.asarray(rng.integers(0, 10, (256,)), jnp.int32)
    moved = {}
    for scale in ("none", "glorot"):
        c = tiny_config("bc", num_epochs=1)
        c.model.dropout = 0.0
        c.num_devices = 1
        c.optimizer = ml_collections.ConfigDict(dict(name="adam", learning_rate=1e-4, binary_lr_scale=scale))
        c = validate_config(c, num_devices=1)
        net = build_quantized_model(c, 10, (8, 8, 1))
        spec, mesh = model_spec(net), make_mesh(1)
        optimizer = OptimizerSpec.from_config(c, 2, spec)
        state = create_train_state(net, optimizer, mesh)
        aug_key = jax.random.split(jax.random.key(c.seed))[1]
        p0 = jax.device_get(state.params)
        plan = jnp.arange(256, dtype=jnp.int32).reshape(2, 128)
        state = in_memory_train_step(
            state,
            x,
            y,
            plan,
            aug_key,
            None,
            model=spec,
            optimizer=optimizer,
            inputs=Inputs.from_config(c, mesh),
            objective=Objective.from_config(c),
        )
        moved[scale] = jax.tree_util.tree_map(
            lambda a, b: np.asarray(a) - np.asarray(b), jax.device_get(state.params), p0
        )
    binary = set(spec.binary_kernels)
    assert binary
    for path, d_none, d_glorot in zip(
        jax.tree_util.tree_leaves(tree_paths(moved["none"])),
        jax.tree_util.tree_leaves(moved["none"]),
        jax.tree_util.tree_leaves(moved["glorot"]),
    ):
        s = glorot_lr_scale(d_none.shape) if path in binary else 1.0
        np.testing.assert_allclose(d_glorot, s * d_none, rtol=1e-3, atol=1e-7, err_msg=path)


def test_validation_split_and_test_at_best_validation(tmp_path):
    """dataset.validation evaluates the training examples past limit_train every epoch, and final.json
    reports the test accuracy of the epoch with the best val_accuracy (BinaryConnect's protocol)."""
    from extremeq.data import load_digits

    c = tiny_config("fp", num_epochs=3)
    c.dataset.limit_train = 1000
    c.dataset.validation = True
    wd = str(tmp_path / "val")
    result = train_and_evaluate(c, wd)
    rows = read_rows(wd)
    assert [("val_accuracy" in r, "val_loss" in r) for r in rows] == [(True, True)] * 3
    # 437 held-out digits: accuracies are multiples of 1/437
    assert all(abs(r["val_accuracy"] * 437 - round(r["val_accuracy"] * 437)) < 1e-3 for r in rows)
    best = max(rows, key=lambda r: (r["val_accuracy"], -r["epoch"]))
    assert result["best_val_epoch"] == best["epoch"]
    assert result["test_accuracy_at_best_val"] == best["test_accuracy"]
    ds = load_digits(limit=1000)
    full = load_digits()
    np.testing.assert_array_equal(ds.x_val, full.x_train[1000:])
    np.testing.assert_array_equal(ds.y_val, full.y_train[1000:])
    assert load_digits().x_val is None
    bad = tiny_config("fp", num_epochs=1)
    bad.dataset.validation = True
    with pytest.raises(Exception, match="dataset.validation: needs a held-out part"):
        train_and_evaluate(bad, str(tmp_path / "bad"))
