"""Trains a caption decoder: `python -m nic_jax.main --config=... --workdir=...`.

The config picks the trainer and, in `finetune`, an optional second stage (the
default: XE, then NES fine-tuning in `<workdir>/nes`). Re-running the same command
on the same workdir resumes where it stopped. With `evals.final_split` set, each
stage's best checkpoint is then evaluated on that split and its metrics printed as
one JSON line, and the validation CIDEr-D before and after fine-tuning.
"""

from absl import flags, logging
from ml_collections import config_flags

from nic_jax import app
from nic_jax.evaluation.workdir import evaluate_workdir
from nic_jax.train import pipeline

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
    stages = pipeline.run_stages(config, FLAGS.value)
    if not config.evals.final_split:
        return
    for name, workdir in stages:
        print(f"{name}: best checkpoint of {workdir}", flush=True)
        evaluate_workdir(workdir, config.evals.final_split, print_samples=True)
    if len(stages) > 1:
        name, workdir = stages[-1]
        before, best = pipeline.first_and_best(workdir, "val/CIDEr-D")
        print(f"val CIDEr-D before {name}: {before:.4f}, best after: {best:.4f}")


def run() -> None:
    app.run(main)


if __name__ == "__main__":
    run()
