"""Trains a caption decoder: `python -m nic_jax.main --config=... --workdir=...`.

The config picks the trainer (xe for now). Re-running the same command on the same
workdir resumes from its latest checkpoint. With `evals.final_split` set, the best
checkpoint is then evaluated on that split and the metrics printed as one JSON line.
"""

from absl import flags, logging
from ml_collections import config_flags

from nic_jax import app
from nic_jax.evaluation.workdir import evaluate_workdir
from nic_jax.train.registry import get_trainer

FLAGS = flags.DEFINE_string("workdir", None, "Directory for checkpoints and logs.")
_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file.", lock_config=True
)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv) -> None:
    if len(argv) > 1:
        raise app.InputError(f"unexpected arguments: {argv[1:]}")
    config = _CONFIG.value
    logging.info("config:\n%s", config)
    get_trainer(config.trainer)(config, FLAGS.value)
    if config.evals.final_split:
        evaluate_workdir(FLAGS.value, config.evals.final_split, print_samples=True)


def run() -> None:
    app.run(main)


if __name__ == "__main__":
    run()
