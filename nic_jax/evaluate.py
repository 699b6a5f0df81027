"""Evaluates a trained workdir: `python -m nic_jax.evaluate --workdir=W --split=test`.

Restores params only (the best validation checkpoint unless `--step` names one),
decodes the split greedily, writes `W/eval_<split>[_<step>].json` (metrics and
captions) and prints the metrics as one JSON line.
"""

import json
import os

import jax
from absl import flags, logging
from ml_collections import ConfigDict

from nic_jax import app
from nic_jax.errors import InputError
from nic_jax.evaluation.captioning import evaluate_split
from nic_jax.models.functional import init_params
from nic_jax.train import checkpoint, common

_WORKDIR = flags.DEFINE_string("workdir", None, "Training workdir to evaluate.")
_SPLIT = flags.DEFINE_string("split", "test", "Split to decode: train, val or test.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step; default: best, else latest.")
_BEAM = flags.DEFINE_integer("beam_size", 1, "Beam size (1 = greedy).")
_NUM_IMAGES = flags.DEFINE_integer("num_images", -1, "Images to decode; -1 = all.")


def _choose_step(manager, metric: str, step, where: str) -> int:
    steps = manager.all_steps()
    if not steps:
        raise InputError(f"no checkpoint in {where}; train first with nic_jax.main")
    if step is None:
        best = checkpoint.best_step(manager, metric)
        return best if best is not None else manager.latest_step()
    if step not in steps:
        raise InputError(f"--step={step}: no such checkpoint in {where}; found {steps}")
    return step


def _print_samples(split, captions: dict, num: int) -> None:
    for row in range(min(num, len(split.image_ids))):
        image_id = int(split.image_ids[row])
        print(f"image {image_id}: {captions[image_id]}")
        for ref in split.ref_texts[row]:
            print(f"    ref: {ref}")


def evaluate_workdir(workdir, split="test", step=None, num_images=-1, print_samples=False):
    """Decodes `split` with a checkpoint of `workdir`; returns the written result."""
    where = checkpoint.checkpoint_dir(workdir)
    if not os.path.isdir(where):
        raise InputError(f"{where} does not exist; is --workdir a training workdir?")
    config = ConfigDict(json.load(open(os.path.join(workdir, "config.json"))))
    metric = f"{config.evals.split}/{config.evals.best_metric}"
    manager = checkpoint.make_manager(workdir, config.ckpt, metric, read_only=True)
    chosen = _choose_step(manager, metric, step, where)
    dataset, decoder = common.setup_data_and_decoder(config, (split,))
    checkpoint.check_vocabulary(checkpoint.restore_meta(manager, chosen), dataset.ix_to_word, where)
    abstract = jax.eval_shape(lambda: init_params(config.model, dataset.vocab_size, jax.random.key(0)))
    params, _ = checkpoint.restore_params(manager, chosen, abstract)
    eval_config = config.evals.copy_and_resolve_references()
    eval_config.num_images = num_images
    scores, captions = evaluate_split(
        decoder, params, dataset.splits[split], dataset.ix_to_word, eval_config,
        config.evals.test_metrics, config.data.max_length,
    )
    result = {"split": split, "step": chosen, "metrics": scores,
              "captions": [{"image_id": k, "caption": v} for k, v in captions.items()]}
    name = f"eval_{split}.json" if step is None else f"eval_{split}_{step}.json"
    with open(os.path.join(workdir, name), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    if print_samples:
        _print_samples(dataset.splits[split], captions, config.evals.num_samples)
    print(json.dumps({"split": split, "step": chosen, **scores}), flush=True)
    logging.info("wrote %s", os.path.join(workdir, name))
    return result


def main(argv) -> None:
    del argv
    if _BEAM.value != 1:
        raise InputError("--beam_size > 1 needs beam search, which is not built yet; use 1")
    evaluate_workdir(_WORKDIR.value, _SPLIT.value, _STEP.value, _NUM_IMAGES.value)


def run() -> None:
    flags.mark_flags_as_required(["workdir"])
    app.run(main)


if __name__ == "__main__":
    run()
