"""Command line: ``python -m extremeq.train --config configs/<file>.py:<variant> --workdir <dir>``.

Any config key can be overridden: ``--config.optimizer.learning_rate=0.01 --config.num_epochs=2``,
lists as Python literals (``--config.model.hidden=[512,512] --config.optimizer.decay_epochs=[30,60]``),
also keys of the training schema (extremeq/train/config.py) that the config file does not set
(``--config.num_devices=1``). The config is validated (unknown keys, unknown method/dataset,
impossible values) before anything runs; the run resumes from ``<workdir>/checkpoints`` if there
is one. SIGTERM saves a checkpoint and exits with status 0; rerun the same command to resume.
"""

from __future__ import annotations

import ast
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from extremeq.train import config as config_lib

FLAGS = flags.FLAGS


def _define_flags():
    # After split_overrides rewrote sys.argv: config_flags reads the override names from sys.argv
    # when the flag is defined.
    if "config" in FLAGS:
        return
    flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics.jsonl and config.json.")
    config_flags.DEFINE_config_file("config", None, "Training config file (path.py[:variant]).",
                                    lock_config=False)
    flags.mark_flags_as_required(["config", "workdir"])

_SCHEMA_OVERRIDES: dict[str, str] = {}


_MISSING = object()


def _get(cfg, path, default=_MISSING):
    """The value at dotted ``path`` of nested sections, or ``default`` where the path does not exist."""
    node = cfg
    for part in path.split("."):
        if not hasattr(node, "keys") or part not in node:
            return default
        node = node[part]
    return node


def _has_path(cfg, path) -> bool:
    return _get(cfg, path) is not _MISSING


def split_overrides(argv):
    """Takes the ``--config.a.b=v`` overrides of keys the config file lacks out of ``argv``, and
    those of list-valued keys (``--config.model.hidden=[512,512]``, which config_flags cannot parse).

    config_flags can only override keys that the loaded file has; schema keys the file leaves to
    their defaults are applied after parsing instead. A key in neither stops here, named.
    """
    spec = None
    for i, arg in enumerate(argv):
        if arg.startswith("--config="):
            spec = arg.split("=", 1)[1]
        elif arg == "--config" and i + 1 < len(argv):
            spec = argv[i + 1]
    if spec is None:
        return argv, {}
    try:
        file_config = config_lib.load_config_file(spec)
    except Exception:  # config_flags reports a broken file itself
        return argv, {}
    defaults = config_lib.default_config()
    kept, extra = [], {}
    for arg in argv:
        if arg.startswith("--config.") and "=" in arg:
            path, raw = arg[len("--config."):].split("=", 1)
            if isinstance(_get(file_config, path, None), (list, tuple)):
                extra[path] = raw  # a Python literal, e.g. [512,512]
                continue
            if not _has_path(file_config, path):
                if _has_path(defaults, path) or path.startswith("model."):
                    extra[path] = raw
                    continue
                parent = path.rsplit(".", 1)[0] if "." in path else ""
                node = defaults
                for part in parent.split(".") if parent else []:
                    node = node[part] if hasattr(node, "keys") and part in node else None
                known = ", ".join(sorted(node.keys())) if hasattr(node, "keys") else "-"
                raise config_lib.ConfigError(f"config.{path}: unknown key; known keys here: {known}")
        kept.append(arg)
    return kept, extra


def _parse_value(raw: str):
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return raw  # a bare string


def apply_overrides(config, overrides: dict[str, str]):
    import ml_collections  # pylint: disable=g-import-not-at-top

    for path, raw in overrides.items():
        node = config
        *parents, leaf = path.split(".")
        for part in parents:
            if part not in node:
                node[part] = ml_collections.ConfigDict()
            node = node[part]
        node[leaf] = _parse_value(raw)
    return config


def _quiet_orbax():
    # orbax logs every save at INFO; keep the training log readable.
    handler = logging.get_absl_handler()
    handler.addFilter(lambda record: "/orbax/" not in getattr(record, "pathname", ""))


def main(argv):
    from extremeq.train.train import train_and_evaluate  # pylint: disable=g-import-not-at-top

    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.INFO)
    _quiet_orbax()
    if FLAGS.config.get("task") == "lm":  # language models: token source, per-token loss
        from extremeq.train.lm import train_lm  # pylint: disable=g-import-not-at-top

        train_lm(apply_overrides(FLAGS.config, _SCHEMA_OVERRIDES), FLAGS.workdir)
        return
    try:
        config = config_lib.validate_config(apply_overrides(FLAGS.config, _SCHEMA_OVERRIDES))
    except config_lib.ConfigError as e:
        print(f"invalid config: {e}", file=sys.stderr)
        sys.exit(2)
    result = train_and_evaluate(config, FLAGS.workdir)
    if result.get("preempted"):
        logging.warning("stopped by SIGTERM after a checkpoint; rerun the same command to resume")


def run():
    try:
        argv, extra = split_overrides(sys.argv)
    except config_lib.ConfigError as e:
        print(f"invalid config: {e}", file=sys.stderr)
        sys.exit(2)
    _SCHEMA_OVERRIDES.update(extra)
    sys.argv[:] = argv
    _define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
