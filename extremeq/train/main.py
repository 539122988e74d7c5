"""Train a quantized network from a config file.

  python -m extremeq.train --config=configs/<file>.py[:<variant>] --workdir=<dir> [--config.<key>=<value> ...]

Example:
  python -m extremeq.train --config=configs/digits_mlp.py:twn --workdir=runs/digits_twn --config.num_epochs=5

Config files are in the repository's configs/ folder (digits_mlp, mnist_mlp, mnist_bnn, mnist_lenet5,
cifar10_resnet, cifar100_resnet, cifar10_vgg7, imagenet_alexnet, imagenet_resnet18). The variant after
':' names the method, one of the method registry (extremeq.methods):
  {methods}
or one of your own, registered by a config file that imports the file defining it; a model where a
file has several (cifar10_resnet.py:resnet56:ttq); and ste=/first=/last= options. Every key, its default and
its meaning: extremeq/train/config.py (default_config); lists are tuples (--config.model.hidden=(512,512)).

The run resumes from <workdir>/checkpoints; SIGTERM saves and exits 0; rerunning a finished run
prints where its results are. A resumed run whose config changed is refused unless
--config.resume_with_changes=True.

Several processes or hosts: start the same command in each with --config.distributed=True (on a
TPU pod slice, under SLURM or Open MPI the processes find each other; elsewhere add
--config.cluster.coordinator_address=<host0>:<port> --config.cluster.num_processes=<P>
--config.cluster.process_id=<i>). The workdir must be on storage every process sees; process 0
writes the metrics, all of them the checkpoints. See SCALING.md.
"""

from __future__ import annotations

import re
import sys

from absl import app, flags, logging
from ml_collections import config_dict, config_flags

from extremeq.train.config import (
    METHODS,
    OPEN_SECTIONS,
    ConfigError,
    default_config,
    load_config_file,
    with_defaults,
)
from extremeq.train.variants import VariantError
from extremeq.train.workdir import FINAL_FILE, WorkdirError

__doc__ = __doc__.replace("{methods}", ", ".join(METHODS))  # the registry's names, not a copy of them

FLAGS = flags.FLAGS
_OVERRIDE = re.compile(r"^--?(?:no)?config\.([^=]+)(?:=.*)?$")


def user_errors() -> tuple:
    """Exceptions that are the user's to fix: one or two lines and exit status 2, no traceback."""
    from extremeq.data import DataError, DatasetNotPreparedError  # pylint: disable=g-import-not-at-top
    from extremeq.train.checkpoint import CheckpointError  # pylint: disable=g-import-not-at-top

    return (
        ConfigError,
        VariantError,
        WorkdirError,
        DatasetNotPreparedError,
        DataError,
        CheckpointError,
        FileNotFoundError,
    )


def _fail(error, status: int = 2):
    print(f"error: {error}", file=sys.stderr)
    sys.exit(status)


def _pop_config_spec(argv):
    """(the value of --config, argv without it)."""
    spec, rest, i = None, [], 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith(("--config=", "-config=")):
            spec = arg.split("=", 1)[1]
        elif arg in ("--config", "-config") and i + 1 < len(argv):
            spec, i = argv[i + 1], i + 1
        else:
            rest.append(arg)
        i += 1
    return spec, rest


def _prepare_overrides(config, argv):
    """Model options the config file does not set become keys ml_collections parses as Python literals
    (``config.model`` is open: its keys are the constructor's); any other unknown key is an error."""
    for arg in argv:
        m = _OVERRIDE.match(arg)
        if not m:
            continue
        *parents, leaf = m.group(1).split(".")
        node = config
        for part in parents:
            if not (isinstance(node, config_dict.ConfigDict) and part in node):
                node = None
                break
            node = node[part]
        if isinstance(node, config_dict.ConfigDict) and leaf in node:
            continue
        if node is not None and ".".join(parents) in OPEN_SECTIONS:
            node[leaf] = config_dict.placeholder(object)
            continue
        known = ", ".join(sorted(node.keys())) if isinstance(node, config_dict.ConfigDict) else "-"
        raise ConfigError(f"config.{m.group(1)}: unknown key; known keys here: {known}")


