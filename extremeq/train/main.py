"""Command line: ``python -m extremeq.train --config configs/<file>.py:<variant> --workdir <dir>``.

Any config key can be overridden: ``--config.optimizer.learning_rate=0.01 --config.num_epochs=2``.
The config is validated (unknown keys, unknown method/dataset, impossible values) before anything
runs; the run resumes from ``<workdir>/checkpoints`` if there is one.
"""

from __future__ import annotations

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from extremeq.train import config as config_lib
from extremeq.train.train import train_and_evaluate

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics.jsonl and config.json.")
config_flags.DEFINE_config_file("config", None, "Training config file (path.py[:variant]).",
                                lock_config=False)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.INFO)
    try:
        config = config_lib.validate_config(FLAGS.config)
    except config_lib.ConfigError as e:
        print(f"invalid config: {e}", file=sys.stderr)
        sys.exit(2)
    result = train_and_evaluate(config, FLAGS.workdir)
    if result.get("preempted"):
        logging.warning("stopped by SIGTERM after a checkpoint; rerun the same command to resume")


def run():
    app.run(main)


if __name__ == "__main__":
    run()
