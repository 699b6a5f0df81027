"""Evaluates a workdir's checkpoint on a split: the library behind `nic_jax.evaluate`.

Restores params only (the best validation checkpoint unless a step is named),
decodes the split greedily, writes `<workdir>/eval_<split>[_<step>].json` (metrics
and captions) and prints the metrics as one JSON line.
"""

import json
import os

import jax
from absl import logging
from ml_collections import ConfigDict

from nic_jax.errors import InputError
from nic_jax.evaluation.captioning import evaluate_split
from nic_jax.models.functional import init_params
from nic_jax.train import checkpoint, common


def _read_config(workdir: str) -> ConfigDict:
    path = os.path.join(workdir, "config.json")
    try:
        with open(path, encoding="utf-8") as f:
            return ConfigDict(json.load(f))
    except (OSError, json.JSONDecodeError) as error:
        raise InputError(f"{path}: cannot read the run's config ({error})") from error


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


def evaluate_workdir(
    workdir, split="test", step=None, num_images=-1, print_samples=False
):
    """Decodes `split` with a checkpoint of `workdir`; returns the written result."""
    where = checkpoint.checkpoint_dir(workdir)
    if not os.path.isdir(where):
        raise InputError(f"{where} does not exist; is --workdir a training workdir?")
    config = _read_config(workdir)
    metric = f"{config.evals.split}/{config.evals.best_metric}"
    manager = checkpoint.make_manager(workdir, config.ckpt, metric, read_only=True)
    chosen = _choose_step(manager, metric, step, where)
    dataset, decoder = common.setup_data_and_decoder(config, (split,))
    checkpoint.check_vocabulary(
        checkpoint.restore_meta(manager, chosen), dataset.ix_to_word, where
    )
    abstract = jax.eval_shape(
        lambda: init_params(config.model, dataset.vocab_size, jax.random.key(0))
    )
    params, _ = checkpoint.restore_params(manager, chosen, abstract)
    eval_config = config.evals.copy_and_resolve_references()
    eval_config.num_images = num_images
    scores, captions = evaluate_split(
        decoder,
        params,
        dataset.splits[split],
        dataset.ix_to_word,
        eval_config,
        config.evals.test_metrics,
        config.data.max_length,
    )
    result = {
        "split": split,
        "step": chosen,
        "metrics": scores,
        "captions": [{"image_id": k, "caption": v} for k, v in captions.items()],
    }
    name = f"eval_{split}.json" if step is None else f"eval_{split}_{step}.json"
    with open(os.path.join(workdir, name), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    if print_samples:
        _print_samples(dataset.splits[split], captions, config.evals.num_samples)
    print(json.dumps({"split": split, "step": chosen, **scores}), flush=True)
    logging.info("wrote %s", os.path.join(workdir, name))
    return result
