"""The stages of one command: a trainer, then optionally a fine-tuning trainer.

`config.finetune.trainer` (e.g. "nes") continues from the first stage's best
checkpoint in `<workdir>/<trainer>`, so the README's one command shows both
gradient and evolutionary training. Re-running the command resumes whichever
stage was interrupted (a finished stage returns at once).
"""

import json
import os

from nic_jax.errors import InputError
from nic_jax.train.registry import get_trainer

FINETUNE_TRAINERS = ("nes", "es")  # their settings live in the `es` group


def finetune_config(config, workdir: str):
    """The second stage's config: the same data, model and evals, started from the
    first stage's workdir, validated on CIDEr-D (the fitness it optimises)."""
    if config.finetune.trainer not in FINETUNE_TRAINERS:
        raise InputError(
            f"config finetune.trainer={config.finetune.trainer!r}: valid are "
            f"{list(FINETUNE_TRAINERS)} or ''; for SCST run configs/scst.py with "
            "--config.ckpt.init_from=<this workdir>"
        )
    stage = config.copy_and_resolve_references()
    with stage.unlocked():
        stage.trainer = config.finetune.trainer
        stage.finetune.trainer = ""
        stage.ckpt.init_from = workdir
        stage.evals.every_steps = config.finetune.eval_every_steps
        stage.ckpt.every_steps = config.finetune.eval_every_steps
        stage.evals.best_metric = "CIDEr-D"
    return stage


def run_stages(config, workdir: str) -> list:
    """Trains every stage; returns [(trainer name, workdir)] in order."""
    get_trainer(config.trainer)(config, workdir)
    stages = [(config.trainer, workdir)]
    if config.get("finetune") and config.finetune.trainer:
        stage = finetune_config(config, workdir)
        stage_dir = os.path.join(workdir, stage.trainer)
        get_trainer(stage.trainer)(stage, stage_dir)
        stages.append((stage.trainer, stage_dir))
    return stages


def first_and_best(workdir: str, key: str):
    """The first and the highest logged value of `key` in `workdir/metrics.jsonl`
    (the start of a fine-tuning run and its best checkpoint's score)."""
    values = []
    with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            if key in record:
                values.append(record[key])
    return (values[0], max(values)) if values else (None, None)
