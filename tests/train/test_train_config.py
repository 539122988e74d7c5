"""Config validation: every bad value stops with a message naming its key."""

import os
import subprocess

import ml_collections
import pytest
from train_testing import TINY_CONFIG, cli_argv, tiny_config

from extremeq.train.config import ConfigError, validate_config


def test_defaults_filled_and_given_values_kept():
    c = validate_config(ml_collections.ConfigDict(dict(optimizer=dict(learning_rate=0.3))), num_devices=1)
    assert c.optimizer.learning_rate == 0.3
    assert c.optimizer.name == "sgd" and c.checkpoint.keep == 3 and c.max_steps == -1
    c = validate_config(ml_collections.ConfigDict(dict(max_steps=None)), num_devices=1)
    assert c.max_steps == -1


@pytest.mark.parametrize(
    "overrides, key",
    [
        (dict(optimizer=dict(learning_rat=0.1)), "config.optimizer.learning_rat"),
        (dict(num_epoch=3), "config.num_epoch"),
        (dict(quant=dict(method="tnw")), "config.quant.method"),
        (dict(dataset=dict(name="cifar11")), "config.dataset.name"),
        (dict(optimizer=dict(learning_rate=-0.1)), "config.optimizer.learning_rate"),
        (dict(optimizer=dict(name="rmsprop")), "config.optimizer.name"),
        (dict(optimizer=dict(schedule="step")), "config.optimizer.decay_epochs"),
        (dict(optimizer=dict(momentum=1.5)), "config.optimizer.momentum"),
        (dict(optimizer=dict(weight_decay=-1e-4)), "config.optimizer.weight_decay"),
        (dict(batch_size=100), "config.batch_size"),  # 100 % 8 != 0
        (dict(num_epochs=0), "config.num_epochs"),
        (dict(quant=dict(ste="straight")), "config.quant.ste"),
        (dict(quant=dict(first="int4")), "config.quant.first"),
        (dict(model=dict(name="resnet21")), "config.model.name"),
        (dict(distill=dict(temperature=0.0)), "config.distill.temperature"),
        (dict(distill=dict(teacher_workdir="/nonexistent")), "config.distill.teacher_workdir"),
        (dict(quant=dict(init_from="/nonexistent")), "config.quant.init_from"),
        (dict(seed="zero"), "config.seed"),
        (dict(dataset=dict(augment=3)), "config.dataset.augment"),
        (dict(loss="hinge"), "config.loss"),
        (dict(dataset=dict(validation="yes")), "config.dataset.validation"),
        (dict(quant=dict(method="twn"), optimizer=dict(binary_lr_scale="glorot")), "config.optimizer.binary_lr_scale"),
        (dict(dataset=dict(validation=True)), "config.dataset.validation"),  # no limit_train
        (dict(optimizer=dict(binary_lr_scale="he")), "config.optimizer.binary_lr_scale"),
        (dict(optimizer=dict(name="bop", binary_lr_scale="glorot")), "config.optimizer.binary_lr_scale"),
    ],
)
def test_bad_values_name_their_key(overrides, key):
    with pytest.raises(ConfigError) as e:
        validate_config(ml_collections.ConfigDict(overrides), num_devices=8)
    assert str(e.value).startswith(key + ":"), str(e.value)


def test_batch_divisible_by_devices_message():
    with pytest.raises(ConfigError, match="not divisible by the 8 devices"):
        validate_config(ml_collections.ConfigDict(dict(batch_size=100)), num_devices=8)
    validate_config(ml_collections.ConfigDict(dict(batch_size=104, eval_batch_size=200)), num_devices=8)


def test_model_kwargs_are_open_but_checked_when_built(tmp_path):
    from extremeq.train import train_and_evaluate

    c = tiny_config("fp")
    c.model.hiden = [8]
    validate_config(c, num_devices=1)  # passes: model kwargs are the zoo's to check
    with pytest.raises(ConfigError, match=r"config\.model: .*hiden"):
        train_and_evaluate(c, str(tmp_path / "wd"))


def test_cli_rejects_unknown_key_before_running(tmp_path):
    wd = tmp_path / "wd"
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    r = subprocess.run(
        cli_argv(wd, "fp", "--config.optimizer.learning_rate=-1.0"),
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert r.returncode != 0
    assert "config.optimizer.learning_rate" in r.stderr
    assert not wd.exists()  # nothing ran


def _parse_cli(argv):
    """The config the command line ``argv`` gives (extremeq.train.main's flags, on fresh FlagValues)."""
    from absl import flags

    from extremeq.train.main import define_flags

    fv = flags.FlagValues()
    fv(define_flags(argv, fv))
    return fv.config


def test_cli_overrides_of_schema_keys_the_file_lacks(tmp_path):
    """A config file that sets only some keys: the schema's others, and model options the file does
    not set, are overridable too; a key in neither stops, named."""
    partial = tmp_path / "partial.py"
    partial.write_text(
        "import ml_collections\n\ndef get_config():\n"
        "    return ml_collections.ConfigDict(dict(num_epochs=2, model=dict(name='mlp')))\n"
    )
    argv = [
        "prog",
        f"--config={partial}",
        "--workdir=/tmp/x",
        "--config.num_epochs=3",
        "--config.num_devices=1",
        "--config.optimizer.bop_base=sgd",
        "--config.model.width=2",
    ]
    c = _parse_cli(argv)
    assert c.num_epochs == 3
    assert c.num_devices == 1 and c.optimizer.bop_base == "sgd" and c.model.width == 2
    with pytest.raises(ConfigError, match=r"^config\.optimizer\.lr: unknown key; known keys here: .*learning_rate"):
        _parse_cli(["prog", f"--config={TINY_CONFIG}:fp", "--config.optimizer.lr=0.1"])


def test_cli_overrides_list_valued_keys():
    """List-valued keys are tuples: ml_collections parses ``(16,8)``, and the list spelling ``[16, 8]``."""
    argv = [
        "prog",
        f"--config={TINY_CONFIG}:fp",
        "--workdir=/tmp/x",
        "--config.model.hidden=[16, 8]",
        "--config.optimizer.decay_epochs=(1,)",
    ]
    c = _parse_cli(argv)
    assert list(c.model.hidden) == [16, 8] and list(c.optimizer.decay_epochs) == [1]
    assert _parse_cli(argv[:3] + ["--config.model.hidden=(16,8)"]).model.hidden == (16, 8)