def _parse_flags(argv):
    try:
        return FLAGS(argv)
    except flags.Error as e:
        _fail(f"{e}\n(see --help; every key and its default: extremeq/train/config.py)")


def _quiet_orbax():
    # orbax logs every save at INFO; keep the training log readable.
    handler = logging.get_absl_handler()
    handler.addFilter(lambda record: "/orbax/" not in getattr(record, "pathname", ""))


def main(argv):
    from extremeq.train.train import train_and_evaluate  # pylint: disable=g-import-not-at-top

    if len(argv) > 1:
        _fail(f"unexpected arguments {argv[1:]}; see --help")
    if FLAGS.workdir is None:
        _fail("--workdir is required (the run's directory), e.g. --workdir=runs/digits_twn")
    logging.set_verbosity(logging.INFO)
    _quiet_orbax()
    from extremeq.train.distributed import split_cpu  # pylint: disable=g-import-not-at-top

    try:  # before anything touches a device
        split_cpu(int(FLAGS.config.get("cpu_devices", 1)))
    except ValueError as e:
        _fail(e)
    if FLAGS.config.get("task") == "lm":  # language models: token source, per-token loss
        from extremeq.train.lm import train_lm  # pylint: disable=g-import-not-at-top

        try:
            train_lm(FLAGS.config, FLAGS.workdir)
        except user_errors() as e:  # e.g. a batch the CPU devices do not divide
            _fail(e)
        return
    try:
        result = train_and_evaluate(FLAGS.config, FLAGS.workdir)
    except user_errors() as e:
        _fail(e)
    except FloatingPointError as e:  # the NaN guard
        _fail(e, status=1)
    if result.get("preempted"):
        logging.warning("stopped by SIGTERM after a checkpoint; rerun the same command to resume")
    elif result.get("finished"):
        print(f"finished at step {result['step']}: results in {FLAGS.workdir}/{FINAL_FILE} and metrics.jsonl")


def define_flags(argv, flag_values=FLAGS):
    """Loads the file of ``--config``, fills in the schema's defaults, and defines ``--config`` (whose
    ``--config.<key>=<value>`` overrides ml_collections parses and type-checks) and ``--workdir``.
    Returns ``argv`` without ``--config``, for ``flag_values(argv)``. Raises the user errors."""
    spec, argv = _pop_config_spec(list(argv))
    wants_help = any(a.lstrip("-") in ("help", "helpfull", "helpshort", "h", "?") for a in argv)
    if spec is None and not wants_help:
        raise ConfigError("--config is required, e.g. --config=configs/digits_mlp.py:twn (see --help)")
    config = load_config_file(spec) if spec else default_config()
    if config.get("task") != "lm":  # language models (task "lm") have their config file as their schema
        config = with_defaults(config)
    _prepare_overrides(config, argv)
    flags.DEFINE_string(
        "workdir",
        None,
        "The run's directory: config.json, metrics.jsonl, checkpoints/, "
        "final.json (created; rerun the same command to resume).",
        flag_values=flag_values,
    )
    config_flags.DEFINE_config_dict(
        "config",
        config,
        "Training config file, path.py[:variant] (e.g. configs/digits_mlp.py:twn); "
        "override any key with --config.<section>.<key>=<value>.",
        flag_values=flag_values,
        lock_config=True,
        sys_argv=argv,
    )
    flag_values["config"].default_as_str = None  # not the whole config in --help
    for name in ("config", "workdir"):  # listed by --help, which shows the main module's flags
        flag_values.register_key_flag_for_module(sys.argv[0], flag_values[name])
    return argv


def run(argv=None):
    """The entry point of ``python -m extremeq.train``."""
    try:
        argv = define_flags(sys.argv if argv is None else argv)
    except user_errors() as e:
        _fail(e)
    app.run(main, argv=argv, flags_parser=_parse_flags)


if __name__ == "__main__":
    run()
